import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm } from '@nats-io/obj';
import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import { NatsServer } from '@gateway/testing';
import { ArtifactStore } from './artifacts.js';
import { SEGMENT_BYTES } from './sealedSegments.js';
import { StaticKeyring } from '../keys/StaticKeyring.js';
import { ErrorCode } from '../errors.js';
import { buckets } from '../nats/subjects.js';

const key = () => randomBytes(32).toString('base64');

describe('ArtifactStore with a real JetStream', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  const keyring = new StaticKeyring({ acme: key(), globex: key() });
  let store: ArtifactStore;
  // Recognisable plaintext: a WebM (EBML) header followed by random bytes, over several chunks.
  const plaintext = Buffer.concat([Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), Buffer.from('webm OpusHead'), randomBytes(300_000)]);

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    store = await ArtifactStore.open(nc, keyring);
  });

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('encrypts on the way in and decrypts for the same tenant', async () => {
    const stored = await store.put('acme', 'AR_1', Readable.from([plaintext.subarray(0, 1000), plaintext.subarray(1000)]), 'video/webm');
    expect(stored.size).toBe(plaintext.length);
    const back = await store.get('acme', 'AR_1');
    expect(back.contentType).toBe('video/webm');
    expect(back.data.equals(plaintext)).toBe(true);
  });

  it('keeps no plaintext in the Object Store', async () => {
    const raw = Buffer.from((await (await new Objm(nc).open(buckets.artifacts)).getBlob('acme.AR_1'))!);
    // Sealed segments: the plaintext plus a 16-byte tag per segment.
    expect(raw.length).toBe(plaintext.length + 16 * Math.ceil(plaintext.length / SEGMENT_BYTES));
    expect(raw.includes(Buffer.from([0x1a, 0x45, 0xdf, 0xa3]))).toBe(false);
    expect(raw.includes(Buffer.from('OpusHead'))).toBe(false);
    expect(raw.includes(plaintext.subarray(5000, 5032))).toBe(false);
  });

  it('does not open for another tenant, nor with another key', async () => {
    await expect(store.get('globex', 'AR_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    const stranger = await ArtifactStore.open(nc, new StaticKeyring({ acme: key() }));
    await expect(stranger.get('acme', 'AR_1')).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
  });

  it('keeps each writer in its own space: object store and data keys', async () => {
    const conversations = await ArtifactStore.open(nc, keyring, 'conversations');
    const segments = await ArtifactStore.open(nc, keyring, 'segments');
    await conversations.put('acme', 'AT_1', Readable.from([Buffer.from('photo')]), 'image/png');
    await segments.put('acme', 'SG_1', Readable.from([Buffer.from('segment')]), 'video/x-matroska');
    expect(await (await new Objm(nc).open(buckets.conversationArtifacts)).info('acme.AT_1')).not.toBeNull();
    expect(await (await new Objm(nc).open(buckets.artifacts)).info('acme.AT_1')).toBeNull();
    expect((await (await new Kvm(nc).open(buckets.dataKeys)).get('acme.conversations.AT_1'))?.operation).toBe('PUT');
    // A store without a space (crm-sync) reads and deletes every space of what waits for delivery.
    expect((await store.get('acme', 'AT_1')).data.toString()).toBe('photo');
    await expect(store.get('acme', 'SG_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    // A space does not see another's artifacts.
    await expect(segments.get('acme', 'AT_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await store.delete('acme', 'AT_1');
    await expect(conversations.get('acme', 'AT_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect((await (await new Objm(nc).open(buckets.conversationArtifacts)).info('acme.AT_1'))?.deleted).toBe(true);
    await segments.delete('acme', 'SG_1');
    await expect(segments.get('acme', 'SG_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
  });

  it('reads and deletes in the space an event names first, and still finds an artifact that is elsewhere', async () => {
    const conversations = await ArtifactStore.open(nc, keyring, 'conversations');
    const conversationObjects = await new Objm(nc).open(buckets.conversationArtifacts);
    const recordingObjects = await new Objm(nc).open(buckets.artifacts);
    const dataKeys = await new Kvm(nc).open(buckets.dataKeys);
    // A small artifact is one chunk, read without a consumer.
    await conversations.put('acme', 'AT_named', Readable.from([Buffer.from('named space')]), 'text/plain');
    expect((await conversationObjects.info('acme.AT_named'))?.chunks).toBe(1);
    expect((await collect((await store.open('acme', 'AT_named', 'conversations')).chunks)).join('')).toBe('named space');
    await store.delete('acme', 'AT_named', 'conversations');
    expect((await dataKeys.get('acme.conversations.AT_named'))?.operation).not.toBe('PUT');
    expect((await conversationObjects.info('acme.AT_named'))?.deleted).toBe(true);
    await expect(store.open('acme', 'AT_named', 'conversations')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    // Named wrong (stored in recordings): found, and deleted, all the same.
    await store.put('acme', 'AR_elsewhere', Readable.from([Buffer.from('other space')]), 'text/plain');
    expect((await collect((await store.open('acme', 'AR_elsewhere', 'conversations')).chunks)).join('')).toBe('other space');
    await store.delete('acme', 'AR_elsewhere', 'conversations');
    expect((await dataKeys.get('acme.recordings.AR_elsewhere'))?.operation).not.toBe('PUT');
    expect((await recordingObjects.info('acme.AR_elsewhere'))?.deleted).toBe(true);
    // Deleting again is harmless.
    await store.delete('acme', 'AR_elsewhere', 'recordings');
  });

  it('ends a one-chunk read as not found when the artifact is deleted between opening and reading', async () => {
    await store.put('acme', 'AR_small_gone', Readable.from([Buffer.from('small')]), 'text/plain');
    const content = await store.open('acme', 'AR_small_gone', 'recordings');
    await store.delete('acme', 'AR_small_gone', 'recordings');
    expect(await codeOf(collect(content.chunks))).toBe(ErrorCode.NOT_FOUND);
  });

  it('deletes an artifact it read where the read found it: key purged, object marked deleted, chunks purged', async () => {
    const objects = await new Objm(nc).open(buckets.artifacts);
    for (const [id, bytes] of [
      ['AR_read_small', Buffer.from('small')],
      ['AR_read_large', plaintext],
    ] as const) {
      await store.put('acme', id, Readable.from([bytes]), 'audio/webm');
      const before = await objects.info(`acme.${id}`);
      expect((await store.get('acme', id)).data.equals(bytes)).toBe(true);
      await store.delete('acme', id, 'recordings');
      await expect(store.get('acme', id)).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
      const kv = await new Kvm(nc).open(buckets.dataKeys);
      expect((await kv.get(`acme.recordings.${id}`))?.operation).toBe('PURGE');
      const after = await objects.info(`acme.${id}`);
      expect(after).toMatchObject({ deleted: true, size: 0, chunks: 0, nuid: before!.nuid });
      expect(await objects.get(`acme.${id}`)).toBeNull();
      const stream = await jetstreamManager(nc).then((m) => m.streams.info(`OBJ_${buckets.artifacts}`, { subjects_filter: `$O.${buckets.artifacts}.C.${before!.nuid}` }));
      expect(stream.state.subjects ?? {}).toEqual({});
      // Deleting again (a retried purge) finds nothing to do and does not fail.
      await store.delete('acme', id, 'recordings');
    }
  });

  it('shreds: after delete nothing can be read', async () => {
    await store.delete('acme', 'AR_1');
    await expect(store.get('acme', 'AR_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(await (await new Objm(nc).open(buckets.artifacts)).get('acme.AR_1')).toBeNull();
  });

  const collect = async (chunks: AsyncIterable<Buffer>) => {
    const parts: Buffer[] = [];
    for await (const chunk of chunks) parts.push(chunk);
    return parts;
  };
  const codeOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 'resolved',
      (error: { code?: string }) => error.code,
    );

  it('streams segment by segment, whatever the size, and records the plaintext SHA-256', async () => {
    for (const size of [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 3 * SEGMENT_BYTES, 3 * SEGMENT_BYTES + 17]) {
      const bytes = randomBytes(size);
      // Odd write sizes: the segments do not follow the writer's chunks.
      const pieces = [];
      for (let at = 0; at < size; at += 70_001) pieces.push(bytes.subarray(at, at + 70_001));
      await store.put('acme', `AR_s${size}`, Readable.from(pieces), 'audio/mpeg');
      const content = await store.open('acme', `AR_s${size}`);
      expect(content).toMatchObject({ size, contentType: 'audio/mpeg', sha256: createHash('sha256').update(bytes).digest('hex') });
      const chunks = await collect(content.chunks);
      expect(
        chunks.every((c) => c.length > 0 && c.length <= SEGMENT_BYTES),
        `size ${size}`,
      ).toBe(true);
      expect(Buffer.concat(chunks).equals(bytes), `size ${size}`).toBe(true);
      await store.delete('acme', `AR_s${size}`);
    }
  });

  /** Rewrites an object's stored bytes (as someone with write access to the Object Store could), keeping its key record. */
  async function rewriteStored(name: string, change: (raw: Buffer) => Buffer): Promise<void> {
    const objects = await new Objm(nc).open(buckets.artifacts);
    const raw = Buffer.from((await objects.getBlob(name))!);
    await objects.putBlob({ name }, change(raw));
  }

  it('hands out no byte of a tampered segment: the read fails at that segment', async () => {
    const bytes = randomBytes(4 * SEGMENT_BYTES);
    await store.put('acme', 'AR_tamper', Readable.from([bytes]), 'video/webm');
    const sealedSegment = SEGMENT_BYTES + 16;
    await rewriteStored('acme.AR_tamper', (raw) => {
      raw[2 * sealedSegment + 100]! ^= 0x01;
      return raw;
    });
    const received: Buffer[] = [];
    const failure = await (async () => {
      for await (const chunk of (await store.open('acme', 'AR_tamper')).chunks) received.push(chunk);
    })().then(
      () => undefined,
      (error: { code?: string }) => error.code,
    );
    expect(failure).toBe(ErrorCode.INTERNAL);
    // The two segments before it, authentic, and nothing of the tampered one.
    expect(Buffer.concat(received).equals(bytes.subarray(0, 2 * SEGMENT_BYTES))).toBe(true);
  });

  it('detects a truncation at a segment boundary, a dropped segment and an extension', async () => {
    const bytes = randomBytes(3 * SEGMENT_BYTES + 5);
    const sealedSegment = SEGMENT_BYTES + 16;
    const cases: Array<[string, (raw: Buffer) => Buffer]> = [
      ['truncated', (raw) => raw.subarray(0, 2 * sealedSegment)],
      ['dropped', (raw) => Buffer.concat([raw.subarray(0, sealedSegment), raw.subarray(2 * sealedSegment)])],
      ['extended', (raw) => Buffer.concat([raw, raw.subarray(0, sealedSegment)])],
      ['swapped', (raw) => Buffer.concat([raw.subarray(sealedSegment, 2 * sealedSegment), raw.subarray(0, sealedSegment), raw.subarray(2 * sealedSegment)])],
    ];
    for (const [what, change] of cases) {
      await store.put('acme', `AR_${what}`, Readable.from([bytes]), 'video/webm');
      await rewriteStored(`acme.AR_${what}`, change);
      expect(await codeOf(store.get('acme', `AR_${what}`)), what).toBe(ErrorCode.INTERNAL);
    }
  });

  it('still reads artifacts stored whole (AES-256-GCM over the object) before the segmented format', async () => {
    const bytes = randomBytes(200_000);
    const name = 'acme.AR_legacy';
    const dataKey = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', dataKey, iv).setAAD(Buffer.from(name));
    const ciphertext = Buffer.concat([cipher.update(bytes), cipher.final()]);
    await (await new Objm(nc).open(buckets.artifacts)).putBlob({ name, metadata: { tenant: 'acme', contentType: 'text/plain' } }, ciphertext);
    const record = { wrapped: await keyring.wrap('acme', dataKey), iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), contentType: 'text/plain', size: bytes.length };
    // Its data key under the space it was written to (recordings, as this store writes).
    await (await new Kvm(nc).open(buckets.dataKeys)).put('acme.recordings.AR_legacy', JSON.stringify(record));
    const content = await store.open('acme', 'AR_legacy');
    expect(content).toMatchObject({ size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex'), contentType: 'text/plain' });
    expect(Buffer.concat(await collect(content.chunks)).equals(bytes)).toBe(true);
    // Its tag is checked too.
    await rewriteStored(name, (raw) => {
      raw[10]! ^= 0x80;
      return raw;
    });
    expect(await codeOf(store.open('acme', 'AR_legacy'))).toBe(ErrorCode.INTERNAL);
  });

  it('refuses a key record that is not what it should be, and a size or hash that does not match', async () => {
    const keys = await new Kvm(nc).open(buckets.dataKeys);
    await store.put('acme', 'AR_record', Readable.from([randomBytes(1000)]), 'text/plain');
    const good = JSON.parse((await keys.get('acme.recordings.AR_record'))!.string()) as Record<string, unknown>;
    for (const bad of [
      'not json',
      '[]',
      JSON.stringify({ ...good, segmentBytes: 0 }),
      JSON.stringify({ ...good, size: -1 }),
      JSON.stringify({ ...good, wrapped: { kekId: 'x', value: { toString: 1 } } }),
    ]) {
      await keys.put('acme.recordings.AR_record', bad);
      expect(await codeOf(store.open('acme', 'AR_record')), bad).toBe(ErrorCode.INTERNAL);
    }
    for (const changed of [
      { ...good, size: 999 },
      { ...good, sha256: '0'.repeat(64) },
    ]) {
      await keys.put('acme.recordings.AR_record', JSON.stringify(changed));
      expect(await codeOf(store.get('acme', 'AR_record'))).toBe(ErrorCode.INTERNAL);
    }
  });

  it('ends a read as not found when a delete overtakes it', async () => {
    // Far more chunks than one fetch takes.
    await store.put('acme', 'AR_gone', Readable.from([randomBytes(40 * SEGMENT_BYTES)]), 'video/webm');
    const content = await store.open('acme', 'AR_gone');
    const iterator = content.chunks[Symbol.asyncIterator]();
    await iterator.next();
    await store.delete('acme', 'AR_gone');
    const code = await (async () => {
      for (let step = await iterator.next(); !step.done; step = await iterator.next());
    })().then(
      () => 'finished',
      (error: { code?: string }) => error.code,
    );
    expect(code).toBe(ErrorCode.NOT_FOUND);
    expect(await codeOf(store.open('acme', 'AR_gone'))).toBe(ErrorCode.NOT_FOUND);
  });
});
