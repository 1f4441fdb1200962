import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { SecretVolume } from '@gateway/testing';
import { loadConfig } from '../runtime/config.js';
import { fileReloads } from '../runtime/watchedFiles.js';
import { createKeyring } from './createKeyring.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { StaticKeyring } from './StaticKeyring.js';
import { readKeyringSettings, tenantKeysShape } from './settings.js';

const key = () => randomBytes(32).toString('base64');
const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (e: unknown) => GatewayError.from(e).code,
  );

describe('StaticKeyring', () => {
  it('keeps today\'s shape: a plain key is the tenant\'s "default" one, and its wrapped keys still open', async () => {
    const old = key();
    const before = await new StaticKeyring({ acme: old }).wrap('acme', Buffer.alloc(32, 1));
    expect(before.kekId).toBe('static:acme');
    const settings = readKeyringSettings(loadConfig(tenantKeysShape, { GATEWAY_TENANT_KEYS: JSON.stringify({ acme: { current: 'k2', keys: { default: old, k2: key() } } }) }));
    expect(settings.kind).toBe('static');
    const ring = new StaticKeyring(settings.kind === 'static' ? settings.tenants : {});
    expect((await ring.unwrap('acme', before)).equals(Buffer.alloc(32, 1))).toBe(true);
    const after = await ring.wrap('acme', Buffer.alloc(32, 2));
    expect(after.kekId).toBe('static:acme:k2');
    expect((await ring.rewrap('acme', before)).kekId).toBe('static:acme:k2');
    expect(await ring.rotate('acme')).toEqual({ current: 'static:acme:k2', previous: ['static:acme'] });
    expect(await ring.retire('acme', ['static:acme', 'static:acme:k2'])).toEqual([{ kekId: 'static:acme', outcome: 'remove-from-config' }]);
    // Another tenant's name, or a key id the tenant lacks, opens nothing.
    const other = new StaticKeyring({ acme: old, globex: old });
    expect(await codeOf(other.unwrap('globex', before))).toBe(ErrorCode.PERMISSION_DENIED);
    expect(await codeOf(ring.unwrap('acme', { ...after, kekId: 'static:acme:k9' }))).toBe(ErrorCode.PERMISSION_DENIED);
    expect(await codeOf(new StaticKeyring({ acme: old }).rotate('acme'))).toBe(ErrorCode.INVALID_STATE);
    await ring.destroy('acme', []);
    expect(await codeOf(ring.unwrap('acme', after))).toBe(ErrorCode.PERMISSION_DENIED);
  });

  it('configuration fails fast, naming tenants and variables, never keys', () => {
    const secret = key();
    const fail = (env: Record<string, string>) => {
      try {
        readKeyringSettings(loadConfig(tenantKeysShape, env));
      } catch (e) {
        return (e as GatewayError).message;
      }
      return 'ok';
    };
    const message = fail({ GATEWAY_TENANT_KEYS: JSON.stringify({ acme: { current: 'k3', keys: { k1: secret } } }) });
    expect(message).toContain('acme');
    expect(message).not.toContain(secret);
    expect(fail({ GATEWAY_KEYRING: 'kms', GATEWAY_KMS_KEYS: JSON.stringify({ acme: 'alias/gateway/acme' }) })).toContain('GATEWAY_KMS_REGION');
    expect(fail({ GATEWAY_KEYRING: 'kms', GATEWAY_KMS_REGION: 'eu-west-1', GATEWAY_KMS_KEYS: JSON.stringify({ acme: 'arn:aws:kms:eu-west-1:111122223333:key/abc' }) })).toContain('GATEWAY_KMS_KEYS');
    expect(fail({ GATEWAY_KEYRING: 'kms', GATEWAY_KMS_REGION: 'eu-west-1', GATEWAY_KMS_KEYS: JSON.stringify({ acme: 'alias/gateway/acme' }) })).toBe('ok');
  });

  it('takes up a new keys file without a restart; a broken one is refused, logged without its contents, and the keys in use stay', async () => {
    const [k1, k2] = [key(), key()];
    const volume = SecretVolume.create({ 'tenant-keys.json': JSON.stringify({ acme: k1 }) });
    const logged: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, done) => (logged.push(chunk.toString()), done()) }));
    const rejected: string[] = [];
    fileReloads.on('rejected', (source) => rejected.push(source));
    const settings = readKeyringSettings(loadConfig(tenantKeysShape, { GATEWAY_TENANT_KEYS_FILE: volume.file('tenant-keys.json') }));
    const ring = await createKeyring(settings, log);
    try {
      const before = await ring.wrap('acme', Buffer.alloc(32, 1));
      expect(before.kekId).toBe('static:acme');
      // The Secret gains a new current key, keeping the old one: new data keys use it, old wrapped keys still open.
      volume.update({ 'tenant-keys.json': JSON.stringify({ acme: { current: 'k2', keys: { default: k1, k2 } } }) });
      await waitUntil(async () => (await ring.currentKekId('acme')) === 'static:acme:k2');
      expect((await ring.wrap('acme', Buffer.alloc(32, 2))).kekId).toBe('static:acme:k2');
      expect((await ring.unwrap('acme', before)).equals(Buffer.alloc(32, 1))).toBe(true);
      // A broken file (the JSON cut short, a secret inside it) changes nothing.
      const cutShort = `{"acme": {"current": "k3", "keys": {"k3": "${k2}"`;
      volume.update({ 'tenant-keys.json': cutShort });
      await waitUntil(() => rejected.includes('tenant-keys'));
      expect(await ring.currentKekId('acme')).toBe('static:acme:k2');
      expect(logged.join('')).not.toContain(k2);
      expect(logged.join('')).toMatch(/rejected/);
    } finally {
      ring.close();
      volume.remove();
    }
  });

  it('reads GATEWAY_TENANT_KEYS from the environment once, then removes it so no child process inherits it', () => {
    const value = JSON.stringify({ acme: key() });
    process.env.GATEWAY_TENANT_KEYS = value;
    try {
      const settings = readKeyringSettings(loadConfig(tenantKeysShape));
      expect(settings.kind === 'static' && Object.keys(settings.tenants)).toEqual(['acme']);
      expect(process.env.GATEWAY_TENANT_KEYS).toBeUndefined();
    } finally {
      delete process.env.GATEWAY_TENANT_KEYS;
    }
  });

  it('refuses the variable and its file together', () => {
    const volume = SecretVolume.create({ 'k.json': JSON.stringify({ acme: key() }) });
    try {
      expect(() => readKeyringSettings(loadConfig(tenantKeysShape, { GATEWAY_TENANT_KEYS_FILE: volume.file('k.json'), GATEWAY_TENANT_KEYS: JSON.stringify({ acme: key() }) }))).toThrow(/not both/);
    } finally {
      volume.remove();
    }
  });
});

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
