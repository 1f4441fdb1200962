import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from '@gateway/testing';
import { ErrorCode } from '../errors.js';
import { StaticKeyring } from '../keys/StaticKeyring.js';
import { openBucket } from '../nats/connection.js';
import { buckets } from '../nats/subjects.js';
import { createLogger } from '../runtime/logger.js';
import { API_KEY_ID, apiSecretHash, recordTakes, readApiKeyRecord } from './apiKeys.js';
import { ApiKeyStore, MAX_API_KEYS_PER_TENANT } from './ApiKeyStore.js';
import type { Tenant } from './config.js';
import { TenantAuth } from './TenantAuth.js';

const log = createLogger('test', 'silent');
const acme: Tenant = { name: 'acme', apiKey: 'acme-key', apiSecret: 'a'.repeat(40) };
const globex: Tenant = { name: 'globex', apiKey: 'globex-key', apiSecret: 'g'.repeat(40) };
const basic = (user: string, secret: string) => `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`;

describe('API key records', () => {
  it('take the current secret, and the one before only until its overlap ends', () => {
    const keyId = 'ak_0123456789abcdef';
    expect(API_KEY_ID.test(keyId)).toBe(true);
    const record = { keyId, label: 'l', createdAtMs: 0, secretHash: apiSecretHash(keyId, 'new'), previous: { secretHash: apiSecretHash(keyId, 'old'), validUntilMs: 1_000 } };
    expect(recordTakes(record, 'new', 999)).toBe(true);
    expect(recordTakes(record, 'old', 999)).toBe(true);
    expect(recordTakes(record, 'old', 1_000)).toBe(false);
    expect(recordTakes(record, 'other', 0)).toBe(false);
    // The hash is bound to the key id: the same secret under another id does not match.
    expect(recordTakes({ ...record, keyId: 'ak_fedcba9876543210' }, 'new', 0)).toBe(false);
    expect(recordTakes({ ...record, revokedAtMs: 1 }, 'new', 0)).toBe(false);
  });

  it('are only taken under their own key id', () => {
    const record = { keyId: 'ak_0123456789abcdef', label: 'l', createdAtMs: 0 };
    const bytes = new TextEncoder().encode(JSON.stringify(record));
    expect(readApiKeyRecord('acme.ak_0123456789abcdef', bytes)?.tenant).toBe('acme');
    expect(readApiKeyRecord('acme.ak_fedcba9876543210', bytes)).toBeUndefined();
    expect(readApiKeyRecord('acme.ak_0123456789abcdef', new TextEncoder().encode('{'))).toBeUndefined();
  });
});

describe('ApiKeyStore and TenantAuth on NATS', () => {
  let nats: NatsServer;
  let crmSync: NatsConnection;
  let signaling: NatsConnection;
  let routing: NatsConnection;
  let clock = Date.now();
  const now = () => clock;
  const keyring = new StaticKeyring({ acme: randomBytes(32).toString('base64'), globex: randomBytes(32).toString('base64') });

  beforeAll(async () => {
    nats = await NatsServer.start();
    [crmSync, signaling, routing] = await Promise.all([nats.connect('crm-sync'), nats.connect('signaling'), nats.connect('routing')]);
  });

  afterAll(async () => {
    await Promise.all([crmSync, signaling, routing].map((nc) => nc?.close()));
    await nats?.stop();
  });

  const setUp = async (cacheMs = 0) => {
    const store = new ApiKeyStore(await openBucket(crmSync, buckets.apiKeys), keyring, log, () => undefined, now);
    // Signaling opens sealed secrets (join tokens); routing only checks Basic auth.
    const auth = new TenantAuth(() => [acme, globex], { kv: await openBucket(signaling, buckets.apiKeys), keyring, log, cacheMs, now });
    const hashOnly = new TenantAuth(() => [acme, globex], { kv: await openBucket(routing, buckets.apiKeys), log, cacheMs, now });
    return { store, auth, hashOnly };
  };

  it('makes a key whose secret authenticates its tenant, listed without secrets', async () => {
    const { store, auth, hashOnly } = await setUp();
    const made = await store.create('acme', { label: 'billing backend' });
    expect(made).toMatchObject({ label: 'billing backend', status: 'active' });
    expect(made.keyId).toMatch(API_KEY_ID);
    expect(made.secret).toMatch(/^sk_/);
    const listed = await store.list('acme');
    expect(listed.find((k) => k.keyId === made.keyId)).toEqual({ keyId: made.keyId, label: 'billing backend', status: 'active', createdAtMs: made.createdAtMs });
    expect(JSON.stringify(listed)).not.toContain(made.secret);

    const tenant = await auth.fromBasicAuth(basic(made.keyId, made.secret));
    expect(tenant).toMatchObject({ name: 'acme', apiKey: made.keyId, apiSecret: made.secret });
    expect((await hashOnly.fromBasicAuth(basic(made.keyId, made.secret)))?.name).toBe('acme');
    expect(await auth.fromBasicAuth(basic(made.keyId, `${made.secret}x`))).toBeUndefined();
    expect(await auth.signingSecrets(made.keyId)).toEqual({ tenant: { ...acme, apiKey: made.keyId }, secrets: [made.secret] });
    // Without the tenants' keys the sealed secret stays closed: no join tokens, Basic auth still.
    expect(await hashOnly.signingSecrets(made.keyId)).toBeUndefined();
    // The configured keys are taken as before.
    expect(await auth.fromBasicAuth(basic(acme.apiKey, acme.apiSecret))).toBe(acme);
    expect(await auth.signingSecrets(acme.apiKey)).toEqual({ tenant: acme, secrets: [acme.apiSecret] });
  });

  it('keeps another tenant out of a key', async () => {
    const { store } = await setUp();
    const made = await store.create('acme', { label: 'mine' });
    await expect(store.get('globex', made.keyId)).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await expect(store.revoke('globex', made.keyId)).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await expect(store.rotate('globex', made.keyId, {})).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect((await store.list('globex')).map((k) => k.keyId)).not.toContain(made.keyId);
    expect((await store.get('acme', made.keyId)).status).toBe('active');
  });

  it('rotates with an overlap: both secrets until it ends, then only the new one', async () => {
    const { store, auth } = await setUp();
    const made = await store.create('acme', { label: 'rotated' });
    const rotated = await store.rotate('acme', made.keyId, { overlapSeconds: 60 });
    expect(rotated.secret).not.toBe(made.secret);
    expect(rotated).toMatchObject({ keyId: made.keyId, rotatedAtMs: clock, previousSecretValidUntilMs: clock + 60_000 });
    expect((await auth.fromBasicAuth(basic(made.keyId, made.secret)))?.name).toBe('acme');
    expect((await auth.fromBasicAuth(basic(made.keyId, rotated.secret)))?.name).toBe('acme');
    expect((await auth.signingSecrets(made.keyId))?.secrets).toEqual([rotated.secret, made.secret]);
    clock += 60_000;
    expect(await auth.fromBasicAuth(basic(made.keyId, made.secret))).toBeUndefined();
    expect((await auth.fromBasicAuth(basic(made.keyId, rotated.secret)))?.name).toBe('acme');
    expect((await auth.signingSecrets(made.keyId))?.secrets).toEqual([rotated.secret]);
    expect((await store.get('acme', made.keyId)).previousSecretValidUntilMs).toBeUndefined();
    // No overlap: the old secret is refused at once.
    const again = await store.rotate('acme', made.keyId, { overlapSeconds: 0 });
    expect(await auth.fromBasicAuth(basic(made.keyId, rotated.secret))).toBeUndefined();
    expect((await auth.fromBasicAuth(basic(made.keyId, again.secret)))?.name).toBe('acme');
  });

  it('refuses a revoked key, after the cache time at the latest, and keeps it listed as revoked', async () => {
    const { store, auth } = await setUp(2_000);
    const made = await store.create('acme', { label: 'revoked' });
    expect((await auth.fromBasicAuth(basic(made.keyId, made.secret)))?.name).toBe('acme');
    await store.revoke('acme', made.keyId);
    // Cached: still taken within the cache time, refused after it.
    expect((await auth.fromBasicAuth(basic(made.keyId, made.secret)))?.name).toBe('acme');
    clock += 2_001;
    expect(await auth.fromBasicAuth(basic(made.keyId, made.secret))).toBeUndefined();
    expect(await auth.signingSecrets(made.keyId)).toBeUndefined();
    expect(await store.get('acme', made.keyId)).toMatchObject({ status: 'revoked', revokedAtMs: clock - 2_001 });
    // Revoking again is no error; rotating a revoked key is.
    await store.revoke('acme', made.keyId);
    await expect(store.rotate('acme', made.keyId, {})).rejects.toMatchObject({ code: ErrorCode.INVALID_STATE });
  });

  it('refuses a key whose tenant is no longer configured', async () => {
    const { store } = await setUp();
    const made = await store.create('globex', { label: 'leaving' });
    const onlyAcme = new TenantAuth(() => [acme], { kv: await openBucket(signaling, buckets.apiKeys), keyring, log });
    expect(await onlyAcme.fromBasicAuth(basic(made.keyId, made.secret))).toBeUndefined();
    expect(await onlyAcme.signingSecrets(made.keyId)).toBeUndefined();
  });

  it(`refuses bad input and more than ${MAX_API_KEYS_PER_TENANT} keys in force`, async () => {
    const { store } = await setUp();
    for (const body of [{}, { label: '' }, { label: 'x'.repeat(129) }, { label: 'a\u0000b' }, { label: 'ok', extra: 1 }, null, [], { label: 7 }]) {
      await expect(store.create('globex', body), JSON.stringify(body)).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    }
    const made = await store.create('globex', { label: 'first' });
    for (const body of [{ overlapSeconds: -1 }, { overlapSeconds: 1.5 }, { overlapSeconds: 8 * 24 * 3600 }, { overlapSeconds: '60' }, { other: 1 }]) {
      await expect(store.rotate('globex', made.keyId, body), JSON.stringify(body)).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    }
    await expect(store.get('globex', 'ak_nope')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    const active = (await store.list('globex')).filter((k) => k.status === 'active').length;
    for (let i = active; i < MAX_API_KEYS_PER_TENANT; i++) await store.create('globex', { label: `k${i}` });
    await expect(store.create('globex', { label: 'one too many' })).rejects.toMatchObject({ code: ErrorCode.LIMIT_EXCEEDED });
    // A revoked key makes room.
    await store.revoke('globex', made.keyId);
    await store.create('globex', { label: 'replacement' });
  });
});
