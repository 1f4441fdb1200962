import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from '@gateway/testing';
import { DeviceKeys } from './deviceKeys.js';
import { openBucket } from './nats.js';
import { buckets } from './subjects.js';

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
});
