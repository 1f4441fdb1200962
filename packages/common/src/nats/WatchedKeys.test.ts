import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { z } from 'zod';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer, waitFor } from '@gateway/testing';
import { createLogger } from '../runtime/logger.js';
import { liveEntries, openBucket } from './connection.js';
import { WatchedKeys } from './WatchedKeys.js';

const log = createLogger('watched-keys-test', 'silent');
const encode = (text: string) => new TextEncoder().encode(text);
const countSchema = z.object({ n: z.number().int() });

/** Values `{"n":…}` kept as their number; anything else fails the check. Every check is recorded. */
function counting(checked: Array<{ key: string; value: string }>) {
  return ({ key, value }: { key: string; value: Uint8Array }) => {
    const text = new TextDecoder().decode(value);
    checked.push({ key, value: text });
    try {
      return countSchema.parse(JSON.parse(text)).n;
    } catch {
      return undefined;
    }
  };
}

/** A bucket of the test's own (the admin identity may create one; services only open the catalog's). */
async function bucket(nc: NatsConnection, name: string): Promise<KV> {
  await new Kvm(nc).create(name);
  return openBucket(nc, name);
}

const asObject = (kept: Map<string, unknown> | undefined) => (kept ? Object.fromEntries([...kept].sort(([a], [b]) => a.localeCompare(b))) : undefined);

describe('WatchedKeys', () => {
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

  it('keeps the live entries under its filter present before the watch, each checked once; then follows puts, deletes and purges', async () => {
    const kv = await bucket(nc, 'watched_before');
    await kv.put('a.good', '{"n":1}');
    await kv.put('a.bad', 'not a count');
    await kv.put('a.deleted', '{"n":3}');
    await kv.delete('a.deleted');
    await kv.put('a.purged', '{"n":4}');
    await kv.purge('a.purged');
    await kv.put('b.elsewhere', '{"n":5}');
    const checked: Array<{ key: string; value: string }> = [];
    const watched = await WatchedKeys.watch(kv, { filter: 'a.*', values: true, check: counting(checked), kept: new Map<string, number>(), failure: 'failed', log });
    try {
      expect(asObject(watched.current())).toEqual({ 'a.good': 1 });
      // The listing checked each live key under the filter once; readers never check again.
      expect(checked.map((c) => c.key).sort()).toEqual(['a.bad', 'a.good']);
      watched.current()?.get('a.good');
      expect(checked).toHaveLength(2);

      await kv.put('a.later', '{"n":6}');
      await waitFor(() => watched.current()?.get('a.later') === 6, 5_000, 'a put heard');
      // A value that fails its check holds nothing, even where a good one was.
      await kv.put('a.good', 'broken now');
      await waitFor(() => watched.current() && !watched.current()?.has('a.good'), 5_000, 'a failing value dropped');
      await kv.put('a.bad', '{"n":7}');
      await waitFor(() => watched.current()?.get('a.bad') === 7, 5_000, 'a good value after a bad one');
      await kv.delete('a.later');
      await waitFor(() => watched.current() && !watched.current()?.has('a.later'), 5_000, 'a delete heard');
      await kv.purge('a.bad');
      await waitFor(() => watched.current() && !watched.current()?.has('a.bad'), 5_000, 'a purge heard');
      // Keys outside the filter are never seen.
      await kv.put('b.elsewhere', '{"n":8}');
      await kv.put('a.last', '{"n":9}');
      await waitFor(() => watched.current()?.get('a.last') === 9, 5_000, 'the last put heard');
      expect(asObject(watched.current())).toEqual({ 'a.last': 9 });
      expect(checked.some((c) => c.key.startsWith('b.'))).toBe(false);

      // A write of this replica's own is kept at once, checked like any other.
      watched.note('a.mine', encode('{"n":10}'), 1);
      expect(watched.current()?.get('a.mine')).toBe(10);
      watched.forget('a.mine');
      expect(watched.current()?.has('a.mine')).toBe(false);
    } finally {
      watched.close();
    }
    // Closed: readers read the bucket.
    expect(watched.current()).toBeUndefined();
  });

  it('watches headers only when values are not needed: keys come and go, their values are never sent', async () => {
    const kv = await bucket(nc, 'watched_headers');
    await kv.put('acme.w1', 'sealed secret');
    const checked: Array<{ key: string; value: string }> = [];
    const watched = await WatchedKeys.watch(kv, {
      values: false,
      check: ({ key, value }) => (checked.push({ key, value: new TextDecoder().decode(value) }), true as const),
      kept: new Map<string, true>(),
      failure: 'failed',
      log,
    });
    try {
      expect(asObject(watched.current())).toEqual({ 'acme.w1': true });
      await kv.put('globex.w2', 'another secret');
      await waitFor(() => watched.current()?.has('globex.w2'), 5_000, 'a put heard');
      expect(checked.find((c) => c.key === 'globex.w2')).toEqual({ key: 'globex.w2', value: '' });
      await kv.delete('acme.w1');
      await waitFor(() => watched.current() && !watched.current()?.has('acme.w1'), 5_000, 'a delete heard');
      await kv.purge('globex.w2');
      await waitFor(() => watched.current()?.size === 0, 5_000, 'a purge heard');
    } finally {
      watched.close();
    }
  });

  it('ends as the bucket is when updates race the listing: a key changed meanwhile keeps its update, not the older listing', async () => {
    // Each key is written once while the watch starts and lists: a key whose listed value is
    // older than its update, or deleted after it was listed, is not written again to mend it.
    for (let round = 0; round < 3; round++) {
      const kv = await bucket(nc, `watched_race_${round}`);
      const keys = Array.from({ length: 300 }, (_, i) => `race.k${i}`);
      await Promise.all(keys.map((key) => kv.put(key, '{"n":0}')));
      const writes = (async () => {
        for (const [i, key] of keys.entries()) {
          if (i % 2 === 0) await kv.delete(key);
          else await kv.put(key, `{"n":${round + 1}}`);
        }
      })();
      const watched = await WatchedKeys.watch(kv, { filter: 'race.*', values: true, check: counting([]), kept: new Map<string, number>(), failure: 'failed', log });
      try {
        await writes;
        // Updates come in order: once the last one is here, every earlier one was applied.
        await kv.put('race.end', '{"n":-1}');
        await waitFor(() => watched.current()?.get('race.end') === -1, 5_000, 'the last update heard');
        const inBucket = Object.fromEntries((await liveEntries(kv, 'race.*')).map((entry) => [entry.key, countSchema.parse(JSON.parse(entry.string())).n]));
        expect(asObject(watched.current())).toEqual(Object.fromEntries(Object.entries(inBucket).sort(([a], [b]) => a.localeCompare(b))));
        expect(Object.keys(inBucket)).toHaveLength(151);
      } finally {
        watched.close();
      }
    }
  }, 60_000);

  it('starts again after the watch fails: readers read the bucket meanwhile, the failure is logged, then the keys are current again', async () => {
    const own = await NatsServer.start();
    let server = own;
    const connection = await own.connect('admin', { maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    const lines: Array<Record<string, unknown>> = [];
    const captured = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) }));
    let watched: WatchedKeys<number, Map<string, number>> | undefined;
    try {
      const kv = await bucket(connection, 'watched_restart');
      await kv.put('r.before', '{"n":1}');
      await server.stop({ keepStore: true });
      // The server is down: the watch cannot start; `watch` resolves at readyWithinMs, not current.
      watched = await WatchedKeys.watch(kv, {
        values: true,
        check: counting([]),
        kept: new Map<string, number>(),
        failure: 'watching failed; readers read the bucket',
        log: captured.child({ watched: 'r' }),
        readyWithinMs: 300,
      });
      expect(watched.current()).toBeUndefined();
      await waitFor(() => lines.some((line) => line.msg === 'watching failed; readers read the bucket' && line.watched === 'r' && line.err !== undefined), 20_000, 'the failure logged');
      expect(watched.current()).toBeUndefined();

      server = await own.restart();
      const kept = watched;
      await waitFor(() => kept.current()?.get('r.before') === 1, 20_000, 'current again, with the key written before');
      await kv.put('r.after', '{"n":2}');
      await waitFor(() => kept.current()?.get('r.after') === 2, 5_000, 'a put heard after the restart');
    } finally {
      watched?.close();
      await connection.close();
      await server.stop();
    }
  }, 60_000);
  it('is not current while its connection is down, and hears a change made right after it is back', async () => {
    const own = await NatsServer.start();
    let server = own;
    const connection = await own.connect('admin', { maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    let watched: WatchedKeys<number, Map<string, number>> | undefined;
    try {
      const kv = await bucket(connection, 'watched_reconnect');
      await kv.put('c.before', '{"n":1}');
      watched = await WatchedKeys.watch(kv, { values: true, check: counting([]), kept: new Map<string, number>(), failure: 'watching failed', log });
      const kept = watched;
      expect(kept.current()?.get('c.before')).toBe(1);

      await server.stop({ keepStore: true });
      await waitFor(() => kept.current() === undefined, 5_000, 'not current once the connection dropped');
      const reconnected = (async () => {
        for await (const status of connection.status()) if (status.type === 'reconnect') return;
      })();
      server = await own.restart();
      await reconnected;
      await kv.put('c.after', '{"n":2}');
      // Within the watch's restart, well before nats.js would have missed the heartbeats of its old consumer.
      await waitFor(() => kept.current()?.get('c.after') === 2, 3_000, 'a put made right after the reconnection heard');
    } finally {
      watched?.close();
      await connection.close();
      await server.stop();
    }
  }, 60_000);
});
