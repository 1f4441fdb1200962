import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, startRoutingProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { mintDeskToken, verifyJoinToken, type DeskRole } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { streams } from '@gateway/common';
import { ContactRecord } from '@gateway/proto/gateway/routing/v1/routing';
import { deskDirectory, seedRoutingDirectory } from '../support/routingDirectory.js';
import { demoToken, GLOBEX_TENANT, twoTenantEnv } from '../support/tokens.js';
import { TestClient } from '../support/wsClient.js';

/** The desk of the contact center over real processes: two routing replicas, a signaling replica, nats-server. */
describe('the desk: end users, agents and supervisors through signaling and routing', () => {
  let nats: NatsServer;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  const routing: Array<Awaited<ReturnType<typeof startRoutingProcess>>> = [];
  const clients: TestClient[] = [];
  let routingEnv: Record<string, string>;

  const desk = async (identity: string, role: DeskRole, extra: { name?: string; crmContactId?: string; phoneNumber?: string } = {}) => {
    const client = await TestClient.open(`${signaling.url.replace('http', 'ws')}/v1/desk`);
    clients.push(client);
    const { token } = await mintDeskToken(DEMO_TENANT, { identity, role, ...extra });
    const hello = await client.request('hello', { token, protocolVersion: 1 });
    return { client, hello };
  };

  /** The notifications of a kind received so far. */
  const all = (client: TestClient, kind: string) => client.notifications.filter((n) => kind in n).map((n) => n[kind]);
  const waitNotification = async (client: TestClient, kind: string, match: (value: Record<string, any>) => boolean, timeoutMs = 10_000) => {
    let found: Record<string, any> | undefined;
    await waitFor(() => (found = all(client, kind).find(match)) !== undefined, timeoutMs, `${kind} notification`);
    return found!;
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    await seedRoutingDirectory(nats, deskDirectory);
    routingEnv = { ...twoTenantEnv, ROUTING_TICK_MS: '100', ROUTING_OFFER_TIMEOUT_SECONDS: '4', ROUTING_LEASE_POLL_MS: '300' };
    routing.push(await startRoutingProcess({ natsUrl: nats.url, replicaId: 'routing-a', env: routingEnv }));
    routing.push(await startRoutingProcess({ natsUrl: nats.url, replicaId: 'routing-b', env: routingEnv }));
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv });
  }, 90_000);

  afterAll(async () => {
    for (const client of clients) client.ws.terminate();
    await signaling?.stop();
    for (const replica of routing) await replica.stop();
    await nats?.stop();
  });

  it('refuses a token of the wrong kind or role, and another tenant reaches nothing of this one', async () => {
    // A room's join token is not a desk token, and the connection closes as unauthenticated.
    const client = await TestClient.open(`${signaling.url.replace('http', 'ws')}/v1/desk`);
    clients.push(client);
    const joinToken = await demoToken({ room: 'r1', identity: 'eve', role: 'end_user' });
    expect((await client.request('hello', { token: joinToken })).error.code).toBe('UNAUTHENTICATED');
    expect((await client.closed).code).toBe(4001);

    // A desk token is not a join token.
    const room = await TestClient.open(`${signaling.url.replace('http', 'ws')}/ws`);
    clients.push(room);
    const { token: deskToken } = await mintDeskToken(DEMO_TENANT, { identity: 'eve', role: 'end_user' });
    expect((await room.request('join', { token: deskToken })).error.code).toBe('UNAUTHENTICATED');

    // An agent asks for support, an end user sets a status or takes an offer, an agent reads the queues: refused.
    const { client: agent } = await desk('ann', 'agent');
    expect((await agent.request('requestSupport', { queue: 'billing', channel: 'video' })).error.code).toBe('PERMISSION_DENIED');
    expect((await agent.request('queueView', {})).error.code).toBe('PERMISSION_DENIED');
    const { client: user } = await desk('eve', 'end_user');
    expect((await user.request('setStatus', { status: 'available' })).error.code).toBe('PERMISSION_DENIED');
    expect((await user.request('accept', { contactId: 'ct_x' })).error.code).toBe('PERMISSION_DENIED');
    // A person who is not an agent in the directory cannot be one by token alone.
    const { hello: impostor } = await desk('sue', 'agent');
    expect(impostor.error.code).toBe('PERMISSION_DENIED');
    const { hello: notSupervisor } = await desk('ann', 'supervisor');
    expect(notSupervisor.error.code).toBe('PERMISSION_DENIED');
    // Hostile parameters are refused by schema before anything is asked of routing.
    expect((await user.request('requestSupport', { queue: 'billing', channel: 'fax' })).error.code).toBe('MALFORMED_MESSAGE');
    expect((await user.request('requestSupport', { queue: '../x', channel: 'video' })).error.code).toBe('MALFORMED_MESSAGE');
    expect((await user.request('requestSupport', { queue: 'nosuch', channel: 'video' })).error.code).toBe('NOT_FOUND');

    // Globex has no directory: its desk tokens reach no queue and no contact of demo.
    const globex = await TestClient.open(`${signaling.url.replace('http', 'ws')}/v1/desk`);
    clients.push(globex);
    const { token: globexToken } = await mintDeskToken(GLOBEX_TENANT, { identity: 'ann', role: 'agent' });
    expect((await globex.request('hello', { token: globexToken })).error.code).toBe('PERMISSION_DENIED');
    const globexUser = await TestClient.open(`${signaling.url.replace('http', 'ws')}/v1/desk`);
    clients.push(globexUser);
    await globexUser.request('hello', { token: (await mintDeskToken(GLOBEX_TENANT, { identity: 'eve', role: 'end_user' })).token });
    expect((await globexUser.request('requestSupport', { queue: 'billing', channel: 'video' })).error.code).toBe('NOT_FOUND');
  }, 60_000);

  it('offers the longest-idle skilled agent, moves on when declined, connects both into one room, and refuses a late accept', async () => {
    const { client: ann, hello } = await desk('ann', 'agent');
    expect(hello.hello.role).toBe('agent');
    expect((await ann.request('setStatus', { status: 'available' })).agent.status).toBe('AGENT_STATUS_AVAILABLE');
    const { client: bob } = await desk('bob', 'agent');
    await bob.request('setStatus', { status: 'available' });
    const { client: cyd } = await desk('cyd', 'agent');
    await cyd.request('setStatus', { status: 'available' });

    const { client: user } = await desk('eve', 'end_user', { name: 'Eve', crmContactId: 'crm-42', phoneNumber: '+14155552671' });
    const asked = await user.request('requestSupport', { queue: 'billing', channel: 'video', context: { order: 'A-17', topic: 'refund', secret: 'not for agents' } });
    const contactId = asked.contact.contactId as string;
    expect(contactId).toMatch(/^ct_/);

    // Ann went available first: she is the longest idle of those with billing; cyd has no billing skill.
    const offer = await waitNotification(ann, 'offered', (o) => o.contactId === contactId);
    expect(JSON.parse(offer.contextJson)).toEqual({ order: 'A-17', topic: 'refund' });
    expect(offer.name).toBe('Eve');
    expect(JSON.stringify(offer)).not.toContain('4155552671');
    expect(all(cyd, 'offered')).toHaveLength(0);
    await waitNotification(user, 'contact', (c) => c.phase === 'CONTACT_PHASE_OFFERED');

    expect((await ann.request('decline', { contactId })).ok).toBeDefined();
    await waitNotification(bob, 'offered', (o) => o.contactId === contactId);
    // Ann's answer to an offer that moved on: refused with its reason; the contact stays bob's.
    expect((await ann.request('accept', { contactId })).error.code).toBe('OFFER_MOVED_ON');
    // Cyd never had it: the same.
    expect((await cyd.request('accept', { contactId })).error.code).toBe('OFFER_MOVED_ON');

    const accepted = await bob.request('accept', { contactId });
    const agentGrant = await verifyJoinToken([DEMO_TENANT], accepted.join.token);
    expect(agentGrant).toMatchObject({ role: 'agent', identity: 'bob', room: `cc_${contactId}` });
    expect(agentGrant.grants.canRecord).toBe(true);

    const connected = await waitNotification(user, 'connected', (c) => c.contact.contactId === contactId);
    const userGrant = await verifyJoinToken([DEMO_TENANT], connected.token);
    expect(userGrant).toMatchObject({ role: 'end_user', identity: 'eve', room: `cc_${contactId}` });
    expect(userGrant.contact.crmContactId).toBe('crm-42');
    expect(userGrant.grants.sources).toEqual(['camera', 'microphone', 'screen']);

    // A supervisor watches over the call: a token per mode, hidden from the end user unless barging in.
    const { client: sue } = await desk('sue', 'supervisor');
    const modes = [
      ['monitor', 'supervisors', []],
      ['whisper', 'agents', ['microphone']],
      ['barge', '', ['camera', 'microphone']],
    ] as const;
    for (const [mode, visibleTo, sources] of modes) {
      const join = (await sue.request('supervise', { contactId, mode })).join;
      expect(join.contact.agentId).toBe('bob');
      const grant = await verifyJoinToken([DEMO_TENANT], join.token);
      expect(grant).toMatchObject({ role: 'supervisor', identity: 'sue', room: `cc_${contactId}`, visibleTo });
      expect(grant.grants).toMatchObject({ sources, canPublish: sources.length > 0, canSubscribe: true, canRecord: false });
    }
    expect((await bob.request('supervise', { contactId, mode: 'monitor' })).error.code).toBe('PERMISSION_DENIED');
    expect((await user.request('supervise', { contactId, mode: 'monitor' })).error.code).toBe('PERMISSION_DENIED');
    expect((await sue.request('supervise', { contactId, mode: 'eavesdrop' })).error.code).toBe('MALFORMED_MESSAGE');
    expect((await sue.request('supervise', { contactId: 'ct_nosuch', mode: 'monitor' })).error.code).toBe('NOT_FOUND');

    // Bob ends it and is in after-contact work; wrap-up makes him available again.
    await bob.request('end', { contactId });
    await waitNotification(user, 'contact', (c) => c.phase === 'CONTACT_PHASE_ENDED');
    await waitNotification(bob, 'agent', (a) => a.status === 'AGENT_STATUS_AFTER_CONTACT_WORK');
    expect((await bob.request('wrapUp', { contactId: 'ct_nosuch', disposition: 'x' })).error.code).toBe('NOT_FOUND');
    const wrapped = await bob.request('wrapUp', { contactId, disposition: 'resolved', notes: 'refund issued' });
    expect(wrapped.agent.status).toBe('AGENT_STATUS_AVAILABLE');

    // The record of the contact is out for crm-sync: who, where, how long, what came of it; no name, no context, no phone number.
    const record = (await contactRecords()).find((r) => r.contactId === contactId);
    expect(record).toMatchObject({
      tenant: 'demo',
      queueId: 'billing',
      endUser: 'eve',
      crmContactId: 'crm-42',
      agentId: 'bob',
      outcome: 'completed',
      disposition: 'resolved',
      notes: 'refund issued',
      room: `cc_${contactId}`,
    });
    expect(record!.connectedAtMs).toBeGreaterThanOrEqual(record!.requestedAtMs);
    expect(record!.endedAtMs).toBeGreaterThanOrEqual(record!.connectedAtMs);
    const raw = JSON.stringify(ContactRecord.toJSON(record!));
    for (const secret of ['Eve', 'A-17', '4155552671']) expect(raw).not.toContain(secret);
    for (const c of [ann, bob, cyd, user, sue]) c.ws.close();
  }, 60_000);

  it('keeps a warm transfer on the first agent until she completes the hand-over, in one room, and records the contact once', async () => {
    const { client: bob } = await desk('bob', 'agent');
    await bob.request('setStatus', { status: 'away' });
    const { client: cyd } = await desk('cyd', 'agent');
    await cyd.request('setStatus', { status: 'away' });
    const { client: ann } = await desk('ann', 'agent');
    await ann.request('setStatus', { status: 'available' });
    const { client: user } = await desk('wes', 'end_user', { name: 'Wes' });
    const contactId = (await user.request('requestSupport', { queue: 'billing', channel: 'voice' })).contact.contactId as string;
    await waitNotification(ann, 'offered', (o) => o.contactId === contactId);
    const room = (await ann.request('accept', { contactId })).join.contact.room;
    expect(room).toBe(`cc_${contactId}`);
    await waitNotification(user, 'connected', (c) => c.contact.contactId === contactId);

    // Warm to cyd (away for now): ann keeps the contact, busy, told so in her state.
    expect((await ann.request('transfer', { contactId, agentId: 'cyd', warm: true })).ok).toBeDefined();
    await waitNotification(ann, 'agent', (a) => a.handingOverContactIds?.includes(contactId) && a.status === 'AGENT_STATUS_BUSY' && a.contacts[0]?.room === room);
    expect(all(ann, 'contactEnded').filter((c) => c.contactId === contactId)).toHaveLength(0);
    await waitNotification(user, 'contact', (c) => c.contactId === contactId && c.phase === 'CONTACT_PHASE_QUEUED');
    // Her call capacity is in use: another billing call waits rather than ring her.
    const { client: other } = await desk('xia', 'end_user');
    const waiting = (await other.request('requestSupport', { queue: 'billing', channel: 'voice' })).contact;
    expect(waiting.phase).toBe('CONTACT_PHASE_QUEUED');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(all(ann, 'offered').filter((o) => o.contactId === waiting.contactId)).toHaveLength(0);
    await other.request('leaveQueue', {});

    // Cyd comes in: into the same room; the end user is told who is with them and joins nothing new.
    await cyd.request('setStatus', { status: 'available' });
    const offer = await waitNotification(cyd, 'offered', (o) => o.contactId === contactId);
    expect(offer.transferredBy).toBe('ann');
    const joined = await cyd.request('accept', { contactId });
    expect(await verifyJoinToken([DEMO_TENANT], joined.join.token)).toMatchObject({ role: 'agent', identity: 'cyd', room });
    await waitNotification(user, 'contact', (c) => c.contactId === contactId && c.phase === 'CONTACT_PHASE_CONNECTED' && c.agentId === 'cyd' && c.room === room);
    await waitNotification(ann, 'agent', (a) => a.handingOverContactIds?.includes(contactId) && a.contacts[0]?.agentId === 'cyd');
    expect(all(user, 'connected').filter((c) => c.contact.contactId === contactId)).toHaveLength(1);

    // Only ann completes her hand-over, once; then her part is over and she wraps it up.
    const { client: intruder } = await desk('wes', 'end_user');
    expect((await intruder.request('completeTransfer', { contactId })).error.code).toBe('PERMISSION_DENIED');
    expect((await bob.request('completeTransfer', { contactId })).error.code).toBe('NOT_FOUND');
    expect((await ann.request('completeTransfer', { contactId: '../x' })).error.code).toBe('MALFORMED_MESSAGE');
    const left = (await ann.request('completeTransfer', { contactId })).agent;
    expect(left).toMatchObject({ status: 'AGENT_STATUS_AFTER_CONTACT_WORK', wrapUpContactIds: [contactId] });
    expect(left.handingOverContactIds ?? []).toEqual([]);
    expect((await waitNotification(ann, 'contactEnded', (c) => c.contactId === contactId)).endReason).toBe('transferred_warm');
    expect((await ann.request('completeTransfer', { contactId })).error.code).toBe('NOT_FOUND');
    expect((await ann.request('wrapUp', { contactId, disposition: 'handed-over' })).agent.status).toBe('AGENT_STATUS_AVAILABLE');
    // Her wrap-up is of her part: the contact goes on with cyd, and has no record yet.
    expect((await contactRecords()).some((r) => r.contactId === contactId)).toBe(false);
    await ann.request('setStatus', { status: 'away' });

    await cyd.request('end', { contactId });
    await waitNotification(user, 'contact', (c) => c.contactId === contactId && c.phase === 'CONTACT_PHASE_ENDED');
    expect((await cyd.request('wrapUp', { contactId, disposition: 'resolved' })).agent.status).toBe('AGENT_STATUS_AVAILABLE');
    await cyd.request('setStatus', { status: 'away' });
    let record: ContactRecord | undefined;
    await waitFor(async () => (record = (await contactRecords()).find((r) => r.contactId === contactId)) !== undefined, 5_000, 'the contact recorded');
    expect(record).toMatchObject({ agentId: 'cyd', queueId: 'billing', disposition: 'resolved', room, outcome: 'completed' });
    expect(record!.transfers).toEqual([{ fromAgentId: 'ann', toQueueId: 'billing', toAgentId: 'cyd', warm: true, atMs: expect.any(Number) }]);
    // The handle time is the contact's, from ann's answer to cyd's end.
    expect(record!.connectedAtMs).toBeLessThan(record!.transfers[0]!.atMs);
    expect(record!.handleSeconds).toBe(Math.round((record!.endedAtMs - record!.connectedAtMs) / 1000));
    for (const c of [ann, bob, cyd, user, other, intruder]) c.ws.close();
  }, 60_000);

  it('tells waiting end users their place as it changes, and a supervisor sees the queue', async () => {
    const { client: sue } = await desk('sue', 'supervisor');
    const first = await desk('u1', 'end_user');
    const second = await desk('u2', 'end_user');
    const one = (await first.client.request('requestSupport', { queue: 'support', channel: 'voice' })).contact;
    const two = (await second.client.request('requestSupport', { queue: 'support', channel: 'voice' })).contact;
    expect(one.position).toBe(1);
    expect(two.position).toBe(2);
    const view = (await sue.request('queueView', {})).queues;
    const support = view.queues.find((q: { queueId: string }) => q.queueId === 'support');
    expect(support.waiting).toBe(2);
    // A waiting contact is in no call yet: nothing to monitor.
    expect((await sue.request('supervise', { contactId: one.contactId, mode: 'monitor' })).error.code).toBe('INVALID_STATE');
    // Told without asking too: new waiting contacts change the view.
    await waitNotification(sue, 'queues', (v) => v.queues.some((q: { queueId: string; waiting: number }) => q.queueId === 'support' && q.waiting === 2));
    // The first leaves (abandon): the second moves up, and is told.
    await first.client.request('leaveQueue', {});
    await waitNotification(second.client, 'contact', (c) => c.position === 1);
    await waitFor(async () => (await contactRecords()).some((r) => r.contactId === one.contactId && r.outcome === 'abandoned' && r.endUser === 'u1'), 5_000, 'the abandoned contact recorded');
    await waitNotification(sue, 'queues', (v) =>
      v.queues.some((q: { queueId: string; waiting: number; abandonedToday: number }) => q.queueId === 'support' && q.waiting === 1 && q.abandonedToday >= 1),
    );
    // Reconnecting with the contact's id keeps the place.
    second.client.ws.close();
    const again = await desk('u2', 'end_user');
    const resumed = (await again.client.request('requestSupport', { queue: 'support', channel: 'voice', contactId: two.contactId })).contact;
    expect(resumed.contactId).toBe(two.contactId);
    expect(resumed.position).toBe(1);
    // Another end user cannot take it over.
    const thief = await desk('mallory', 'end_user');
    const stolen = (await thief.client.request('requestSupport', { queue: 'support', channel: 'voice', contactId: two.contactId })).error;
    expect(stolen.code).toBe('NOT_FOUND');
    await again.client.request('leaveQueue', {});
    // A queue outside its hours: a callback at once, the place kept.
    const late = await desk('owl', 'end_user');
    const night = (await late.client.request('requestSupport', { queue: 'night', channel: 'voice' })).contact;
    expect(night.phase).toBe('CONTACT_PHASE_CALLBACK');
    expect(night.position).toBe(1);
    await late.client.request('leaveQueue', {});
  }, 60_000);

  it('moves an offer on at once when the ringing agent app is killed, and keeps contacts through the loss of the routing owner', async () => {
    const { client: cyd } = await desk('cyd', 'agent');
    await cyd.request('setStatus', { status: 'available' });
    const { client: user } = await desk('zoe', 'end_user');
    const contactId = (await user.request('requestSupport', { queue: 'support', channel: 'chat' })).contact.contactId;
    await waitNotification(cyd, 'offered', (o) => o.contactId === contactId);
    const { client: ann } = await desk('ann', 'agent');
    await ann.request('setStatus', { status: 'available' });
    // Cyd's app dies while it rings: the offer goes to ann well before the 4 s timeout.
    const killedAt = Date.now();
    cyd.ws.terminate();
    await waitNotification(ann, 'offered', (o) => o.contactId === contactId, 3_000);
    expect(Date.now() - killedAt).toBeLessThan(3_000);

    // The routing owner dies (no goodbye) while the offer is out: the other replica takes the
    // tenant over after the lease's age limit, the contact keeps its place and is offered again.
    const holder = await ownerOf();
    const survivor = routing.find((r) => r.replicaId !== holder)!;
    await routing.find((r) => r.replicaId === holder)!.stop('SIGKILL');
    await waitFor(async () => (await ownerOf()) === survivor.replicaId, 20_000, 'the other replica owns the tenant');
    // Ann still holds the offer or gets it again; accepting it connects exactly once.
    let accepted: Record<string, any> | undefined;
    await waitFor(
      async () => {
        accepted = await ann.request('accept', { contactId });
        return accepted.join !== undefined;
      },
      15_000,
      'the contact accepted after the takeover',
    );
    expect(accepted!.join.contact.agentId).toBe('ann');
    await waitNotification(user, 'connected', (c) => c.contact.contactId === contactId);
    expect(all(user, 'connected').filter((c) => c.contact.contactId === contactId)).toHaveLength(1);
  }, 90_000);

  it('takes up a change of the directory made through the admin API of any replica', async () => {
    // dan is not an agent yet.
    const { hello: before } = await desk('dan', 'agent');
    expect(before.error.code).toBe('PERMISSION_DENIED');
    const basic = `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${DEMO_TENANT.apiSecret}`).toString('base64')}`;
    for (const replica of routing.filter((r) => r.child.exitCode === null && r.child.signalCode === null)) {
      const put = await fetch(`${replica.url}/v1/directory/people/dan`, {
        method: 'PUT',
        headers: { authorization: basic, 'content-type': 'application/json' },
        body: JSON.stringify({ personId: 'dan', name: 'Dan', roles: ['agent'], skills: { support: 2 }, profileId: 'support-only' }),
      });
      expect([200, 201]).toContain(put.status);
    }
    await waitFor(
      async () => {
        const { client, hello } = await desk('dan', 'agent');
        client.ws.close();
        return hello.hello?.role === 'agent';
      },
      10_000,
      'dan is an agent',
    );
  }, 30_000);

  /** Every contact record on the sessions stream. */
  async function contactRecords(): Promise<ContactRecord[]> {
    const nc = await nats.connect();
    try {
      const jsm = await jetstreamManager(nc);
      const { state } = await jsm.streams.info(streams.sessions.name);
      const records: ContactRecord[] = [];
      for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
        const message = await jsm.streams.getMessage(streams.sessions.name, { seq }).catch(() => null);
        if (message?.subject === 'gateway.demo.contact.ended') records.push(ContactRecord.decode(message.data));
      }
      return records;
    } finally {
      await nc.close();
    }
  }

  /** The replica holding the demo tenant's lease, read from the KV. */
  async function ownerOf(): Promise<string | undefined> {
    const nc = await nats.connect();
    try {
      const kv = await new Kvm(nc).open('gateway_routing_leases');
      const entry = await kv.get('demo');
      if (entry?.operation !== 'PUT') return undefined;
      return (entry.json() as { replicaId: string }).replicaId;
    } finally {
      await nc.close();
    }
  }
});
