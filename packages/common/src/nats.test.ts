import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NatsServer } from '@gateway/testing';
import { liveKeys, openBucket } from './nats.js';

describe('liveKeys', () => {
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

  it('lists the keys that hold a value, under a filter, as kv.keys() does', async () => {
    // A bucket of the test's own (the admin identity may create one; services only open the catalog's).
    await new Kvm(nc).create('live_keys');
    const kv = await openBucket(nc, 'live_keys');
    await kv.put('acme.room1.a', 'x');
    await kv.put('acme.room1.b', 'x');
    await kv.put('acme.room1.c', 'x');
    await kv.put('acme.room2.d', 'x');
    await kv.put('globex.room1.e', 'x');
    await kv.delete('acme.room1.b');
    await kv.purge('acme.room1.c');
    await kv.put('acme.room1.a', 'y');
    expect((await liveKeys(kv, 'acme.room1.*')).sort()).toEqual(['acme.room1.a']);
    expect((await liveKeys(kv, 'acme.>')).sort()).toEqual(['acme.room1.a', 'acme.room2.d']);
    expect((await liveKeys(kv)).sort()).toEqual(['acme.room1.a', 'acme.room2.d', 'globex.room1.e']);
    const expected: string[] = [];
    for await (const key of await kv.keys()) expected.push(key);
    expect((await liveKeys(kv)).sort()).toEqual(expected.sort());
  });
});
