import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { GatewayError } from '../errors.js';
import type { WebSocketConstructor } from '../signaling/Socket.js';
import { FakeDesk } from '../testing/FakeDesk.js';
import { AgentDesk } from './AgentDesk.js';
import type { AgentState, Offer } from './types.js';

const WS = WebSocket as unknown as WebSocketConstructor;
const fast = { WebSocket: WS, requestTimeoutMs: 1_000, connectTimeoutMs: 1_000, reconnectInitialDelayMs: 10, reconnectMaxDelayMs: 50 };
const offer = {
  contactId: 'CT_1',
  queueId: 'billing',
  channel: 'CHANNEL_VOICE',
  expiresAtMs: 5_000,
  contextJson: JSON.stringify({ order: '42', nested: { no: 1 } }),
  name: 'Ada',
  requestedAtMs: 1_000,
};
const connectedContact = { contactId: 'CT_1', phase: 'CONTACT_PHASE_CONNECTED', queueId: 'billing', channel: 'CHANNEL_VOICE', room: 'support-CT_1', agentId: 'AG_1' };

describe('AgentDesk', () => {
  let server: FakeDesk | undefined;
  let desk: AgentDesk | undefined;
  afterEach(async () => {
    desk?.close();
    await server?.stop();
    server = desk = undefined;
  });

  async function start(agent: Record<string, unknown> = { agentId: 'AG_1', status: 'AGENT_STATUS_AWAY' }) {
    server = await FakeDesk.start();
    server.role = 'agent';
    server.welcome = { agent };
    desk = await AgentDesk.create({ ...fast, url: server.url, token: 'agent-jwt' });
    return { server, desk };
  }

  it('reads its state from hello, and announces it', async () => {
    const { desk } = await start({ agentId: 'AG_1', status: 'AGENT_STATUS_AVAILABLE', offer });
    expect(desk.status).toBe('available');
    expect(desk.offer).toMatchObject({ contactId: 'CT_1', channel: 'voice', context: { order: '42' } });
    const seen: string[] = [];
    desk.on('status', (s) => seen.push(s.status));
    desk.on('offer', (o) => seen.push(o.contactId));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(seen).toEqual(['available', 'CT_1']);
  });

  it('sets its status', async () => {
    const { server, desk } = await start();
    server.answer = (method, params) => (method === 'setStatus' ? { agent: { agentId: 'AG_1', status: 'AGENT_STATUS_AVAILABLE', reason: params.reason } } : undefined);
    const state = await desk.setStatus('available');
    expect(server.last().frames[1]).toEqual({ id: 2, setStatus: { status: 'available', reason: '' } });
    expect(state.status).toBe('available');
    expect(desk.status).toBe('available');
  });

  it('is offered a contact, accepts it and gets the room to join', async () => {
    const { server, desk } = await start({ agentId: 'AG_1', status: 'AGENT_STATUS_AVAILABLE' });
    server.answer = (method) => (method === 'accept' ? { join: { contact: connectedContact, token: 'room-jwt' } } : undefined);
    const offered = new Promise<Offer>((resolve) => desk.on('offer', resolve));
    server.notify({ offered: offer });
    expect(await offered).toEqual({
      contactId: 'CT_1',
      queueId: 'billing',
      channel: 'voice',
      expiresAtMs: 5_000,
      context: { order: '42' },
      name: 'Ada',
      requestedAtMs: 1_000,
      transferredBy: '',
    });
    const connected: unknown[] = [];
    desk.on('connected', (join) => connected.push(join));
    const join = await desk.accept();
    expect(desk.status).toBe('busy');
    expect(server.last().frames[1]).toEqual({ id: 2, accept: { contactId: 'CT_1' } });
    expect(join).toMatchObject({ room: 'support-CT_1', token: 'room-jwt', contact: { contactId: 'CT_1', phase: 'connected', agentId: 'AG_1' } });
    expect(desk.offer).toBeUndefined();
    expect(desk.contacts.map((c) => c.contactId)).toEqual(['CT_1']);
    // The same room again as a notification is not announced twice.
    server.notify({ connected: { contact: connectedContact, token: 'room-jwt' } });
    server.notify({ contactEnded: { ...connectedContact, phase: 'CONTACT_PHASE_ENDED', endReason: 'completed' } });
    await new Promise<void>((resolve) => desk.once('contactEnded', () => resolve()));
    expect(connected).toEqual([]);
    expect(desk.contacts).toEqual([]);
  });

  it('declines an offer, and hears when one is withdrawn', async () => {
    const { server, desk } = await start({ agentId: 'AG_1', status: 'AGENT_STATUS_AVAILABLE', offer });
    server.answer = (method) => (method === 'decline' ? { ok: {} } : undefined);
    await desk.decline();
    expect(server.last().frames[1]).toEqual({ id: 2, decline: { contactId: 'CT_1' } });
    expect(desk.offer).toBeUndefined();
    const withdrawn = new Promise((resolve) => desk.on('offerWithdrawn', resolve));
    server.notify({ offered: { ...offer, contactId: 'CT_2' } });
    server.notify({ offerWithdrawn: { contactId: 'CT_2', reason: 'expired' } });
    expect(await withdrawn).toEqual({ contactId: 'CT_2', reason: 'expired' });
    expect(desk.offer).toBeUndefined();
    await expect(desk.accept()).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('transfers, ends and wraps up with the protocol fields', async () => {
    const { server, desk } = await start();
    server.answer = (method) =>
      method === 'wrapUp'
        ? { agent: { agentId: 'AG_1', status: 'AGENT_STATUS_AWAY', reason: 'lunch' } }
        : method === 'completeTransfer'
          ? { agent: { agentId: 'AG_1', status: 'AGENT_STATUS_AFTER_CONTACT_WORK', wrapUpContactIds: ['CT_1'] } }
          : { ok: {} };
    await desk.transfer('CT_1', { queue: 'tier2' }, { warm: true });
    await desk.completeTransfer('CT_1');
    expect(desk.state).toMatchObject({ status: 'after_contact_work', wrapUpContactIds: ['CT_1'], handingOverContactIds: [] });
    await desk.transfer('CT_1', { agentId: 'AG_2' });
    await desk.end('CT_1');
    await desk.wrapUp('CT_1', { disposition: 'resolved', next: 'away', reason: 'lunch' });
    expect(server.last().frames.slice(1)).toEqual([
      { id: 2, transfer: { contactId: 'CT_1', queue: 'tier2', agentId: '', warm: true } },
      { id: 3, completeTransfer: { contactId: 'CT_1' } },
      { id: 4, transfer: { contactId: 'CT_1', queue: '', agentId: 'AG_2', warm: false } },
      { id: 5, end: { contactId: 'CT_1' } },
      { id: 6, wrapUp: { contactId: 'CT_1', disposition: 'resolved', notes: '', next: 'away', reason: 'lunch' } },
    ]);
    expect(desk.state).toMatchObject({ status: 'away', reason: 'lunch' });
  });

  it('rejects a refused request with the server code', async () => {
    const { server, desk } = await start();
    server.answer = () => ({ error: { code: 'FORBIDDEN', message: 'not yours', retryAfterMs: 0 } });
    const error = await desk.end('CT_9').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'FORBIDDEN', message: 'not yours' });
  });

  it('pings, and reconnects when the pings go unanswered, reading its state again', async () => {
    server = await FakeDesk.start();
    server.role = 'agent';
    server.welcome = { agent: { agentId: 'AG_1', status: 'AGENT_STATUS_AWAY' } };
    const first = () => server!.conns[0]!;
    server.answersPings = (conn) => conn !== first();
    desk = await AgentDesk.create({ ...fast, url: server.url, token: 'agent-jwt', pingIntervalMs: 30, pingTimeoutMs: 150 });
    server.welcome = { agent: { agentId: 'AG_1', status: 'AGENT_STATUS_AVAILABLE' } };
    const status = new Promise<AgentState>((resolve) => desk!.on('status', (s) => s.status === 'available' && resolve(s)));
    expect((await status).status).toBe('available');
    expect(server.methods(first()).filter((m) => m === 'ping').length).toBeGreaterThan(1);
    expect(server.methods(server.conns[1]!)[0]).toBe('hello');
    expect(first().frames[1]).toEqual({ id: 2, ping: {} });
  });

  it('says hello with a fresh token from tokenProvider after a drop', async () => {
    server = await FakeDesk.start();
    server.role = 'agent';
    let issued = 0;
    desk = await AgentDesk.create({ ...fast, url: server.url, token: 'agent-jwt', tokenProvider: async () => `fresh-${++issued}` });
    const status = new Promise<AgentState>((resolve) => desk!.once('status', resolve));
    await status;
    const again = new Promise<AgentState>((resolve) => desk!.once('status', resolve));
    server.welcome = { agent: { agentId: 'AG_1', status: 'AGENT_STATUS_AWAY' } };
    server.last().ws.close(4503, 'server shutdown');
    await again;
    expect(server.conns.map((c) => c.frames[0]?.hello.token)).toEqual(['agent-jwt', 'fresh-1']);
  });

  it('stops for good when the server closes as unauthenticated', async () => {
    const { server, desk } = await start();
    const failed = new Promise<GatewayError>((resolve) => desk.on('error', resolve));
    server.last().ws.close(4001, 'token expired');
    expect(await failed).toMatchObject({ code: 'UNAUTHENTICATED' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.conns).toHaveLength(1);
  });
});
