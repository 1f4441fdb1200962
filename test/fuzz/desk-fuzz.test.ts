import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, startRoutingProcess, startSignalingProcess } from '@gateway/testing';
import { mintDeskToken, mintJoinToken, type DeskRole } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { deskRequestSchemas } from '../../services/signaling/src/desk/requests.js';
import { deskDirectory, seedRoutingDirectory } from '../support/routingDirectory.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../support/tokens.js';
import { FuzzConnection } from './FuzzConnection.js';
import { emptyStats, type FuzzStats } from './fuzzTypes.js';
import { frameOf, Rng } from './generators.js';

/** The methods of the desk protocol (proto/gateway/routing/v1/desk.proto); checked against the server's schemas. */
const DESK_METHODS = ['hello', 'requestSupport', 'leaveQueue', 'setStatus', 'accept', 'decline', 'transfer', 'completeTransfer', 'end', 'wrapUp', 'queueView', 'supervise', 'ping'] as const;
type DeskMethod = (typeof DESK_METHODS)[number];

/** Valid parameters of a desk method, with the ids the run has seen, so mutations reach the code behind the schemas. */
function validParams(rng: Rng, method: DeskMethod, token: string, contactIds: string[]): Record<string, unknown> {
  const contactId = contactIds.length > 0 && rng.chance(0.8) ? rng.pick(contactIds) : `ct_${rng.int(1_000)}`;
  switch (method) {
    case 'hello':
      return { token, protocolVersion: 1 };
    case 'requestSupport':
      return { queue: rng.pick(['billing', 'support', 'nosuch']), channel: rng.pick(['voice', 'video', 'chat']), context: { order: `A-${rng.int(99)}` }, ...(rng.chance(0.3) ? { contactId } : {}) };
    case 'setStatus':
      return { status: rng.pick(['available', 'away']), reason: rng.pick(['', 'lunch']) };
    case 'accept':
    case 'decline':
    case 'end':
    case 'completeTransfer':
      return { contactId };
    case 'transfer':
      return { contactId, ...(rng.chance(0.5) ? { queue: 'support' } : { agentId: rng.pick(['ann', 'bob', 'sue']) }), warm: rng.chance(0.5) };
    case 'wrapUp':
      return { contactId, disposition: 'resolved', notes: 'fuzz', next: rng.pick(['available', 'away']) };
    case 'supervise':
      return { contactId, mode: rng.pick(['monitor', 'whisper', 'barge']) };
    default:
      return {};
  }
}

/**
 * The desk protocol under a seeded fuzzer: signaling's `/v1/desk` over a real routing replica and
 * nats-server takes valid, mutated and broken frames of every method from end users, agents and
 * supervisors (and tokens of the wrong kind or tenant), and after each connection an end user
 * must still be queued. Set FUZZ_SEED to replay a run, FUZZ_DESK_CONNECTIONS for a longer one.
 */
describe('the desk under a seeded protocol fuzzer', () => {
  let nats: NatsServer;
  let routing: Awaited<ReturnType<typeof startRoutingProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;

  beforeAll(async () => {
    nats = await NatsServer.start();
    await seedRoutingDirectory(nats, deskDirectory);
    const env = { ...twoTenantEnv, ROUTING_TICK_MS: '100', ROUTING_OFFER_TIMEOUT_SECONDS: '2', LOG_LEVEL: 'warn' };
    routing = await startRoutingProcess({ natsUrl: nats.url, env });
    signaling = await startSignalingProcess({ natsUrl: nats.url, env });
  }, 90_000);

  afterAll(async () => {
    await signaling?.stop();
    await routing?.stop();
    await nats?.stop();
  });

  it('covers every method of the desk protocol', () => {
    expect([...DESK_METHODS].sort()).toEqual(Object.keys(deskRequestSchemas).sort());
  });

  it('loses no process, answers every frame it can, never fails inside, and keeps queueing end users', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 20261206);
    const rng = new Rng(seed);
    const stats: FuzzStats = emptyStats(seed);
    const url = `${signaling.url.replace('http', 'ws')}/v1/desk`;
    const contactIds: string[] = [];
    let id = 0;
    const people: Record<DeskRole, string[]> = { end_user: ['fz-1', 'fz-2', 'fz-3'], agent: ['ann', 'bob'], supervisor: ['sue'] };

    /** A token for hello: mostly a good desk token, sometimes one of the wrong kind, tenant or shape. */
    const helloToken = async (role: DeskRole, identity: string): Promise<string> => {
      const roll = rng.next();
      if (roll < 0.85) return (await mintDeskToken(DEMO_TENANT, { identity, role })).token;
      if (roll < 0.9) return (await mintDeskToken(GLOBEX_TENANT, { identity, role })).token;
      if (roll < 0.95) return (await mintJoinToken(DEMO_TENANT, { room: 'r1', identity, role: 'agent' })).token;
      return rng.pick(['', 'x.y.z', 'a'.repeat(9_000)]);
    };

    const connections = Number(process.env.FUZZ_DESK_CONNECTIONS ?? 60);
    for (let round = 0; round < connections; round++) {
      const role = rng.pick(['end_user', 'agent', 'supervisor'] as const);
      const connection = await FuzzConnection.open(url, stats);
      const token = await helloToken(role, rng.pick(people[role]));
      const hello = await connection.request(++id, 'hello', { token, protocolVersion: 1 });
      if (hello.contact?.contactId) contactIds.push(hello.contact.contactId);
      let sent = 1;
      for (let f = 0; f < 40 && !connection.closed; f++) {
        const method = rng.pick(DESK_METHODS);
        const frame = frameOf(rng, ++id, method, validParams(rng, method, token, contactIds), 64 * 1024);
        connection.send(frame.data);
        stats.frames++;
        sent++;
      }
      await connection.drain(sent, 0, 3_000);
      connection.end(rng, () => ++id);
      stats.batches++;

      // Still serving: an end user asks and is queued (or told why not), then leaves.
      const probe = await FuzzConnection.open(url, stats);
      await probe.request(++id, 'hello', { token: (await mintDeskToken(DEMO_TENANT, { identity: `probe-${round}`, role: 'end_user' })).token, protocolVersion: 1 });
      const asked = await probe.request(++id, 'requestSupport', { queue: 'support', channel: 'chat' }, 15_000);
      if (asked.contact?.contactId) contactIds.push(asked.contact.contactId);
      else if (!asked.error || ['INTERNAL', 'NO_ANSWER', 'CLOSED'].includes(asked.error.code)) stats.livenessFailures.push(`round ${round}: ${JSON.stringify(asked).slice(0, 200)}`);
      await probe.request(++id, 'leaveQueue', {});
      probe.ws.close();
      if (contactIds.length > 50) contactIds.splice(0, contactIds.length - 50);
    }

    const context = JSON.stringify({ seed, liveness: stats.livenessFailures, responses: stats.responses });
    expect(stats.livenessFailures, context).toEqual([]);
    expect(signaling.running, signaling.logs.slice(-2_000)).toBe(true);
    expect(routing.running, routing.logs.slice(-2_000)).toBe(true);
    // The run reached the code behind the checks, not only the parser.
    expect(stats.responses.OK ?? 0, context).toBeGreaterThan(100);
    expect(stats.responses.MALFORMED_MESSAGE ?? 0, context).toBeGreaterThan(100);
    expect(stats.responses.PERMISSION_DENIED ?? 0, context).toBeGreaterThan(5);
    expect(stats.responses.UNAUTHENTICATED ?? 0, context).toBeGreaterThan(0);
    expect(stats.responses.INTERNAL ?? 0, context).toBe(0);
  }, 300_000);
});
