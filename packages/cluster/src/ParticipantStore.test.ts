import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { PENDING_ID_MS, RoomIndex, buckets, openBucket, type KV } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { ParticipantStore } from './ParticipantStore.js';

const record = (participantId: string, owner = 'sig-a') =>
  ParticipantRecord.fromPartial({
    info: { participantId, identity: `user-${participantId}`, role: 'end_user', joinedAtMs: Date.now(), tracks: [] },
    owner,
    nodeId: 'sfu-a',
    connected: true,
    grants: { canPublish: true, canSubscribe: true, sources: ['camera', 'microphone'], canRecord: false },
    resumeTokenHash: Buffer.alloc(32),
  });

const alive = { isAliveNow: async () => true };

describe('the participants of a room, listed through its index', () => {
  let nats: NatsServer;
  let admin: NatsConnection;
  const connections: NatsConnection[] = [];
  let kv: KV;

  beforeAll(async () => {
    nats = await NatsServer.start();
    admin = await nats.connect('admin');
    for (let i = 0; i < 3; i++) connections.push(await nats.connect('signaling'));
    kv = await openBucket(admin, buckets.participants);
  });

  afterAll(async () => {
    for (const nc of connections) await nc.close();
    await admin?.close();
    await nats?.stop();
  });

  /** The messages the bucket's stream holds for a key (a purge leaves none, a delete a marker). */
  const messagesOf = async (key: string) => {
    const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(admin);
    const info = await jsm.streams.info(`KV_${buckets.participants}`, { subjects_filter: `$KV.${buckets.participants}.${key}` });
    return info.state.subjects?.[`$KV.${buckets.participants}.${key}`] ?? 0;
  };

  it('keeps every id of racing adds and removes from several replicas, and goes with the last one', async () => {
    const writers = connections.map((nc) => openBucket(nc, buckets.participants).then((bucket) => new RoomIndex(bucket)));
    const members = await Promise.all(writers);
    const ids = Array.from({ length: 45 }, (_, i) => `PA_race${i}`);
    await Promise.all(ids.map((id, i) => members[i % members.length]!.add('demo', 'race', id)));
    expect([...(await members[0]!.read('demo', 'race'))!.keys()].sort()).toEqual([...ids].sort());

    // Two thirds leave while ten more come, each through any replica.
    const leaving = ids.filter((_, i) => i % 3 !== 0);
    const coming = Array.from({ length: 10 }, (_, i) => `PA_late${i}`);
    await Promise.all([
      ...leaving.map((id, i) => members[(i + 1) % members.length]!.remove('demo', 'race', [id])),
      ...coming.map((id, i) => members[(i + 2) % members.length]!.add('demo', 'race', id)),
    ]);
    const staying = [...ids.filter((_, i) => i % 3 === 0), ...coming].sort();
    expect([...(await members[1]!.read('demo', 'race'))!.keys()].sort()).toEqual(staying);

    // A change against the record as this replica last saw it reads nothing first; one that
    // finds it changed by another replica reads it again.
    const reads: string[] = [];
    const gets = admin.subscribe(`$JS.API.DIRECT.GET.KV_${buckets.participants}.>`, { callback: (_, msg) => void reads.push(msg.subject) });
    const msgGets = admin.subscribe(`$JS.API.STREAM.MSG.GET.KV_${buckets.participants}`, { callback: (_, msg) => void reads.push(msg.subject) });
    await members[0]!.read('demo', 'race');
    await admin.flush();
    reads.length = 0;
    await members[0]!.add('demo', 'race', 'PA_mine');
    await admin.flush();
    expect(reads).toEqual([]);
    await members[1]!.remove('demo', 'race', ['PA_mine']);
    await admin.flush();
    expect(reads.length).toBe(1);
    gets.unsubscribe();
    msgGets.unsubscribe();
    expect([...(await members[2]!.read('demo', 'race'))!.keys()].sort()).toEqual(staying);

    await Promise.all(staying.map((id, i) => members[i % members.length]!.remove('demo', 'race', [id])));
    expect((await members[2]!.read('demo', 'race'))!.size).toBe(0);
    // Purged, not deleted: no marker stays for the bucket's TTL.
    expect(await messagesOf('demo.race')).toBe(0);
  });

  it("writes a room's changes asked at once in one process together", async () => {
    const index = new RoomIndex(await openBucket(connections[0]!, buckets.participants));
    const writes: string[] = [];
    const watch = admin.subscribe(`$KV.${buckets.participants}.demo.batch`, { callback: (_, msg) => void writes.push(msg.subject) });
    await admin.flush();
    const ids = Array.from({ length: 50 }, (_, i) => `PA_batch${i}`);
    await Promise.all(ids.map((id) => index.add('demo', 'batch', id)));
    await admin.flush();
    watch.unsubscribe();
    expect([...(await index.read('demo', 'batch'))!.keys()].sort()).toEqual([...ids].sort());
    // The first write, then everything that queued behind it (one join at a time would be fifty).
    expect(writes.length).toBeLessThanOrEqual(3);
    await index.remove('demo', 'batch', ids);
  });

  it('lists a room by its keys, never by a subject filter over the bucket', async () => {
    const store = await ParticipantStore.open(connections[0]!, alive);
    await store.put('demo', 'keys', record('PA_k1'));
    await store.put('demo', 'keys', record('PA_k2'));
    await store.put('demo', 'other', record('PA_o1'));
    const infos: string[] = [];
    const watch = admin.subscribe(`$JS.API.STREAM.INFO.KV_${buckets.participants}`, { callback: (_, msg) => void infos.push(msg.subject) });
    await admin.flush();
    const listed = await store.list('demo', 'keys');
    await admin.flush();
    watch.unsubscribe();
    expect(listed.map((r) => r.info!.participantId).sort()).toEqual(['PA_k1', 'PA_k2']);
    expect(infos).toEqual([]);

    await store.delete('demo', 'keys', 'PA_k1');
    expect((await store.list('demo', 'keys')).map((r) => r.info!.participantId)).toEqual(['PA_k2']);
    await store.delete('demo', 'keys', 'PA_k2');
    expect(await store.list('demo', 'keys')).toEqual([]);
    expect(await messagesOf('demo.keys')).toBe(0);
    // A room's record is not a room with participants to the room API.
    expect([...(await store.rooms('demo')).keys()]).toEqual(['other']);
  });

  it('drops an id whose record never came once it is old, and only through a writer', async () => {
    const bucket = await openBucket(connections[1]!, buckets.participants);
    // One added longer ago than a first record can take to follow, one just now.
    await new RoomIndex(bucket, () => Date.now() - PENDING_ID_MS - 1_000).add('demo', 'pending', 'PA_never');
    await new RoomIndex(bucket).add('demo', 'pending', 'PA_young');
    const writer = await ParticipantStore.open(connections[0]!, alive);
    const reader = await ParticipantStore.open(connections[2]!);
    await writer.put('demo', 'pending', record('PA_here'));
    const named = async () => [...(await new RoomIndex(bucket).read('demo', 'pending'))!.keys()].sort();

    expect((await reader.list('demo', 'pending')).map((r) => r.info!.participantId)).toEqual(['PA_here']);
    expect(await named()).toEqual(['PA_here', 'PA_never', 'PA_young']); // a reader (the recorder's store) changes nothing
    expect((await writer.list('demo', 'pending')).map((r) => r.info!.participantId)).toEqual(['PA_here']);
    expect(await named()).toEqual(['PA_here', 'PA_young']); // the young one may still be on its way
  });

  it('lists through the bucket when the room record does not decode, and a change replaces it', async () => {
    const store = await ParticipantStore.open(connections[0]!, alive);
    await store.put('demo', 'broken', record('PA_b1'));
    await kv.put('demo.broken', '{"ids": "everyone"}');
    const members = new RoomIndex(await openBucket(connections[0]!, buckets.participants));
    expect(await members.read('demo', 'broken')).toBeUndefined();
    expect((await store.list('demo', 'broken')).map((r) => r.info!.participantId)).toEqual(['PA_b1']);

    await store.put('demo', 'broken', record('PA_b2'));
    expect([...(await members.read('demo', 'broken'))!.keys()]).toEqual(['PA_b2']);
  });
});
