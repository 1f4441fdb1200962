import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from '@gateway/testing';
import { DeviceKeys, MAX_DEVICE_KEYS_PER_USER } from './deviceKeys.js';
import { GatewayError } from '../errors.js';
import { openBucket } from '../nats/connection.js';
import { buckets } from '../nats/subjects.js';

describe('DeviceKeys', () => {
  let nats: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
  });

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  const key = (id: string) => ({ id, publicKey: 'pk', counter: 0, transports: [], registeredAtMs: Date.now() });

  it('keeps every key when registrations of one end user race (two replicas at once)', async () => {
    const [a, b] = [new DeviceKeys(await openBucket(nc, buckets.deviceKeys)), new DeviceKeys(await openBucket(nc, buckets.deviceKeys))];
    await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).add('acme', 'ext-1', key(`key-${i}`))));
    expect((await a.list('acme', 'ext-1')).map((k) => k.id).sort()).toEqual(Array.from({ length: 8 }, (_, i) => `key-${i}`));
    // A counter update racing a registration loses neither.
    await Promise.all([a.updateCounter('acme', 'ext-1', 'key-0', 5), b.add('acme', 'ext-1', key('key-8'))]);
    const keys = await a.list('acme', 'ext-1');
    expect(keys.find((k) => k.id === 'key-0')!.counter).toBe(5);
    expect(keys.map((k) => k.id)).toContain('key-8');
  });

  it(`refuses a registration beyond ${MAX_DEVICE_KEYS_PER_USER} keys per end user with LIMIT_EXCEEDED, keeping those held`, async () => {
    const keys = new DeviceKeys(await openBucket(nc, buckets.deviceKeys));
    for (let i = 0; i < MAX_DEVICE_KEYS_PER_USER; i++) await keys.add('acme', 'ext-full', key(`full-${i}`));
    const refused = await keys.add('acme', 'ext-full', key('one-too-many')).then(
      () => undefined,
      (e: unknown) => GatewayError.from(e).code,
    );
    expect(refused).toBe('LIMIT_EXCEEDED');
    expect(await keys.list('acme', 'ext-full')).toHaveLength(MAX_DEVICE_KEYS_PER_USER);
    // Registering a key already held again replaces it, also when the list is full.
    await keys.add('acme', 'ext-full', { ...key('full-0'), counter: 7 });
    expect((await keys.list('acme', 'ext-full')).find((k) => k.id === 'full-0')!.counter).toBe(7);
  });

  it('refuses a device key record that fails its checks with INTERNAL, never using it', async () => {
    const kv = await openBucket(nc, buckets.deviceKeys);
    const keys = new DeviceKeys(kv);
    const before = new Set<string>();
    for await (const k of await kv.keys()) before.add(k);
    await keys.add('acme', 'ext-tampered', key('real'));
    let stored: string | undefined;
    for await (const k of await kv.keys()) if (!before.has(k)) stored = k;
    expect(stored).toBeDefined();
    for (const tampered of ['not json', '{"toString":1}', JSON.stringify([{ ...key('x'), counter: -1 }]), JSON.stringify([{ ...key('x'), publicKey: { __proto__: 1 } }])]) {
      await kv.put(stored!, tampered);
      const code = await keys.list('acme', 'ext-tampered').then(
        () => 'read',
        (e: unknown) => GatewayError.from(e).code,
      );
      expect(code, tampered).toBe('INTERNAL');
    }
  });
});
