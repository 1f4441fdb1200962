import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { basicAuth } from '../support/crmSync.js';
import { OpenApiContract, specFiles } from '../support/openapi.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { seededRandom } from '../support/seededRandom.js';
import { GLOBEX_TENANT, demoToken, globexToken, twoTenantEnv } from '../support/tokens.js';
import { TestClients } from '../support/wsClient.js';

/** Requests in the short pass (`make test`); FUZZ_ITERATIONS=20000 for a long one. FUZZ_SEED replays a run. */
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 600);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const WORKERS = 4;

/**
 * A seeded fuzzer against the room API of two signaling replicas: every route with random
 * methods, path parameters, queries, media types and bodies (random JSON of every shape, strings
 * with controls and lone surrogates, prototype keys, huge and binary bodies), with the tenant's
 * credentials, another tenant's, forged ones and none. Every answer must be one the OpenAPI
 * contract documents and none may be a 500; a forged credential is never accepted; another
 * tenant never touches the room; and exactly the data messages that were accepted reach the
 * participants, who stay in their room throughout.
 */
describe('the room API under a seeded fuzzer', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();
  const contract = OpenApiContract.load(specFiles.signaling);

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }), startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv })]);
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  it(`answers ${ITERATIONS} random requests as documented, without touching what it must not (seed ${SEED})`, async () => {
    const rand = seededRandom(SEED);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
    const room = `fuzz-${SEED}`;
    const globexRoom = `gfuzz-${SEED}`;
    const agent = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'agent-f', role: 'agent' }));
    const user = await clients.join(sig2.wsUrl, await demoToken({ room, identity: 'ext-f', role: 'end_user', phoneNumber: '+14155550199' }));
    const stranger = await clients.join(sig1.wsUrl, await globexToken({ room: globexRoom, identity: 'g-f', role: 'end_user' }));
    const send = (await user.client.request('createTransport', { direction: 'send' })).createTransport;
    const producerId = (await user.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
    const ids = { agent: agent.join.participant.participantId as string, user: user.join.participant.participantId as string, stranger: stranger.join.participant.participantId as string };

    const forged = [
      `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${GLOBEX_TENANT.apiSecret}`).toString('base64')}`,
      `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${DEMO_TENANT.apiSecret}x`).toString('base64')}`,
      `Basic ${Buffer.from(`${GLOBEX_TENANT.apiKey}:${DEMO_TENANT.apiSecret}`).toString('base64')}`,
      `Basic ${Buffer.from(`:${DEMO_TENANT.apiSecret}`).toString('base64')}`,
      'Basic !!!',
      `Bearer ${DEMO_TENANT.apiSecret}`,
    ];
    const strings = ['', 'x', 'a.b', '*', '>', '..', '%2E%2E', '%00', '%ZZ', 'é', '__proto__', 'constructor', 'x'.repeat(65), '%E2%80%AE', '%F0%9F%98%80', 'PA_nobody'];
    const roomOf = () => (rand() < 0.6 ? room : rand() < 0.5 ? globexRoom : pick(strings));
    const participantOf = () => (rand() < 0.5 ? pick([ids.agent, ids.user]) : rand() < 0.3 ? ids.stranger : pick(strings));
    const trackOf = () => (rand() < 0.5 ? producerId : pick(strings));
    const text = () => pick(['hi', '', 'a\u0000b', 'line\nbreak', '\ud800', '\u202eevil', 'x'.repeat(Math.floor(rand() * 20_000)), '😀'.repeat(5_000), '[object Object]', 'null']);
    const json = (depth = 0): unknown => {
      const r = rand();
      if (depth > 3 || r < 0.3) return pick<unknown>([text(), Math.floor(rand() * 1e6), -1, 1e308, 0.5, true, null]);
      if (r < 0.5) return Array.from({ length: Math.floor(rand() * 4) }, () => json(depth + 1));
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 4); i > 0; i--) object[pick(['payload', 'topic', 'to', 'muted', '__proto__', 'constructor', 'x'])] = json(depth + 1);
      return object;
    };
    const body = (): { bytes?: string | Uint8Array<ArrayBuffer>; type?: string; sent?: unknown } => {
      const r = rand();
      if (r < 0.3) {
        const sent = { payload: text(), ...(rand() < 0.5 ? { topic: pick(['crm', 'a.b', '', 'x'.repeat(65)]) } : {}) };
        return { bytes: JSON.stringify(sent), type: 'application/json', sent };
      }
      if (r < 0.6) {
        const sent = json();
        return { bytes: JSON.stringify(sent), type: pick(['application/json', 'application/json; charset=utf-8', 'text/plain']), sent };
      }
      if (r < 0.7) return { bytes: `${'['.repeat(5_000)}${']'.repeat(5_000)}`, type: 'application/json' };
      if (r < 0.8) return { bytes: new Uint8Array(Array.from({ length: 200 }, () => Math.floor(rand() * 256))), type: pick(['application/json', 'application/octet-stream']) };
      if (r < 0.85) return { bytes: 'x'.repeat(40_000), type: 'application/json' };
      return {};
    };
    const routeOf = (): { method: string; target: string } => {
      const r = roomOf();
      const route = pick([
        () => ({ method: 'GET', target: '/v1/rooms' }),
        () => ({ method: 'DELETE', target: `/v1/rooms/${r}` }),
        () => ({ method: 'GET', target: `/v1/rooms/${r}/participants` }),
        () => ({ method: 'DELETE', target: `/v1/rooms/${r}/participants/${participantOf()}` }),
        () => ({ method: 'POST', target: `/v1/rooms/${r}/participants/${participantOf()}/tracks/${trackOf()}/mute` }),
        () => ({ method: 'POST', target: `/v1/rooms/${r}/recording` }),
        () => ({ method: 'DELETE', target: `/v1/rooms/${r}/recording` }),
        () => ({ method: 'POST', target: `/v1/rooms/${r}/data` }),
      ])();
      const method = rand() < 0.8 ? route.method : pick(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS']);
      const target = rand() < 0.9 ? route.target : `${route.target}?${pick(['a=1', 'payload=x', '__proto__=1', '%ZZ', `q=${'z'.repeat(3_000)}`])}`;
      return { method, target };
    };

    const failures: string[] = [];
    const statuses = new Map<string, number>();
    const accepted = { demo: 0, globex: 0 };
    let cases = 0;

    const one = async (i: number) => {
      const c = rand();
      const as = c < 0.5 ? 'demo' : c < 0.7 ? 'globex' : c < 0.9 ? 'forged' : 'none';
      const authorization = as === 'demo' ? basicAuth(DEMO_TENANT) : as === 'globex' ? basicAuth(GLOBEX_TENANT) : as === 'forged' ? pick(forged) : undefined;
      const { method, target } = routeOf();
      // The participants stay: removals of a room or of its participants are only tried with credentials that may not.
      const ours = target.startsWith(`/v1/rooms/${room}`) || target.startsWith(`/v1/rooms/${globexRoom}`);
      if ((as === 'demo' || as === 'globex') && method === 'DELETE' && ours && !target.split('?')[0]!.endsWith('/recording')) return;
      const { bytes, type, sent } = method === 'POST' || rand() < 0.1 ? body() : {};
      const headers: Record<string, string> = {};
      if (authorization) headers.authorization = authorization;
      if (type) headers['content-type'] = type;
      const base = rand() < 0.5 ? sig1.url : sig2.url;
      const sendsBody = bytes !== undefined && method !== 'GET' && method !== 'HEAD';
      // What the server sees (fetch resolves dot segments: /v1/rooms/%2E%2E/x is /v1/x).
      const pathname = new URL(`${base}${target}`).pathname;
      let response: Response;
      try {
        response = await fetch(`${base}${target}`, { method, headers, body: sendsBody ? bytes : undefined, signal: AbortSignal.timeout(15_000) });
      } catch (error) {
        failures.push(`case ${i}: ${method} ${target.slice(0, 80)} failed: ${(error as Error).message}`);
        return;
      }
      cases++;
      const raw = await response.text();
      let answer: unknown;
      try {
        answer = raw === '' ? undefined : JSON.parse(raw);
      } catch {
        answer = raw;
      }
      const status = response.status;
      statuses.set(String(status), (statuses.get(String(status)) ?? 0) + 1);
      const what = `case ${i}: ${method} ${target.slice(0, 80)} as ${as} → ${status}`;
      if (status >= 500 && status !== 503) failures.push(`${what} ${raw.slice(0, 200)}`);
      if ((as === 'forged' || as === 'none') && pathname.startsWith('/v1/rooms') && status !== 401) failures.push(`${what}: not refused as unauthenticated`);
      if (as === 'globex' && target.startsWith(`/v1/rooms/${room}`) && status < 300) failures.push(`${what}: another tenant reached the room`);
      // HEAD and OPTIONS are no operation of the API; every other answer is one the contract documents.
      if (method !== 'HEAD' && method !== 'OPTIONS') {
        const problems = contract.problems({ method, target, requestBody: sendsBody && status < 300 ? sent : undefined, status, headers: response.headers, body: answer });
        if (problems.length > 0 && !problems.every((p) => p.includes('the path is not in the contract'))) failures.push(`${what}: ${problems.join('; ')}`);
      }
      if (status === 202 && target.startsWith(`/v1/rooms/${room}/data`)) accepted.demo++;
      if (status === 202 && target.startsWith(`/v1/rooms/${globexRoom}/data`)) accepted.globex++;
    };

    // Drawn in order (the seed fixes the requests), sent by a few workers at once.
    let next = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (next < ITERATIONS) await one(next++);
      }),
    );

    expect(failures, `seed ${SEED}, statuses ${JSON.stringify(Object.fromEntries(statuses))}`).toEqual([]);
    expect(cases).toBeGreaterThan(ITERATIONS / 2);
    // Exactly the data messages accepted reached their room, and nothing crossed tenants.
    await new Promise((r) => setTimeout(r, 1_000));
    const received = (client: typeof agent.client) => client.notifications.filter((n) => 'dataMessage' in n).length;
    expect([received(agent.client), received(user.client), received(stranger.client)]).toEqual([accepted.demo, accepted.demo, accepted.globex]);
    // Everyone is still in their room, and both replicas still answer.
    for (const { client } of [agent, user, stranger]) expect(client.ws.readyState).toBe(client.ws.OPEN);
    for (const base of [sig1.url, sig2.url]) {
      const listed = await contract.fetch(base, `/v1/rooms/${room}/participants`, { headers: { authorization: basicAuth(DEMO_TENANT) } });
      expect(listed.body.participants.map((p: { participantId: string }) => p.participantId).sort()).toEqual([ids.agent, ids.user].sort());
      expect(JSON.stringify(listed.body)).not.toContain('4155550199');
    }
  }, 180_000);
});
