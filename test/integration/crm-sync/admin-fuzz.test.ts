import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TENANT } from '@gateway/common';
import { freePort } from '@gateway/testing';
import { basicAuth, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';
import { seededRandom } from '../../support/seededRandom.js';
import { GLOBEX_TENANT } from '../../support/tokens.js';

/** Requests in the short pass (`make test`); FUZZ_ITERATIONS=100000 for a long one. FUZZ_SEED replays a run. */
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 1_500);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const BATCH = 50;
const WORKERS = 6;

type Outcome = number | 'closed' | 'timeout';

/** One request written as raw bytes (request lines and headers a client library would refuse), its status read back. */
function rawRequest(port: number, head: string, body: Buffer, timeoutMs = 5_000, dribble = false): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const done = (outcome: Outcome) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.on('error', () => done('closed'));
    socket.on('close', () => done(/^HTTP\/1\.1 (\d{3})/.exec(answer) ? Number(answer.slice(9, 12)) : 'closed'));
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (status && answer.includes('\r\n\r\n')) done(Number(status[1]));
    });
    socket.on('connect', () => {
      const bytes = Buffer.concat([Buffer.from(head, 'latin1'), body]);
      if (!dribble) {
        socket.write(bytes);
        return;
      }
      // A slow sender: a byte every 100 ms.
      let at = 0;
      const drip = setInterval(() => {
        if (socket.destroyed || at >= bytes.length) return clearInterval(drip);
        socket.write(bytes.subarray(at, ++at));
      }, 100);
    });
  });
}

/**
 * A seeded fuzzer against every route of crm-sync's admin API (connectors, data subjects,
 * webhooks, API keys): paths, methods, headers, query strings and bodies, valid and mutated
 * (huge, deep, binary, prototype keys, objects where strings go, broken encodings), forged
 * credentials, and slow senders alongside. After every
 * batch the API must still answer a real request and no forged credential may have been
 * accepted; no request may end in an internal error.
 */
describe('crm-sync admin API under a seeded fuzzer', () => {
  let stack: CrmSyncStack;
  let port = 0;

  beforeAll(async () => {
    stack = await startCrmSyncStack({ LOG_LEVEL: 'warn', CRM_SYNC_CONNECTOR_TEST_SECONDS: '0.2' });
    port = stack.crm.port;
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it(
    `answers ${ITERATIONS} hostile requests without failing, accepting a forged credential or stopping (seed ${SEED})`,
    async () => {
      const rand = seededRandom(SEED);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
      const closedPort = await freePort();

      const names = ['warehouse', 'crm', 'a', 'x'.repeat(64), 'x'.repeat(65), 'a.b', '*', '>', '%2E%2E', '..', 'é', '%00', 'a%20b', '__proto__', 'constructor', ''];
      const queryValues = ['ext-1', '', 'x'.repeat(300), '%ZZ', '%00', '%E2%80%A8', '%F0%9F%98%80', '%ED%A0%80', 'a&externalId=b', '[object Object]'];
      const query = () => {
        const count = Math.floor(rand() * 4);
        const parts: string[] = [];
        for (let i = 0; i < count; i++) parts.push(`${pick(['externalId', 'crmContactId', '__proto__', 'toString', 'x', '', 'externalId[]'])}=${pick(queryValues)}`);
        if (rand() < 0.05) parts.push(`q=${'z'.repeat(8_000)}`);
        return parts.length ? `?${parts.join('&')}` : '';
      };
      /** Ids of endpoints made during the run, or names that are none. */
      const webhookIds: string[] = [];
      const webhookId = () => (webhookIds.length > 0 && rand() < 0.6 ? pick(webhookIds) : pick(names));
      /** Ids of API keys made during the run, or names that are none. */
      const apiKeyIds: string[] = [];
      const apiKeyId = () => (apiKeyIds.length > 0 && rand() < 0.6 ? pick(apiKeyIds) : pick([...names, 'ak_0000000000000000', 'ak_', 'AK_0000000000000000']));
      /** An API key request's body: valid, or mutated field by field. */
      const apiKeyBody = (): unknown =>
        pick([
          () => ({ label: pick(['backend', '', 'x'.repeat(200), '\u0000', '\ud800', 7, null, ['a'], { toString: 1 }]) }),
          () => ({ overlapSeconds: pick([0, 60, -1, 1e12, 1.5, '60', null]) }),
          () => ({ label: 'backend', secret: 'sk_mine', keyId: 'ak_0000000000000000', secretHash: 'x' }),
          () => JSON.parse('{"__proto__": {"label": "backend"}}') as unknown,
          () => ({}),
          () => [{ label: 'backend' }],
        ])();
      /** A webhook endpoint's body: valid, or mutated field by field. */
      const webhook = (): unknown =>
        pick([
          () => ({
            url: pick(['http://127.0.0.1:1/hook', 'https://example.com/x', 'ftp://x', 'http://[', 'javascript:alert(1)', 'https://u:p@example.com/', `https://${'a'.repeat(3_000)}.com`, '', 7]),
          }),
          () => ({ url: 'http://127.0.0.1:1/hook', events: pick([['*'], ['room.started', 'room.ended'], [], ['nope'], 'room.started', [null], Array(50).fill('*')]) }),
          () => ({ url: 'http://127.0.0.1:1/hook', description: pick(['d', 'x'.repeat(300), '\u0000', { toString: 1 }]), enabled: pick([true, false, 'yes', 0]) }),
          () => ({ enabled: pick([true, false]) }),
          () => ({ overlapSeconds: pick([0, 60, -1, 1e12, 1.5, '60', null]) }),
          () => ({ url: 'http://127.0.0.1:1/hook', secret: 'whsec_mine', webhookId: 'WH_x' }),
          () => JSON.parse('{"__proto__": {"url": "http://127.0.0.1:1/hook"}}') as unknown,
          () => ({}),
          () => [{ url: 'http://127.0.0.1:1/hook' }],
        ])();
      /** A route with the method it takes, or (less often) something that is no route at all. */
      const routeOf = (): { method: string; path: string } => {
        const name = rand() < 0.6 ? pick(['warehouse', 'crm', 'a']) : pick(names);
        const subject = () => (rand() < 0.7 ? `?${pick(['externalId', 'crmContactId'])}=${pick(['ext-1', 'ext-2', '003000000000001AAA'])}` : query());
        const route = pick([
          () => ({ method: 'GET', path: '/v1/connectors' }),
          () => ({ method: 'PUT', path: `/v1/connectors/${name}` }),
          () => ({ method: 'GET', path: `/v1/connectors/${name}` }),
          () => ({ method: 'DELETE', path: `/v1/connectors/${name}` }),
          () => ({ method: 'POST', path: `/v1/connectors/${name}/test` }),
          () => ({ method: 'GET', path: `/v1/data-subjects/export${subject()}` }),
          () => ({ method: 'DELETE', path: `/v1/data-subjects${subject()}` }),
          () => ({ method: 'PATCH', path: `/v1/data-subjects${subject()}` }),
          () => ({ method: pick(['GET', 'POST']), path: '/v1/webhooks' }),
          () => ({ method: pick(['GET', 'PATCH', 'DELETE']), path: `/v1/webhooks/${webhookId()}` }),
          () => ({ method: 'POST', path: `/v1/webhooks/${webhookId()}/${pick(['rotate-secret', 'test', 'rotate-secret/x', 'TEST'])}` }),
          () => ({ method: pick(['GET', 'POST']), path: '/v1/api-keys' }),
          () => ({ method: pick(['GET', 'DELETE']), path: `/v1/api-keys/${apiKeyId()}` }),
          () => ({ method: 'POST', path: `/v1/api-keys/${apiKeyId()}/${pick(['rotate', 'rotate/x', 'ROTATE'])}` }),
          () => ({
            method: 'GET',
            path: pick([
              '/',
              '//a:99999/',
              'http://evil.example/v1/connectors',
              '*',
              '/v1/connectors/../../etc/passwd',
              `/v1//connectors/${name}`,
              `/${'a/'.repeat(2_000)}`,
              '/v1/connectors#frag',
              `/v1/connectors/${name}/test/more`,
            ]),
          }),
        ])();
        const method = rand() < 0.75 ? route.method : pick(['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'FOO', 'GET /x', '']);
        const path = route.path.includes('?') || rand() < 0.85 ? route.path : `${route.path}${query()}`;
        return { method, path };
      };
      const connector = (): unknown =>
        pick([
          () => ({ type: 'postgres', config: { host: '127.0.0.1', port: closedPort, database: 'x', user: 'x', ssl: 'disable' }, secrets: { password: 'p' } }),
          () => ({
            type: 's3',
            config: { bucket: 'bucket', region: 'eu-west-1', endpoint: pick(['http://127.0.0.1:1', 'not a url', 'http://[', 'http://a:99999/', 'javascript:x']) },
            secrets: { accessKeyId: 'a', secretAccessKey: 's' },
          }),
          () => ({
            type: 'salesforce',
            config: {
              loginUrl: pick(['http://127.0.0.1:1', 'http://[', '']),
              authFlow: pick(['client_credentials', 'jwt_bearer', 'x']),
              clientId: 'c',
              requestTimeoutMs: pick([100, -1, 1e12, 'NaN']),
            },
            secrets: { clientSecret: pick(['s', { toString: 1 }, ['s']]) },
          }),
          () => ({
            type: 'zendesk',
            config: { subdomainUrl: pick(['http://127.0.0.1:1', 'http://localhost:1/path', 'ftp://x']), email: pick(['a@b.co', 'no', { toString: 1 }]) },
            secrets: { apiToken: 't' },
          }),
          () => ({ type: pick(['ftp', '__proto__', 'constructor', 'toString']), config: {}, secrets: {} }),
          () => ({ type: 'postgres', config: { toString: 1, valueOf: 1, host: { toString: 1 } }, secrets: { password: 1 } }),
          () => ({ __proto__: { type: 'postgres' }, constructor: { prototype: {} } }),
          () => ({ type: 'postgres', config: JSON.parse('{"__proto__": {"admin": true}}') as unknown, secrets: {} }),
          () => [1, 2, 3],
          () => null,
          () => 'string',
        ])();
      const body = (): { bytes: Buffer; type: string } =>
        pick([
          () => ({ bytes: Buffer.from(JSON.stringify(connector())), type: 'application/json' }),
          () => ({ bytes: Buffer.from(`${'['.repeat(10_000)}${']'.repeat(10_000)}`), type: 'application/json' }),
          () => ({ bytes: Buffer.from(`{"a":${'{"a":'.repeat(3_000)}1${'}'.repeat(3_001)}`), type: 'application/json' }),
          () => ({
            bytes: Buffer.from(JSON.stringify({ type: 'postgres', config: Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`k${i}`, i])), secrets: {} })),
            type: 'application/json',
          }),
          () => ({ bytes: Buffer.from(`{"type":"postgres","config":{"host":"${'h'.repeat(200_000)}"}}`), type: 'application/json' }),
          () => ({ bytes: Buffer.from('{"type":"postgres","config":{"host":"\\ud800"},"secrets":{}}'), type: 'application/json' }),
          () => ({ bytes: Buffer.from('{"type": "postgres", "config": {'), type: 'application/json' }),
          () => ({ bytes: Buffer.from(Array.from({ length: 300 }, () => Math.floor(rand() * 256))), type: pick(['application/octet-stream', 'application/json', 'text/plain', '']) }),
          () => ({ bytes: Buffer.from('NaN'), type: 'application/json; charset=utf-8' }),
          () => ({ bytes: Buffer.alloc(0), type: 'application/json' }),
        ])();
      /** A rectification's body: valid, or mutated field by field. */
      const corrections = (): unknown =>
        pick([
          () => ({ phoneNumber: pick(['+14155550132', '', '4155550132', '+1', `+${'9'.repeat(40)}`, 14155550132, null]) }),
          () => ({ crmContactId: pick(['003000000000002BBB', '', 'x'.repeat(65), '\u0000', { $ne: 1 }, ['a']]) }),
          () => ({ externalId: pick(['ext-2', '', 'x'.repeat(257), '\ud800', 7]) }),
          () => ({ phoneNumber: '+14155550132', crmContactId: '003000000000002BBB', externalId: 'ext-9', extra: 1 }),
          () => ({}),
          () => JSON.parse('{"__proto__": {"phoneNumber": "+14155550132"}}') as unknown,
          () => [{ phoneNumber: '+14155550132' }],
        ])();
      const validBody = () => ({
        bytes: Buffer.from(JSON.stringify({ type: 'postgres', config: { host: '127.0.0.1', port: closedPort, database: 'x', user: 'x', ssl: 'disable' }, secrets: { password: 'p' } })),
        type: 'application/json',
      });
      const forged = [
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:wrong-secret`).toString('base64')}`,
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${GLOBEX_TENANT.apiSecret}`).toString('base64')}`,
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${DEMO_TENANT.apiSecret.slice(0, -1)}`).toString('base64')}`,
        `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${DEMO_TENANT.apiSecret}x`).toString('base64')}`,
        `Basic ${Buffer.from(`:${DEMO_TENANT.apiSecret}`).toString('base64')}`,
        `Basic ${Buffer.from(`ak_0000000000000000:sk_${'A'.repeat(43)}`).toString('base64')}`,
        `Basic ${Buffer.from(DEMO_TENANT.apiKey).toString('base64')}`,
        'Basic !!!not-base64!!!',
        `Bearer ${DEMO_TENANT.apiSecret}`,
        `basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${DEMO_TENANT.apiSecret}`).toString('base64').toLowerCase()}`,
        `Basic ${'A'.repeat(6_000)}`,
      ];
      const genuine = [basicAuth(DEMO_TENANT), basicAuth(GLOBEX_TENANT)];

      const outcomes = new Map<string, number>();
      const failures: string[] = [];
      let forgedAccepted = 0;

      const one = async (i: number) => {
        const credential = rand();
        const authorization = credential < 0.55 ? pick(genuine) : credential < 0.9 ? pick(forged) : undefined;
        const { method, path: target } = routeOf();
        const shape = rand();
        const { bytes, type } =
          target.startsWith('/v1/webhooks') && (method === 'POST' || method === 'PATCH') && shape < 0.8
            ? { bytes: Buffer.from(JSON.stringify(webhook())), type: 'application/json' }
            : target.startsWith('/v1/api-keys') && method === 'POST' && shape < 0.8
              ? { bytes: Buffer.from(JSON.stringify(apiKeyBody())), type: 'application/json' }
              : method === 'PATCH' && shape < 0.6
                ? { bytes: Buffer.from(JSON.stringify(corrections())), type: 'application/json' }
                : method === 'PUT' || method === 'PATCH' || rand() < 0.1
                  ? shape < 0.3
                    ? validBody()
                    : shape < 0.7
                      ? { bytes: Buffer.from(JSON.stringify(connector())), type: 'application/json' }
                      : body()
                  : { bytes: Buffer.alloc(0), type: '' };
        const headers = [`Host: 127.0.0.1:${port}`, 'Connection: close'];
        if (authorization !== undefined) headers.push(`Authorization: ${authorization}`);
        if (type) headers.push(`Content-Type: ${type}`);
        const framing = rand();
        if (framing < 0.9) headers.push(`Content-Length: ${bytes.length}`);
        else if (framing < 0.95) headers.push(`Content-Length: ${bytes.length + 10}`, 'X-Short: 1');
        else headers.push('Transfer-Encoding: chunked');
        if (rand() < 0.05) for (let h = 0; h < 150; h++) headers.push(`X-H${h}: ${h}`);
        if (rand() < 0.03) headers.push(`X-Big: ${'b'.repeat(20_000)}`);
        if (rand() < 0.03) headers.push('Bad Header: \u0001');
        const payload = framing >= 0.95 ? Buffer.concat([Buffer.from(`${(bytes.length + 3).toString(16)}\r\n`), bytes, Buffer.from('\r\n0\r\n\r\n')]) : bytes;
        const status = await rawRequest(port, `${method} ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, payload, framing < 0.95 && framing >= 0.9 ? 2_000 : 5_000);
        outcomes.set(String(status), (outcomes.get(String(status)) ?? 0) + 1);
        if (authorization === undefined || forged.includes(authorization)) {
          if (typeof status === 'number' && status >= 200 && status < 300) {
            forgedAccepted++;
            failures.push(`case ${i}: ${method} ${target.slice(0, 80)} with a forged credential answered ${status}`);
          }
        }
        if (status === 500) failures.push(`case ${i}: ${method} ${target.slice(0, 80)} (${type}, ${bytes.subarray(0, 60).toString('latin1')}) answered 500`);
      };

      const alive = async () => {
        const health = await fetch(`http://127.0.0.1:${stack.crm.opsPort}/healthz`, { signal: AbortSignal.timeout(5_000) });
        const list = await fetch(`${stack.crm.url}/v1/connectors`, { headers: { authorization: basicAuth(DEMO_TENANT) }, signal: AbortSignal.timeout(5_000) });
        return health.status === 200 && list.status === 200 && stack.crm.running;
      };

      // Slow senders alongside, for the whole run.
      let slow = true;
      const slowSenders = (async () => {
        while (slow) {
          await Promise.all(
            Array.from({ length: 4 }, () =>
              rawRequest(
                port,
                `PUT /v1/connectors/slow HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicAuth(DEMO_TENANT)}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n`,
                Buffer.from('{"type":'),
                3_000,
                true,
              ),
            ),
          );
        }
      })();

      let next = 0;
      try {
        for (let batch = 0; next < ITERATIONS; batch++) {
          const end = Math.min(ITERATIONS, next + BATCH);
          await Promise.all(
            Array.from({ length: WORKERS }, async () => {
              while (next < end) await one(next++);
            }),
          );
          expect(await alive(), `the API stopped answering after batch ${batch} (seed ${SEED})`).toBe(true);
          // The endpoints made so far become targets of the next batches.
          const listed = await fetch(`${stack.crm.url}/v1/webhooks`, { headers: { authorization: basicAuth(DEMO_TENANT) }, signal: AbortSignal.timeout(5_000) });
          webhookIds.splice(0, webhookIds.length, ...((await listed.json()) as { webhooks: Array<{ webhookId: string }> }).webhooks.map((w) => w.webhookId));
          const keys = await fetch(`${stack.crm.url}/v1/api-keys`, { headers: { authorization: basicAuth(DEMO_TENANT) }, signal: AbortSignal.timeout(5_000) });
          apiKeyIds.splice(0, apiKeyIds.length, ...((await keys.json()) as { apiKeys: Array<{ keyId: string }> }).apiKeys.map((k) => k.keyId));
          expect(forgedAccepted, `forged credentials accepted (seed ${SEED}): ${failures.join('; ')}`).toBe(0);
        }
      } finally {
        slow = false;
        await slowSenders;
      }
      expect(failures, `seed ${SEED}; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`).toEqual([]);
      // The run exercised the routes (not only refusals at the door).
      expect(outcomes.get('200') ?? 0).toBeGreaterThan(0);
      expect(outcomes.get('401') ?? 0).toBeGreaterThan(0);
      expect(stack.crm.logs).not.toMatch(/uncaught|unhandled/i);
      // The figures of a long pass (`make fuzz`).
      process.stdout.write(`${JSON.stringify({ crmSyncAdminRequests: ITERATIONS, seed: SEED, outcomes: Object.fromEntries(outcomes), forgedAccepted, failures: failures.length })}\n`);
    },
    Math.max(120_000, ITERATIONS * 10),
  );
});
