import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { DEMO_TENANT, TenantAuth, buckets, closeHttp, hardenHttpServer, listenHttp, openBucket } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { DirectoryStore, seedDirectory } from '../../services/routing/src/directory/DirectoryStore.js';
import { toEngineAgent, toEngineProfile, toEngineQueue } from '../../services/routing/src/directory/model.js';
import { createDirectoryHandler } from '../../services/routing/src/http/directory.js';
import { basicAuth } from '../support/crmSync.js';
import { OpenApiContract, specFiles } from '../support/openapi.js';
import { recordingLogger } from '../support/recordingLogger.js';
import { GLOBEX_TENANT } from '../support/tokens.js';

const demoDirectory = JSON.parse(readFileSync(new URL('../../services/routing/demo-directory.json', import.meta.url), 'utf8')) as unknown;
type As = typeof DEMO_TENANT | typeof GLOBEX_TENANT | 'nobody' | string;

/**
 * The directory admin API (services/routing/src/http/directory.ts) on a real nats-server, as the
 * routing identity, every answer checked against docs/openapi/routing-admin.yaml: the demo
 * directory seeded and read back, records created, replaced and deleted, references refused and
 * deletions of what is in use refused, one tenant never seeing another's, bad credentials and
 * bodies refused, and a record in KV that does not read left out and reported.
 */
describe('the routing directory admin API', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  let store: DirectoryStore;
  let server: http.Server;
  let base: string;
  const log = recordingLogger();
  const contract = OpenApiContract.load(specFiles.routingAdmin);

  const api = (target: string, options: { method?: string; as?: As; json?: unknown; headers?: Record<string, string>; body?: string } = {}) => {
    const as = options.as ?? DEMO_TENANT;
    const authorization = as === 'nobody' ? undefined : typeof as === 'string' ? as : basicAuth(as);
    const headers: Record<string, string> = { ...options.headers, ...(authorization ? { authorization } : {}) };
    return contract.fetch(base, target, { method: options.method ?? 'GET', headers, json: options.json, body: options.body });
  };
  const messageOf = (body: unknown) => (body as { error: { message: string } }).error.message;
  const codeOf = (body: unknown) => (body as { error: { code: string } }).error.code;

  beforeAll(async () => {
    nats = await NatsServer.start();
    // As the routing service connects: its own identity, its own permissions.
    nc = await nats.connect('routing');
    kv = await openBucket(nc, buckets.routingDirectory);
    store = new DirectoryStore(kv, log);
    server = http.createServer(createDirectoryHandler(TenantAuth.configured([DEMO_TENANT, GLOBEX_TENANT]), store, log));
    hardenHttpServer(server);
    base = `http://127.0.0.1:${await listenHttp(server, 0, '127.0.0.1')}`;
  }, 60_000);

  afterAll(async () => {
    if (server) await closeHttp(server);
    await nc?.close();
    await nats?.stop();
  });

  it('seeds the demo directory and answers it whole, ready for the engine', async () => {
    expect(await seedDirectory(store, 'demo', demoDirectory)).toEqual({ people: 5, teams: 1, queues: 2, profiles: 2 });
    const { status, body } = await api('/v1/directory');
    expect(status).toBe(200);
    const directory = body as Awaited<ReturnType<DirectoryStore['snapshot']>>;
    expect(directory.queues.map((q) => q.queueId)).toEqual(['billing', 'support']);
    expect(directory.people.map((p) => p.personId)).toEqual(['ada', 'ana', 'ben', 'cleo', 'sam']);
    expect(directory.revision).toBeGreaterThan(0);
    const agents = directory.people.map(toEngineAgent).filter((a) => a !== undefined);
    expect(agents.filter((a) => a.skills.billing).map((a) => a.agentId)).toEqual(['ana', 'ben']);
    expect(agents.filter((a) => a.skills.support).map((a) => a.agentId)).toEqual(['ana', 'ben', 'cleo']);
    expect(toEngineQueue(directory.queues[0]!)).toMatchObject({ queueId: 'billing', requiredSkills: { billing: 1 }, overflow: { queueId: 'support', afterSeconds: 120 } });
    expect(toEngineProfile(directory.profiles[0]!).queues.map((q) => q.queueId)).toEqual(['billing', 'support']);
    // A seed that does not hold together writes nothing.
    const before = await store.revision('demo');
    await expect(seedDirectory(store, 'demo', { people: [{ personId: 'zed', name: 'Zed', roles: ['agent'], profileId: 'nowhere' }] })).rejects.toThrow(
      /person "zed": profileId: there is no profile "nowhere"/,
    );
    await expect(
      seedDirectory(store, 'demo', {
        queues: [
          { queueId: 'q', name: 'Q' },
          { queueId: 'q', name: 'Q' },
        ],
      }),
    ).rejects.toThrow(/given twice/);
    expect(await store.revision('demo')).toBe(before);
    await expect(store.get('demo', 'people', 'zed')).rejects.toThrow(/no person/);
  });

  it('creates, replaces, lists, reads and deletes records', async () => {
    const created = await api('/v1/directory/queues/sales', {
      method: 'PUT',
      json: { name: 'Sales', requiredSkills: { sales: 2 }, businessHours: { timeZone: 'Europe/Berlin', weekly: [{ day: 1, open: '09:00', close: '17:00' }] } },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ queueId: 'sales', priority: 0, serviceLevelSeconds: 20, offerTimeoutSeconds: 15 });
    const replaced = await api('/v1/directory/queues/sales', { method: 'PUT', json: { queueId: 'sales', name: 'Sales', priority: 3, overflow: { queueId: 'support', afterSeconds: 60 } } });
    expect(replaced.status).toBe(200);
    expect(replaced.body).not.toHaveProperty('businessHours');
    expect((await api('/v1/directory/queues/sales')).body).toMatchObject({ priority: 3, overflow: { queueId: 'support', afterSeconds: 60 } });
    expect(((await api('/v1/directory/queues')).body as { queues: Array<{ queueId: string }> }).queues.map((q) => q.queueId)).toEqual(['billing', 'sales', 'support']);
    expect((await api('/v1/directory/teams')).body).toMatchObject({ teams: [{ teamId: 'front-line', supervisorIds: ['sam'] }] });
    expect((await api('/v1/directory/queues/sales', { method: 'DELETE' })).status).toBe(204);
    expect((await api('/v1/directory/queues/sales')).status).toBe(404);
    expect((await api('/v1/directory/queues/sales', { method: 'DELETE' })).status).toBe(404);
  });

  it('refuses references that lead nowhere, and deleting what is in use', async () => {
    const refused = async (target: string, method: string, json: unknown, status: number, message: RegExp) => {
      const answer = await api(target, { method, json });
      expect(answer.status, `${method} ${target}`).toBe(status);
      expect(messageOf(answer.body)).toMatch(message);
    };
    await refused(
      '/v1/directory/profiles/p1',
      'PUT',
      { name: 'P', queues: [{ queueId: 'nowhere', priority: 1 }], capacity: { call: 1, chat: 0 } },
      400,
      /queues\.0\.queueId: there is no queue "nowhere"/,
    );
    await refused('/v1/directory/queues/loop', 'PUT', { name: 'L', overflow: { queueId: 'loop', afterSeconds: 5 } }, 400, /cannot overflow to itself/);
    await refused('/v1/directory/queues/q1', 'PUT', { name: 'Q', overflow: { queueId: 'nowhere', afterSeconds: 5 } }, 400, /there is no queue "nowhere"/);
    // support → billing would close the circle billing → support.
    const support = (await api('/v1/directory/queues/support')).body as Record<string, unknown>;
    await refused('/v1/directory/queues/support', 'PUT', { ...support, overflow: { queueId: 'billing', afterSeconds: 30 } }, 400, /would lead back to this queue/);
    await refused('/v1/directory/people/zed', 'PUT', { name: 'Zed', roles: ['agent'], profileId: 'nowhere' }, 400, /profileId: there is no profile "nowhere"/);
    await refused('/v1/directory/people/zed', 'PUT', { name: 'Zed', roles: ['agent'] }, 400, /profileId: an agent needs a profileId/);
    await refused('/v1/directory/people/zed', 'PUT', { name: 'Zed', roles: ['admin'], teamId: 'nowhere' }, 400, /teamId: there is no team "nowhere"/);
    await refused('/v1/directory/teams/t2', 'PUT', { name: 'T', supervisorIds: ['ana'] }, 400, /person "ana" does not have the supervisor role/);
    await refused('/v1/directory/teams/t2', 'PUT', { name: 'T', supervisorIds: ['nobody'] }, 400, /supervisorIds\.0: there is no person "nobody"/);
    await refused('/v1/directory/people/sam', 'PUT', { name: 'Sam Supervisor', roles: ['admin'] }, 409, /supervises teams "front-line"/);
    await refused('/v1/directory/queues/support', 'DELETE', undefined, 409, /queue "support" is in use by profiles "billing-first", "support-only" and queues "billing"/);
    await refused('/v1/directory/profiles/support-only', 'DELETE', undefined, 409, /in use by people "cleo"/);
    await refused('/v1/directory/teams/front-line', 'DELETE', undefined, 409, /in use by people "ana", "ben", "cleo", "sam"/);
    await refused('/v1/directory/people/sam', 'DELETE', undefined, 409, /in use by teams "front-line"/);
    expect(codeOf((await api('/v1/directory/people/sam', { method: 'DELETE' })).body)).toBe('INVALID_STATE');
    // Once nothing refers to it, it goes.
    expect(
      (await api('/v1/directory/people/cleo', { method: 'PUT', json: { name: 'Cleo Agent', roles: ['agent'], skills: { support: 4 }, teamId: 'front-line', profileId: 'billing-first' } })).status,
    ).toBe(200);
    expect((await api('/v1/directory/profiles/support-only', { method: 'DELETE' })).status).toBe(204);
  });

  it('keeps each tenant to its own directory', async () => {
    expect((await api('/v1/directory', { as: GLOBEX_TENANT })).body).toEqual({ people: [], teams: [], queues: [], profiles: [], revision: 0 });
    expect((await api('/v1/directory/queues/billing', { as: GLOBEX_TENANT })).status).toBe(404);
    expect((await api('/v1/directory/queues/billing', { as: GLOBEX_TENANT, method: 'DELETE' })).status).toBe(404);
    // The same id in another tenant is another record; references resolve within the tenant.
    expect(
      (await api('/v1/directory/profiles/p', { as: GLOBEX_TENANT, method: 'PUT', json: { name: 'P', queues: [{ queueId: 'billing', priority: 1 }], capacity: { call: 1, chat: 0 } } })).status,
    ).toBe(400);
    expect((await api('/v1/directory/queues/billing', { as: GLOBEX_TENANT, method: 'PUT', json: { name: 'Globex billing' } })).status).toBe(201);
    expect(((await api('/v1/directory/queues/billing')).body as { name: string }).name).toBe('Billing');
    expect(((await api('/v1/directory/queues', { as: GLOBEX_TENANT })).body as { queues: unknown[] }).queues).toHaveLength(1);
  });

  it('refuses missing and forged credentials', async () => {
    const none = await api('/v1/directory', { as: 'nobody' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic/);
    for (const forged of [
      basicAuth({ apiKey: DEMO_TENANT.apiKey, apiSecret: `${DEMO_TENANT.apiSecret}x` }),
      basicAuth({ apiKey: DEMO_TENANT.apiKey, apiSecret: GLOBEX_TENANT.apiSecret }),
      `Bearer ${DEMO_TENANT.apiSecret}`,
      'Basic !!!',
    ]) {
      expect((await api('/v1/directory/queues/billing', { as: forged, method: 'DELETE' })).status).toBe(401);
    }
    expect((await store.list('demo', 'queues')).map((q) => q.queueId)).toContain('billing');
  });

  it('lets the admin page’s origin call it from a browser (CORS), and no other; a preflight never stands in for credentials', async () => {
    const page = 'http://localhost:8080';
    const withPage = http.createServer(createDirectoryHandler(TenantAuth.configured([DEMO_TENANT, GLOBEX_TENANT]), store, log, [page]));
    const port = await listenHttp(withPage, 0, '127.0.0.1');
    /** A request with the headers a browser sets itself (node's client lets the test set Origin). */
    const send = (method: string, path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const preflight = await send('OPTIONS', '/v1/directory/queues/billing', { origin: page, 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization' });
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe(page);
      expect(preflight.headers['access-control-allow-methods']).toBe('GET, PUT, DELETE');
      expect(preflight.body).toBe('');
      // The real request after it is authenticated as any other: without credentials, refused (readably).
      const unauthenticated = await send('DELETE', '/v1/directory/queues/billing', { origin: page });
      expect(unauthenticated.status).toBe(401);
      expect(unauthenticated.headers['access-control-allow-origin']).toBe(page);
      expect(codeOf(JSON.parse(unauthenticated.body))).toBe('UNAUTHENTICATED');
      expect((await store.list('demo', 'queues')).map((q) => q.queueId)).toContain('billing');
      const read = await send('GET', '/v1/directory/queues/billing', { origin: page, authorization: basicAuth(DEMO_TENANT) });
      expect(read.status).toBe(200);
      expect(read.headers['access-control-allow-origin']).toBe(page);
      // Another origin: no CORS header on anything, so a browser keeps the answers from its page.
      for (const [method, headers] of [
        ['OPTIONS', { 'access-control-request-method': 'GET' }],
        ['GET', { authorization: basicAuth(DEMO_TENANT) }],
      ] as const) {
        const other = await send(method, '/v1/directory', { origin: 'http://localhost:8081', ...headers });
        expect(other.headers['access-control-allow-origin']).toBeUndefined();
        expect(other.headers['access-control-allow-methods']).toBeUndefined();
      }
    } finally {
      await closeHttp(withPage);
    }
  });

  it('refuses malformed, mistyped, oversized and unasked-for input', async () => {
    const answer = async (target: string, options: Parameters<typeof api>[1], status: number, code: string) => {
      const got = await api(target, options);
      expect([got.status, codeOf(got.body)], `${options?.method ?? 'GET'} ${target}`).toEqual([status, code]);
    };
    await answer('/v1/directory/queues/q1', { method: 'PUT', body: '{"name":', headers: { 'content-type': 'application/json' } }, 400, 'MALFORMED_MESSAGE');
    await answer('/v1/directory/queues/q1', { method: 'PUT', body: '{"name":"Q"}', headers: { 'content-type': 'text/plain' } }, 415, 'UNSUPPORTED_CONTENT');
    await answer('/v1/directory/queues/q1', { method: 'PUT', json: { name: 7 } }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues/q1', { method: 'PUT', json: ['Q'] }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues/q1', { method: 'PUT', json: null }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues/q1', { method: 'PUT', json: { name: 'Q', queueId: 'q2' } }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues/q1', { method: 'PUT', json: { name: 'Q', extra: true } }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues/q1', { method: 'PUT', body: '{"name":"Q","__proto__":{"priority":1}}', headers: { 'content-type': 'application/json' } }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/people/p1', { method: 'PUT', json: { name: 'x'.repeat(40_000), roles: ['admin'] } }, 413, 'FRAME_TOO_LARGE');
    await answer('/v1/directory/queues/q1', { method: 'PUT', json: { name: 'Q', businessHours: { timeZone: 'Nowhere/Town', weekly: [] } } }, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues?limit=5', {}, 400, 'BAD_REQUEST');
    await answer('/v1/directory/queues/billing', { body: '{}', headers: { 'content-type': 'application/json' }, method: 'DELETE' }, 400, 'BAD_REQUEST');
    await answer('/v1/directory', { method: 'POST' }, 405, 'METHOD_NOT_ALLOWED');
    await answer('/v1/directory/queues/billing', { method: 'PATCH', json: {} }, 405, 'METHOD_NOT_ALLOWED');
    const wrongMethod = await api('/v1/directory/queues', { method: 'PUT', json: {} });
    expect(wrongMethod.headers.get('allow')).toBe('GET');
    expect((await store.list('demo', 'queues')).map((q) => q.queueId)).not.toContain('q1');
  });

  it('limits the records of a tenant', async () => {
    const small = new DirectoryStore(kv, log, { people: 5, teams: 1, queues: 2, profiles: 2 });
    await expect(small.put('demo', 'queues', 'q3', { name: 'Q3' })).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await expect(small.put('demo', 'teams', 'front-line', { name: 'Front line', supervisorIds: ['sam'] })).resolves.toMatchObject({ created: false });
  });

  it('leaves out a record in KV that does not read, and reports it without the person', async () => {
    const raw = kv;
    await raw.put('demo.queues.broken', 'not json');
    await raw.put('demo.queues.copied', JSON.stringify({ queueId: 'billing', name: 'Billing' }));
    await raw.put('demo.people.mallory', JSON.stringify({ personId: 'mallory', name: 'Mallory Secret', roles: ['root'] }));
    const { body } = await api('/v1/directory');
    const directory = body as { queues: Array<{ queueId: string }>; people: Array<{ personId: string }> };
    expect(directory.queues.map((q) => q.queueId)).toEqual(['billing', 'support']);
    expect(directory.people.map((p) => p.personId)).not.toContain('mallory');
    expect((await api('/v1/directory/queues/broken')).status).toBe(404);
    const reported = log.lines.filter((line) => line.message.includes('unreadable'));
    expect(reported.map((line) => line.fields.id ?? line.fields.kind)).toEqual(expect.arrayContaining(['broken', 'copied', 'people']));
    expect(JSON.stringify(log.lines)).not.toMatch(/Mallory|mallory|Ana Agent|Sam Supervisor/);
    // A record that does not read can be replaced or removed.
    expect((await api('/v1/directory/queues/broken', { method: 'PUT', json: { name: 'Fixed' } })).status).toBe(200);
    expect((await api('/v1/directory/queues/copied', { method: 'DELETE' })).status).toBe(204);
    expect((await api('/v1/directory/people/mallory', { method: 'DELETE' })).status).toBe(204);
  });

  it('keeps references whole when two replicas write one tenant at once, 15 times over', async () => {
    // Another replica: its writes are not queued behind this one's.
    const other = new DirectoryStore(kv, log);
    for (let round = 0; round < 15; round++) {
      const tenant = `race${round}`;
      await store.put(tenant, 'queues', 'q', { name: 'Q' });
      const [put, removed] = await Promise.allSettled([
        store.put(tenant, 'profiles', 'p', { name: 'P', queues: [{ queueId: 'q', priority: 1 }], capacity: { call: 1, chat: 0 } }),
        other.remove(tenant, 'queues', 'q'),
      ]);
      const after = await store.snapshot(tenant);
      // One stands; the other is refused and leaves nothing behind: never a profile serving a queue that is gone.
      expect(
        [put!.status, removed!.status].filter((status) => status === 'fulfilled'),
        `round ${round}`,
      ).toHaveLength(1);
      expect(after.profiles.length === 1, `round ${round}`).toBe(put!.status === 'fulfilled');
      expect(after.queues.length === 0, `round ${round}`).toBe(removed!.status === 'fulfilled');
    }
  });

  it('seeds a tenant from the command line (as `make up` does) once, then leaves its directory as it is', async () => {
    const run = () =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', 'services/routing/src/cli/seedDirectory.ts', 'acme', 'services/routing/demo-directory.json'], {
        cwd: fileURLToPath(new URL('../../', import.meta.url)),
        env: { ...process.env, ...nats.envFor('routing'), LOG_LEVEL: 'info' },
      });
    expect((await run()).stdout).toMatch(/directory seeded/);
    expect((await store.snapshot('acme')).people).toHaveLength(5);
    await store.remove('acme', 'people', 'ada');
    expect((await run()).stdout).toMatch(/left as it is/);
    expect((await store.snapshot('acme')).people).toHaveLength(4);
  }, 60_000);

  it('tells a watcher of each change by the revision', async () => {
    const { revision } = await store.snapshot('demo');
    const seen: number[] = [];
    const stop = store.watch('demo', revision, (next) => seen.push(next), 50);
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(seen).toEqual([]);
      expect((await api('/v1/directory/teams/night', { method: 'PUT', json: { name: 'Night' } })).status).toBe(201);
      await expect.poll(() => seen.length, { timeout: 5_000 }).toBe(1);
      expect(seen[0]).toBeGreaterThan(revision);
      expect((await store.snapshot('demo')).revision).toBe(seen[0]);
      // Another tenant's change is not this one's.
      await api('/v1/directory/teams/night', { as: GLOBEX_TENANT, method: 'PUT', json: { name: 'Night' } });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(seen).toHaveLength(1);
    } finally {
      stop();
    }
  });
});
