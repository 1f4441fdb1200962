import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsContractServer } from '../../../../test/contracts/kms/server.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { KmsKeyring, keyDescription } from './kmsKeyring.js';

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (e: unknown) => GatewayError.from(e).code,
  );

/** KmsKeyring against the KMS contract server, through the real AWS SDK. */
describe('KmsKeyring', () => {
  let kms: KmsContractServer;
  const credentials = { accessKeyId: 'AKIAGATEWAYTEST', secretAccessKey: 'gateway-kms-contract-secret' };
  const keyring = (options: { cacheTtlMs?: number; cacheEntries?: number; narrow?: boolean } = {}) =>
    new KmsKeyring(
      {
        kind: 'kms',
        region: kms.region,
        endpoint: kms.url,
        aliases: { acme: 'alias/gateway/acme', globex: 'alias/gateway/globex' },
        cacheTtlMs: options.cacheTtlMs ?? 60_000,
        cacheEntries: options.cacheEntries ?? 100,
        maxAttempts: 3,
      },
      options.narrow ? { accessKeyId: 'AKIANARROW', secretAccessKey: 'narrow-secret' } : credentials,
    );

  beforeAll(async () => {
    kms = await KmsContractServer.start({ credentials: [credentials, { accessKeyId: 'AKIANARROW', secretAccessKey: 'narrow-secret', deny: ['Decrypt'] }] });
    kms.createKey('alias/gateway/acme', keyDescription('acme'));
    kms.createKey('alias/gateway/globex', keyDescription('globex'));
  });
  afterAll(async () => kms?.close());

  it("wraps under the tenant's key and opens only in that tenant's name", async () => {
    const ring = keyring();
    const dataKey = randomBytes(32);
    const wrapped = await ring.wrap('acme', dataKey);
    expect(wrapped.kekId).toBe(kms.aliasTarget('alias/gateway/acme')!.arn);
    expect((await ring.unwrap('acme', wrapped)).equals(dataKey)).toBe(true);
    // Given as globex's: the encryption context differs, so KMS refuses it.
    expect(await codeOf(ring.unwrap('globex', wrapped))).toBe(ErrorCode.PERMISSION_DENIED);
    // A record naming globex's key for acme's ciphertext: KMS refuses the key, nothing is decrypted.
    expect(await codeOf(ring.unwrap('acme', { ...wrapped, kekId: kms.aliasTarget('alias/gateway/globex')!.arn }))).toBe(ErrorCode.PERMISSION_DENIED);
    expect(await codeOf(ring.unwrap('acme', { ...wrapped, kekId: 'not-an-arn' }))).toBe(ErrorCode.PERMISSION_DENIED);
    expect(await codeOf(ring.wrap('initech', dataKey))).toBe(ErrorCode.PERMISSION_DENIED);
    ring.close();
    ring.close();
  });

  it('a disabled key is INVALID_STATE, access denied PERMISSION_DENIED, throttling is retried', async () => {
    const ring = keyring({ cacheEntries: 0 });
    const outcomes: string[] = [];
    ring.observer.on('request', (operation, outcome) => outcomes.push(`${operation} ${outcome}`));
    const wrapped = await ring.wrap('globex', randomBytes(32));
    const before = kms.callsOf('Decrypt');
    kms.inject('Decrypt', { kind: 'error', type: 'ThrottlingException', message: 'Rate exceeded' }, 2);
    expect(await codeOf(ring.unwrap('globex', wrapped))).toBe('ok');
    expect(kms.callsOf('Decrypt') - before).toBe(3);
    kms.inject('Decrypt', { kind: 'error', type: 'ThrottlingException', message: 'Rate exceeded' }, 3);
    const exhausted = await ring.unwrap('globex', wrapped).catch((e: unknown) => GatewayError.from(e));
    expect(exhausted).toMatchObject({ code: ErrorCode.RATE_LIMITED, details: { kms: 'ThrottlingException' } });
    const narrow = keyring({ narrow: true });
    expect(await codeOf(narrow.unwrap('globex', wrapped))).toBe(ErrorCode.PERMISSION_DENIED);
    const key = kms.aliasTarget('alias/gateway/globex')!;
    key.state = 'Disabled';
    const disabled = await ring.unwrap('globex', wrapped).catch((e: unknown) => GatewayError.from(e));
    expect(disabled).toMatchObject({ code: ErrorCode.INVALID_STATE, details: { kms: 'DisabledException' } });
    key.state = 'Enabled';
    // What metrics see: one outcome per call, after the SDK's retries.
    expect(outcomes).toEqual(['Encrypt ok', 'Decrypt ok', 'Decrypt ThrottlingException', 'Decrypt DisabledException']);
    ring.close();
    narrow.close();
  });

  it("holds unwrapped keys for a bounded time and number, and forgets a tenant's at once", async () => {
    const ring = keyring({ cacheTtlMs: 200, cacheEntries: 2 });
    const wrapped = await Promise.all([1, 2, 3].map(() => ring.wrap('acme', randomBytes(32))));
    const decrypts = () => kms.callsOf('Decrypt');
    const start = decrypts();
    const first = await ring.unwrap('acme', wrapped[0]!);
    first.fill(0); // the caller wipes its copy: the held key is not touched
    expect((await ring.unwrap('acme', wrapped[0]!)).every((b) => b === 0)).toBe(false);
    expect(decrypts() - start).toBe(1);
    await ring.unwrap('acme', wrapped[1]!);
    await ring.unwrap('acme', wrapped[2]!);
    expect(ring.cachedKeys).toBe(2);
    ring.forget('acme');
    expect(ring.cachedKeys).toBe(0);
    await ring.unwrap('acme', wrapped[0]!);
    expect(decrypts() - start).toBe(4);
    await sleep(400);
    expect(ring.cachedKeys).toBe(0);
    ring.close();
  });

  it('rotates: a new key behind the alias, wrapped keys re-encrypted, the old key disabled, destroyed last', async () => {
    const ring = keyring();
    const dataKey = randomBytes(32);
    const old = await ring.wrap('acme', dataKey);
    const { current, previous } = await ring.rotate('acme');
    expect(previous).toEqual([old.kekId]);
    expect(current).not.toBe(old.kekId);
    expect((await ring.wrap('acme', randomBytes(32))).kekId).toBe(current);
    const moved = await ring.rewrap('acme', old);
    expect(moved.kekId).toBe(current);
    // A key id from a forged record (globex's key) is left alone.
    const globexKey = kms.aliasTarget('alias/gateway/globex')!.arn;
    expect(await ring.retire('acme', [old.kekId, current, globexKey])).toEqual([
      { kekId: old.kekId, outcome: 'disabled' },
      { kekId: globexKey, outcome: 'not-the-tenants' },
    ]);
    expect(kms.key(globexKey)!.state).toBe('Enabled');
    expect(kms.key(old.kekId)!.state).toBe('Disabled');
    expect(await codeOf(ring.unwrap('acme', old))).toBe(ErrorCode.INVALID_STATE);
    expect((await ring.unwrap('acme', moved)).equals(dataKey)).toBe(true);
    expect((await ring.destroy('acme', [old.kekId, globexKey])).map((k) => k.outcome)).toEqual(['deletion-scheduled', 'deletion-scheduled', 'not-the-tenants']);
    expect(kms.key(current)!.state).toBe('PendingDeletion');
    expect(kms.key(globexKey)!.state).toBe('Enabled');
    expect(await codeOf(ring.unwrap('acme', moved))).toBe(ErrorCode.INVALID_STATE);
    // Run again: already pending, done all the same; also by a keyring no longer configured for the tenant.
    expect(await ring.destroy('acme', [old.kekId])).toHaveLength(2);
    const unconfigured = new KmsKeyring({ kind: 'kms', region: kms.region, endpoint: kms.url, aliases: {}, cacheTtlMs: 0, cacheEntries: 0, maxAttempts: 1 }, credentials);
    expect((await unconfigured.destroy('acme', [])).map((k) => k.kekId).sort()).toEqual([old.kekId, current].sort());
    unconfigured.close();
    ring.close();
  });
});
