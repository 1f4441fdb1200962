import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { DEMO_TENANT, TenantAuth, buckets, closeHttp, hardenHttpServer, listenHttp, openBucket } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { DirectoryStore, seedDirectory } from '../../services/routing/src/directory/DirectoryStore.js';
import { createDirectoryHandler } from '../../services/routing/src/http/directory.js';
import { basicAuth } from '../support/crmSync.js';
import { recordingLogger } from '../support/recordingLogger.js';
import { seededRandom } from '../support/seededRandom.js';
import { GLOBEX_TENANT } from '../support/tokens.js';

/** Requests in the short pass (`make test`); FUZZ_ITERATIONS=100000 for a long one. FUZZ_SEED replays a run. */
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 1_200);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const BATCH = 50;
const WORKERS = 6;

interface Answer {
  status: number | 'closed' | 'timeout';
  headers: string;
  body: string;
}

/** One request written as raw bytes; the whole answer read back (the connection closes after it). */
function rawRequest(port: number, head: string, body: Buffer, timeoutMs = 5_000): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (timedOut: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const answer = Buffer.concat(chunks).toString('utf8');
      const split = answer.indexOf('\r\n\r\n');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      const headers = split >= 0 ? answer.slice(0, split).toLowerCase() : answer.toLowerCase();
      const raw = split >= 0 ? answer.slice(split + 4) : '';
      resolve({ status: status ? Number(status[1]) : timedOut ? 'timeout' : 'closed', headers, body: headers.includes('transfer-encoding: chunked') ? dechunk(raw) : raw });
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body])));
  });
}

/** A chunked body's content (sizes in hex, each chunk followed by CRLF, a zero-size chunk last). */
function dechunk(raw: string): string {
  let body = '';
  let at = 0;
  for (;;) {
    const end = raw.indexOf('\r\n', at);
    const size = end < 0 ? 0 : Number.parseInt(raw.slice(at, end), 16);
    if (!size) return body;
    body += raw.slice(end + 2, end + 2 + size);
    at = end + 2 + size + 2;
  }
}

/**
 * A seeded fuzzer against every route of the directory admin API (services/routing/src/http/
 * directory.ts) over a real nats-server: methods, paths, query strings, headers and bodies, valid
 * records and hostile ones (wrong types, huge strings, deep nesting, prototype keys, references
 * to nothing, broken encodings), forged credentials. Every answer must be a success or a 4xx
 * with a JSON error; never a 500, never a forged credential accepted, and the API must still
 * answer after every batch.
 */
describe('the routing directory admin API under a seeded fuzzer', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let server: http.Server;
  let port = 0;
  const log = recordingLogger();

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect('routing');
    const store = new DirectoryStore(await openBucket(nc, buckets.routingDirectory), log);
    // Records to refer to, delete and replace.
    await seedDirectory(store, 'demo', JSON.parse(readFileSync(new URL('../../services/routing/demo-directory.json', import.meta.url), 'utf8')));
    server = http.createServer(createDirectoryHandler(TenantAuth.configured([DEMO_TENANT, GLOBEX_TENANT]), store, log));
    hardenHttpServer(server);
    port = await listenHttp(server, 0, '127.0.0.1');
  }, 60_000);

  afterAll(async () => {
    if (server) await closeHttp(server);
    await nc?.close();
    await nats?.stop();
  });

  it(
    `answers ${ITERATIONS} hostile requests with a success or a 4xx JSON error (seed ${SEED})`,
    async () => {
      const rand = seededRandom(SEED);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
      const ids = ['billing', 'support', 'ana', 'ben', 'cleo', 'sam', 'ada', 'front-line', 'billing-first', 'support-only', 'night', 'p1', 'q1', 't1'];
      const hostileIds = ['x'.repeat(64), 'x'.repeat(65), 'a.b', '*', '>', '%2E%2E', '..', '%C3%A9', '%00', 'a%20b', '__proto__', 'constructor', '', '%ZZ', 'revision'];
      const id = () => (rand() < 0.8 ? pick(ids) : pick(hostileIds));
      const kinds = ['people', 'teams', 'queues', 'profiles'];
      const kind = () => (rand() < 0.9 ? pick(kinds) : pick(['person', 'PEOPLE', 'revision', '..', 'queues/', '']));
      const query = () => {
        if (rand() < 0.85) return '';
        return `?${pick(['limit=5', '__proto__=1', 'kind=people', `q=${'z'.repeat(8_000)}`, '%ZZ', 'a&b', '=', 'x[]=1'])}`;
      };
      const hostileString = () => pick<unknown>(['', 'x'.repeat(200), 'x'.repeat(40_000), '\u0000', '\ud800', '\u202e', '<script>', 7, null, true, [], {}, { toString: 1 }]);
      /** Half the bodies are valid records (so the routes write and refer), the others mutated field by field. */
      let clean = false;
      const hostile = (value: unknown): unknown => (!clean && rand() < 0.3 ? hostileString() : value);
      /** A valid value, or (in a mutated record) sometimes an invalid one. */
      const choose = <T>(good: readonly T[], bad: readonly T[]): T => (clean || rand() < 0.6 ? pick(good) : pick(bad));
      const skills = () =>
        choose<unknown>(
          [{ billing: 3 }, { support: 5, billing: 1 }, {}],
          [{ billing: 0 }, { billing: 11 }, { Billing: 2 }, { constructor: 1 }, JSON.parse('{"__proto__": 5}'), Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`s${i}`, 1])), [1], 'billing'],
        );
      const record = (k: string): unknown => {
        switch (k) {
          case 'people': {
            const roles = choose<string[]>([['agent'], ['supervisor'], ['admin'], ['agent', 'supervisor']], [[], ['root'], ['agent', 'agent']]);
            return {
              name: hostile('A Person'),
              roles: hostile(roles),
              skills: skills(),
              ...(roles.includes('agent') || rand() < 0.3 ? { profileId: hostile(choose(['billing-first', 'support-only'], ids)) } : {}),
              ...(rand() < 0.4 ? { teamId: hostile(choose(['front-line', 'night'], ids)) } : {}),
            };
          }
          case 'teams':
            return { name: hostile('A team'), supervisorIds: hostile(choose([[], ['sam']], [['ana'], ['sam', 'sam'], ['nobody'], Array(200).fill('sam')])) };
          case 'queues':
            return {
              name: hostile('A queue'),
              priority: hostile(choose([0, 1, 7], [-1, 1e9, 1.5])),
              requiredSkills: skills(),
              ...(rand() < 0.4 ? { overflow: hostile({ queueId: choose(['billing', 'support'], ids), afterSeconds: choose([1, 60], [0, -5, 1e12]) }) } : {}),
              ...(rand() < 0.3
                ? {
                    businessHours: hostile({
                      timeZone: choose(['Europe/Berlin', 'UTC', 'America/New_York'], ['Mars/Base', '', 'x'.repeat(100)]),
                      weekly: choose<unknown>(
                        [[{ day: 1, open: '09:00', close: '17:00' }], [{ day: 1, open: '22:00', close: '06:00' }]],
                        [[{ day: 7, open: '09:00', close: '17:00' }], [{ day: 1, open: '24:00', close: '01:00' }], 'weekdays'],
                      ),
                      ...(rand() < 0.5 ? { closedDates: choose<unknown>([['2026-12-25']], [['2026-02-30'], ['12/25/2026'], Array(500).fill('2026-12-25')]) } : {}),
                    }),
                  }
                : {}),
              ...(rand() < 0.3 ? { contextFields: hostile(choose<unknown>([['orderId'], []], [['a b'], ['x', 'x'], Array(60).fill('k')])) } : {}),
              ...(rand() < 0.2 ? { offerTimeoutSeconds: hostile(choose([15, 30], [1, 301])) } : {}),
            };
          default:
            return {
              name: hostile('A profile'),
              queues: hostile(
                choose<unknown>(
                  [[{ queueId: 'billing', priority: 1 }], [{ queueId: 'support', priority: 1, delaySeconds: 30 }]],
                  [
                    [],
                    [{ queueId: 'nowhere', priority: 1 }],
                    [{ queueId: 'billing' }],
                    [
                      { queueId: 'billing', priority: 1 },
                      { queueId: 'billing', priority: 2 },
                    ],
                  ],
                ),
              ),
              capacity: hostile(
                choose<unknown>(
                  [
                    { call: 1, chat: 3 },
                    { call: 0, chat: 2 },
                  ],
                  [
                    { call: 0, chat: 0 },
                    { call: 6, chat: 0 },
                    { call: '1', chat: 1 },
                  ],
                ),
              ),
            };
        }
      };
      const body = (k: string): { bytes: Buffer; type: string } => {
        if (rand() < 0.5) {
          clean = true;
          const valid = record(k);
          clean = false;
          return { bytes: Buffer.from(JSON.stringify(valid)), type: 'application/json' };
        }
        return pick([
          () => ({ bytes: Buffer.from(JSON.stringify(record(k))), type: 'application/json' }),
          () => ({ bytes: Buffer.from(JSON.stringify(record(k))), type: 'application/json' }),
          () => ({ bytes: Buffer.from(JSON.stringify(record(pick(kinds)))), type: 'application/json' }),
          () => ({ bytes: Buffer.from(JSON.stringify({ ...(record(k) as object), personId: 'other', queueId: 'other', extra: 1 })), type: 'application/json' }),
          () => ({ bytes: Buffer.from('{"name":"x","__proto__":{"roles":["admin"]}}'), type: 'application/json' }),
          () => ({ bytes: Buffer.from('{"name":"x","constructor":{"prototype":{"admin":true}}}'), type: 'application/json' }),
          () => ({ bytes: Buffer.from(`${'['.repeat(10_000)}${']'.repeat(10_000)}`), type: 'application/json' }),
          () => ({ bytes: Buffer.from(`{"a":${'{"a":'.repeat(3_000)}1${'}'.repeat(3_001)}`), type: 'application/json' }),
          () => ({ bytes: Buffer.from(JSON.stringify({ name: 'x', skills: Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [`k${i}`, 1])) })), type: 'application/json' }),
          () => ({ bytes: Buffer.from(`{"name":"${'n'.repeat(200_000)}"}`), type: 'application/json' }),
          () => ({ bytes: Buffer.from('{"name":"\\ud800","roles":["admin"]}'), type: 'application/json' }),
          () => ({ bytes: Buffer.from('{"name": "x", "roles": ['), type: 'application/json' }),
          () => ({ bytes: Buffer.from(Array.from({ length: 300 }, () => Math.floor(rand() * 256))), type: pick(['application/octet-stream', 'application/json', 'text/plain', '']) }),
          () => ({ bytes: Buffer.from(pick(['null', '[]', '"x"', '7', 'NaN', 'true'])), type: 'application/json; charset=utf-8' }),
          () => ({ bytes: Buffer.alloc(0), type: 'application/json' }),
        ])();
      };
      const routeOf = (): { method: string; path: string; kind: string } => {
        const k = kind();
        const path = pick([
          () => '/v1/directory',
          () => `/v1/directory/${k}`,
          () => `/v1/directory/${k}/${id()}`,
          () => `/v1/directory/${k}/${id()}`,
          () => `/v1/directory/${k}/${id()}`,
          () =>
            pick([
              '/',
              '//a:99999/',
              'http://evil.example/v1/directory',
              '*',
              '/v1/directory/../../etc/passwd',
              `/v1//directory/${k}`,
              `/${'a/'.repeat(2_000)}`,
              '/v1/directory#frag',
              `/v1/directory/${k}/${id()}/more`,
              '/v1/directory/',
            ]),
        ])();
        const method = rand() < 0.8 ? pick(['GET', 'PUT', 'PUT', 'DELETE']) : pick(['POST', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'FOO', 'GET /x', '']);
        return { method, path: `${path}${query()}`, kind: k };
      };
      const forged = [
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:wrong-secret`).toString('base64')}`,
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${GLOBEX_TENANT.apiSecret}`).toString('base64')}`,
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${DEMO_TENANT.apiSecret}x`).toString('base64')}`,
        `Basic ${Buffer.from(`:${DEMO_TENANT.apiSecret}`).toString('base64')}`,
        'Basic !!!not-base64!!!',
        `Bearer ${DEMO_TENANT.apiSecret}`,
        `Basic ${'A'.repeat(6_000)}`,
      ];
      const genuine = [basicAuth(DEMO_TENANT), basicAuth(GLOBEX_TENANT)];

      const outcomes = new Map<string, number>();
      const failures: string[] = [];

      const one = async (i: number) => {
        const credential = rand();
        const authorization = credential < 0.7 ? pick(genuine) : credential < 0.95 ? pick(forged) : undefined;
        const { method, path, kind: k } = routeOf();
        const { bytes, type } = method === 'PUT' || rand() < 0.1 ? body(k) : { bytes: Buffer.alloc(0), type: '' };
        const headers = [`Host: 127.0.0.1:${port}`, 'Connection: close'];
        if (authorization !== undefined) headers.push(`Authorization: ${authorization}`);
        if (type) headers.push(`Content-Type: ${type}`);
        // Requests broken below HTTP's semantics (framing, header syntax) may be refused by the server's parser, without JSON.
        let broken = false;
        const framing = rand();
        if (framing < 0.93) headers.push(`Content-Length: ${bytes.length}`);
        else if (framing < 0.96) headers.push('Transfer-Encoding: chunked');
        else {
          headers.push(pick(['Content-Length: -1', 'Content-Length: abc', `Content-Length: ${bytes.length}`, 'Transfer-Encoding: gzip, chunked']));
          broken = true;
        }
        if (rand() < 0.03) {
          headers.push('Bad Header: \u0001');
          broken = true;
        }
        // Node's parser refuses methods it does not know, and request targets it cannot read.
        if (!http.METHODS.includes(method) || path.startsWith('http') || path.includes('#')) broken = true;
        const chunked = bytes.length > 0 ? Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n0\r\n\r\n')]) : Buffer.from('0\r\n\r\n');
        const payload = framing >= 0.93 && framing < 0.96 ? chunked : bytes;
        const answer = await rawRequest(port, `${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, payload);
        const status = answer.status;
        outcomes.set(String(status), (outcomes.get(String(status)) ?? 0) + 1);
        const where = `case ${i}: ${method} ${path.slice(0, 80)} (${type}, ${bytes.subarray(0, 60).toString('latin1')})`;
        if (typeof status !== 'number') {
          if (!broken) failures.push(`${where}: ${status}`);
          return;
        }
        if (status >= 500) failures.push(`${where} answered ${status}: ${answer.body.slice(0, 200)}`);
        if (status >= 200 && status < 300 && (authorization === undefined || forged.includes(authorization))) failures.push(`${where} with a forged credential answered ${status}`);
        if (status >= 400 && !(broken && !answer.headers.includes('content-type: application/json'))) {
          try {
            const parsed = JSON.parse(answer.body) as { error?: { code?: unknown; message?: unknown } };
            if (typeof parsed.error?.code !== 'string' || typeof parsed.error.message !== 'string') failures.push(`${where} answered ${status} without an error object`);
          } catch {
            if (method !== 'HEAD') failures.push(`${where} answered ${status} without JSON: ${answer.body.slice(0, 80)}`);
          }
        }
      };

      const alive = async () => {
        const answer = await fetch(`http://127.0.0.1:${port}/v1/directory`, { headers: { authorization: basicAuth(DEMO_TENANT) }, signal: AbortSignal.timeout(5_000) });
        return answer.status === 200;
      };

      let next = 0;
      for (let batch = 0; next < ITERATIONS; batch++) {
        const end = Math.min(ITERATIONS, next + BATCH);
        await Promise.all(
          Array.from({ length: WORKERS }, async () => {
            while (next < end) await one(next++);
          }),
        );
        expect(await alive(), `the API stopped answering after batch ${batch} (seed ${SEED})`).toBe(true);
      }
      expect(failures, `seed ${SEED}; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`).toEqual([]);
      // The run reached the routes and wrote records, not only refusals at the door.
      expect(outcomes.get('200') ?? 0).toBeGreaterThan(0);
      expect(outcomes.get('201') ?? 0).toBeGreaterThan(0);
      expect(outcomes.get('401') ?? 0).toBeGreaterThan(0);
      expect(log.lines.filter((line) => line.level === 'error')).toEqual([]);
      process.stdout.write(`${JSON.stringify({ routingDirectoryRequests: ITERATIONS, seed: SEED, outcomes: Object.fromEntries(outcomes), failures: failures.length })}\n`);
    },
    Math.max(120_000, ITERATIONS * 20),
  );
});
