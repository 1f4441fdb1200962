import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Objm } from '@nats-io/obj';
import { Kvm } from '@nats-io/kv';
import { NatsServer } from '@gateway/testing';
import { ArtifactStore, StaticKeyring } from './artifacts.js';
import { ErrorCode } from './errors.js';
import { buckets } from './subjects.js';

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
    expect(raw.length).toBe(plaintext.length);
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

  it('shreds: after delete nothing can be read', async () => {
    await store.delete('acme', 'AR_1');
    await expect(store.get('acme', 'AR_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(await (await new Objm(nc).open(buckets.artifacts)).get('acme.AR_1')).toBeNull();
  });
});
