import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { buckets, findDeleteMarkers, summarizeMarkers, sweepDeleteMarkers, type DeleteMarker } from '@gateway/common';
import { NatsServer } from '@gateway/testing';

/**
 * Delete markers against a real JetStream, swept as the residue identity: every marker a delete,
 * a purge or an object's delete leaves is found; the sweep removes the old ones and only them,
 * never a value written to the same key after the scan; where markers are not swept, the residue
 * identity cannot purge.
 */
describe('delete markers', () => {
  let nats: NatsServer;
  let admin: NatsConnection;
  let residueNc: NatsConnection;
  let residueJsm: JetStreamManager;
  const kv = (bucket: string) => new Kvm(admin).open(bucket);
  const find = () => findDeleteMarkers(jetstream(residueNc), residueJsm);
  /** Messages the bucket's stream holds for one key (a marker counts). */
  const messagesOf = async (bucket: string, key: string) => {
    const info = await (await jetstreamManager(admin)).streams.info(`KV_${bucket}`, { subjects_filter: `$KV.${bucket}.${key}` });
    return info.state.subjects?.[`$KV.${bucket}.${key}`] ?? 0;
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    admin = await nats.connect('admin');
    residueNc = await nats.connect('residue');
    residueJsm = await jetstreamManager(residueNc);
  }, 60_000);

  afterAll(async () => {
    await residueNc?.close();
    await admin?.close();
    await nats?.stop();
  });

  it('finds the markers a call and an erasure leave, and sweeps the old ones without touching a key written again', async () => {
    const placement = await kv(buckets.roomPlacement);
    await placement.put('demo.ended', 'sfu-1');
    await placement.delete('demo.ended');
    await placement.put('demo.again', 'sfu-1');
    await placement.purge('demo.again');
    await placement.put('demo.live', 'sfu-1');
    const participants = await kv(buckets.participants);
    await participants.put('demo.ended.PA_1', 'record');
    await participants.delete('demo.ended.PA_1');
    // An erasure: the device keys of a person, by the hash of their external id.
    const deviceKeys = await kv(buckets.deviceKeys);
    await deviceKeys.put('demo.0f1e2d', '[]');
    await deviceKeys.purge('demo.0f1e2d');
    const conversations = await new Objm(admin).open(buckets.conversationArtifacts);
    await conversations.putBlob({ name: 'demo.AR_delivered' }, new TextEncoder().encode('sealed bytes'));
    await conversations.delete('demo.AR_delivered');

    const markers = await find();
    expect(summarizeMarkers(markers)).toEqual([
      { store: buckets.conversationArtifacts, count: 1, oldestAgeMs: expect.any(Number) },
      { store: buckets.deviceKeys, count: 1, oldestAgeMs: expect.any(Number) },
      { store: buckets.participants, count: 1, oldestAgeMs: expect.any(Number) },
      { store: buckets.roomPlacement, count: 2, oldestAgeMs: expect.any(Number) },
    ]);
    // Young markers stay: a reader of the store may not have seen the delete yet.
    expect(await sweepDeleteMarkers(residueJsm, markers)).toBe(0);
    expect(await messagesOf(buckets.roomPlacement, 'demo.ended')).toBe(1);

    // The room is placed again after the scan: its new value is not the marker's to take (the
    // marker itself went with that write: a bucket keeps one message per key).
    await placement.put('demo.again', 'sfu-2');
    expect(await sweepDeleteMarkers(residueJsm, markers, 0)).toBe(4);
    expect((await placement.get('demo.again'))?.string()).toBe('sfu-2');
    expect((await placement.get('demo.live'))?.string()).toBe('sfu-1');
    for (const [bucket, key] of [
      [buckets.roomPlacement, 'demo.ended'],
      [buckets.participants, 'demo.ended.PA_1'],
      [buckets.deviceKeys, 'demo.0f1e2d'],
    ] as const) {
      expect(await messagesOf(bucket, key)).toBe(0);
    }
    expect(await find()).toEqual([]);
    // What was swept is simply absent: a new key of the same name is created as usual.
    await placement.create('demo.ended', 'sfu-3');
    expect((await placement.get('demo.ended'))?.string()).toBe('sfu-3');
  });

  it('cannot purge where markers are not swept (the connectors, the node registries)', async () => {
    const connectors = await kv(buckets.connectors);
    await connectors.put('demo.crm', '{}');
    await connectors.delete('demo.crm');
    const marker: DeleteMarker = { store: buckets.connectors, stream: `KV_${buckets.connectors}`, subject: `$KV.${buckets.connectors}.demo.crm`, seq: 1_000_000, ageMs: Number.MAX_SAFE_INTEGER };
    await expect(sweepDeleteMarkers(residueJsm, [marker], 0)).rejects.toThrow();
    expect(await messagesOf(buckets.connectors, 'demo.crm')).toBe(1);
    expect((await find()).map((m) => m.store)).not.toContain(buckets.connectors);
  });
});
