import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { NatsServer, SecretVolume, waitFor } from '@gateway/testing';
import { connectNats, liveKeys, natsShape, openBucket, readNatsSettings } from './connection.js';
import { loadConfig } from '../runtime/config.js';

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

describe('NATS connection settings', () => {
  const read = (env: Record<string, string>) => readNatsSettings(loadConfig(natsShape, env), 'signaling');

  it('takes tls:// servers, the CA, the nkey seed file and an optional client certificate', () => {
    expect(read({ NATS_URL: 'tls://a:4222, tls://b:4222', NATS_NKEY_SEED_FILE: '/run/nats/seed', NATS_CA_FILE: '/run/nats/ca.crt' })).toEqual({
      servers: ['tls://a:4222', 'tls://b:4222'],
      identity: 'signaling',
      seedFile: '/run/nats/seed',
      caFile: '/run/nats/ca.crt',
    });
  });

  it('refuses NATS without TLS or without credentials, naming the variable and the rule, never the value', () => {
    const failure = (env: Record<string, string>) => {
      try {
        read(env);
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    const plain = failure({ NATS_URL: 'nats://10.1.2.3:4222', NATS_NKEY_SEED_FILE: '/run/nats/seed' });
    expect(plain).toMatch(/NATS_URL: must be tls:\/\/host:port/);
    expect(plain).not.toContain('10.1.2.3');
    expect(failure({ NATS_URL: 'tls://a:4222,nats://b:4222', NATS_NKEY_SEED_FILE: '/s' })).toMatch(/NATS_URL/);
    expect(failure({})).toMatch(/NATS_NKEY_SEED_FILE: must name the file holding this service's NATS nkey seed/);
    expect(failure({ NATS_NKEY_SEED_FILE: '/s', NATS_TLS_CERT_FILE: '/c.crt' })).toMatch(/NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together/);
  });
});

describe('connectNats across reconnections', () => {
  it('reads its seed and client certificate files again at each connection', async () => {
    const nats = await NatsServer.start();
    const env = nats.envFor('recorder');
    const original = { 'tls.crt': readFileSync(env.NATS_TLS_CERT_FILE!), 'tls.key': readFileSync(env.NATS_TLS_KEY_FILE!), seed: readFileSync(env.NATS_NKEY_SEED_FILE!) };
    const volume = SecretVolume.create(original);
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) }));
    const settings = readNatsSettings(
      loadConfig(natsShape, { ...env, NATS_TLS_CERT_FILE: volume.file('tls.crt'), NATS_TLS_KEY_FILE: volume.file('tls.key'), NATS_NKEY_SEED_FILE: volume.file('seed') }),
      'recorder',
    );
    // An attempt with the foreign certificate may hang until its handshake times out: 2 s
    // instead of 20 s lets the renewed one be tried soon after it is in place.
    const nc = await connectNats(settings, 'reload-test', log, { handshakeTimeoutMs: 2_000 });
    let server = nats;
    const statuses = () => lines.filter((line) => line.nats !== undefined).map((line) => String(line.nats));
    try {
      // A seed file that holds no seed: the next connection keeps the seed in use, and says so.
      volume.update({ seed: 'not a seed' });
      server = await server.restart();
      await waitFor(() => statuses().includes('seed') && statuses().includes('reconnect'), 20_000, 'a reconnection with the seed kept');
      await nc.flush();

      // A client certificate of a CA the server does not trust: the next connection is refused,
      // which it would not be if the files had been read once.
      const before = statuses().length;
      volume.update({ 'tls.crt': readFileSync(nats.pki.foreign.certFile), 'tls.key': readFileSync(nats.pki.foreign.keyFile), seed: original.seed });
      server = await server.restart();
      // nats.js reports each refused attempt as a disconnection: the restart's, then at least one refused.
      await waitFor(
        () =>
          statuses()
            .slice(before)
            .filter((status) => status === 'disconnect').length >= 2,
        20_000,
        'an attempt with the foreign certificate refused',
      );
      expect(statuses().slice(before)).not.toContain('reconnect');

      // The renewed certificate of our CA: the connection comes back.
      volume.update({ 'tls.crt': original['tls.crt'], 'tls.key': original['tls.key'] });
      await waitFor(() => statuses().slice(before).includes('reconnect'), 20_000, 'a reconnection with the renewed certificate');
      await nc.flush();
    } finally {
      await nc.close();
      await server.stop();
      volume.remove();
    }
  }, 60_000);
});
