import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { ArtifactStore, SEGMENT_BYTES, StaticKeyring, artifactSpaces, buckets, openBucket } from '@gateway/common';
import { NatsServer } from '@gateway/testing';

/**
 * Crypto-shredding, shown on the stored bytes themselves: once an artifact's wrapped data key is
 * deleted, and nothing else, every copy of its bytes (the object store's chunks as JetStream holds
 * them, and a copy taken out before) stays unreadable; and another tenant's key opens none of a
 * tenant's artifacts even given their bytes and their wrapped key.
 */
describe('crypto-shredding', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const keyring = new StaticKeyring({ acme: randomBytes(32).toString('base64'), globex: randomBytes(32).toString('base64') });
  let store: ArtifactStore;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    jsm = await jetstream(nc).jetstreamManager();
    store = await ArtifactStore.open(nc, keyring);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  const objectStream = `OBJ_${artifactSpaces.recordings}`;

  /** The object's chunks as JetStream stores them, read raw (no client of ours in between). */
  async function rawChunks(name: string): Promise<Buffer> {
    const info = await (await new Objm(nc).open(artifactSpaces.recordings, false)).info(name);
    const consumer = await jetstream(nc).consumers.get(objectStream, { filter_subjects: `$O.${artifactSpaces.recordings}.C.${info!.nuid}` });
    const chunks: Buffer[] = [];
    while (chunks.length < info!.chunks) {
      for await (const message of await consumer.fetch({ max_messages: info!.chunks - chunks.length, expires: 2_000 })) chunks.push(Buffer.from(message.data));
    }
    await consumer.delete().catch(() => undefined);
    return Buffer.concat(chunks);
  }

  it('deleting only the wrapped data key leaves every copy of the bytes unreadable', async () => {
    // Three segments of a recognisable plaintext.
    const marker = Buffer.from('card 4111 1111 1111 1111; ');
    const plaintext = Buffer.concat(Array.from({ length: Math.ceil((2.5 * SEGMENT_BYTES) / marker.length) }, () => marker));
    await store.put('acme', 'REC_shred', Readable.from([plaintext]), 'audio/mpeg');
    expect((await store.get('acme', 'REC_shred')).data.equals(plaintext)).toBe(true);

    const stored = await rawChunks('acme.REC_shred');
    const copy = Buffer.from(stored); // a copy taken out of the platform (a backup, a snapshot)
    expect(stored.length).toBeGreaterThan(plaintext.length);
    expect(stored.includes(marker)).toBe(false);
    const keys = await openBucket(nc, buckets.dataKeys);
    const keyName = 'acme.recordings.REC_shred';
    const record = (await keys.get(keyName))!;

    await keys.purge(keyName);

    // The bytes are all still there, untouched; only the key is gone, from the bucket's history too.
    expect((await rawChunks('acme.REC_shred')).equals(stored)).toBe(true);
    expect(await store.get('acme', 'REC_shred').catch((e: { code: string }) => e.code)).toBe('NOT_FOUND');
    const left = await jsm.streams.getMessage(`KV_${buckets.dataKeys}`, { seq: record.revision }).catch(() => null);
    expect(left).toBeNull();
    const latest = await keys.get(keyName);
    expect(latest?.operation).toBe('PURGE');
    expect(latest?.length).toBe(0);

    // Whatever key record is put back (a fresh key, another artifact's key), the bytes fail their check.
    await store.put('acme', 'REC_other', Readable.from([Buffer.from('another recording')]), 'audio/mpeg');
    const other = JSON.parse(Buffer.from((await keys.get('acme.recordings.REC_other'))!.value).toString()) as Record<string, unknown>;
    await keys.put(keyName, JSON.stringify({ ...other, size: plaintext.length }));
    expect(await store.get('acme', 'REC_shred').catch((e: { code: string }) => e.code)).toBe('INTERNAL');
    await keys.put(keyName, JSON.stringify({ ...other, wrapped: await keyring.wrap('acme', randomBytes(32)), size: plaintext.length }));
    expect(await store.get('acme', 'REC_shred').catch((e: { code: string }) => e.code)).toBe('INTERNAL');
    expect(copy.equals(stored)).toBe(true);
  });

  it("another tenant's key opens nothing of a tenant's, even given its bytes and its wrapped key", async () => {
    await store.put('acme', 'REC_theirs', Readable.from([Buffer.from('acme only')]), 'audio/mpeg');
    const keys = await openBucket(nc, buckets.dataKeys);
    const record = JSON.parse(Buffer.from((await keys.get('acme.recordings.REC_theirs'))!.value).toString()) as { wrapped: { kekId: string; value: string } };
    // Asked in globex's name: the wrapped key names acme's KEK, and under globex's KEK it does not open.
    expect(await keyring.unwrap('globex', record.wrapped).catch((e: { code: string }) => e.code)).toBe('PERMISSION_DENIED');
    expect(await keyring.unwrap('globex', { ...record.wrapped, kekId: 'static:globex' }).catch((e: { code: string }) => e.code)).toBe('PERMISSION_DENIED');
    // The record and the bytes copied into globex's names: still nothing.
    const objects = await new Objm(nc).open(artifactSpaces.recordings, false);
    await objects.put({ name: 'globex.REC_theirs' }, Readable.toWeb(Readable.from([await rawChunks('acme.REC_theirs')])) as ReadableStream<Uint8Array>);
    await keys.put('globex.recordings.REC_theirs', JSON.stringify({ ...record, wrapped: { ...record.wrapped, kekId: 'static:globex' } }));
    expect(await store.get('globex', 'REC_theirs').catch((e: { code: string }) => e.code)).toBe('PERMISSION_DENIED');
    await keys.put('globex.recordings.REC_theirs', JSON.stringify(record));
    expect(await store.get('globex', 'REC_theirs').catch((e: { code: string }) => e.code)).toBe('PERMISSION_DENIED');
    expect((await store.get('acme', 'REC_theirs')).data.toString()).toBe('acme only');
  });
});
