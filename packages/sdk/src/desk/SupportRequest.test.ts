import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { GatewayError } from '../errors.js';
import type { WebSocketConstructor } from '../signaling/Socket.js';
import { FakeDesk } from '../testing/FakeDesk.js';
import { SupportRequest } from './SupportRequest.js';

const WS = WebSocket as unknown as WebSocketConstructor;
const fast = { WebSocket: WS, requestTimeoutMs: 1_000, connectTimeoutMs: 1_000, reconnectInitialDelayMs: 10, reconnectMaxDelayMs: 50 };
const queued = (position: number, estimatedWaitSeconds = 60) => ({
  contactId: 'CT_1',
  phase: 'CONTACT_PHASE_QUEUED',
  queueId: 'billing',
  channel: 'CHANNEL_VIDEO',
  position,
  estimatedWaitSeconds,
  requestedAtMs: 1_000,
});
const next = <T>(request: SupportRequest, event: 'queued' | 'connected' | 'ended' | 'error' | 'offered' | 'callback') =>
  new Promise<T>((resolve) => request.once(event, ((value?: T) => resolve(value as T)) as never));

describe('SupportRequest', () => {
  let desk: FakeDesk | undefined;
  let request: SupportRequest | undefined;
  afterEach(async () => {
    request?.close();
    await desk?.stop();
    desk = request = undefined;
  });

  async function start(answer: FakeDesk['answer'] = (method) => (method === 'requestSupport' ? { contact: queued(3) } : undefined)) {
    desk = await FakeDesk.start();
    desk.answer = answer;
    request = await SupportRequest.create({ ...fast, url: desk.url, token: 'desk-jwt', queue: 'billing', channel: 'video', context: { order: '42' } });
    return { desk, request };
  }

  it('says hello with the token, then asks for support; resolves queued and announces it', async () => {
    const { desk, request } = await start();
    expect(desk.last().path).toBe('/v1/desk');
    expect(desk.last().frames).toEqual([
      { id: 1, hello: { token: 'desk-jwt', protocolVersion: 1 } },
      { id: 2, requestSupport: { queue: 'billing', channel: 'video', context: { order: '42' }, contactId: '' } },
    ]);
    expect(request).toMatchObject({ contactId: 'CT_1', phase: 'queued', position: 3, estimatedWaitSeconds: 60 });
    expect(await next(request, 'queued')).toEqual({ position: 3, estimatedWaitSeconds: 60 });
  });

  it('reports queue updates, the offer, then the room to join', async () => {
    const { desk, request } = await start();
    await next(request, 'queued');
    const seen: unknown[] = [];
    request.on('queued', (u) => seen.push(u));
    request.on('offered', () => seen.push('offered'));
    const connected = next(request, 'connected');
    desk.notify({ contact: queued(2, 30) });
    desk.notify({ contact: queued(2, 30) });
    desk.notify({ contact: { ...queued(0, 0), phase: 'CONTACT_PHASE_OFFERED' } });
    desk.notify({ connected: { contact: { ...queued(0, 0), phase: 'CONTACT_PHASE_CONNECTED', room: 'support-CT_1', agentId: 'AG_1' }, token: 'room-jwt' } });
    expect(await connected).toEqual({ room: 'support-CT_1', token: 'room-jwt', agentId: 'AG_1' });
    expect(seen).toEqual([{ position: 2, estimatedWaitSeconds: 30 }, 'offered']);
    expect(request.phase).toBe('connected');
    expect(request.position).toBe(0);
    expect(request.connected?.token).toBe('room-jwt');
  });

  it('tells of the new agent when a transfer connects the contact again in the same room', async () => {
    const { desk, request } = await start();
    await next(request, 'queued');
    const first = next(request, 'connected');
    desk.notify({ connected: { contact: { ...queued(0, 0), phase: 'CONTACT_PHASE_CONNECTED', room: 'support-CT_1', agentId: 'AG_1' }, token: 'room-jwt' } });
    await first;
    desk.notify({ contact: { ...queued(1, 0), phase: 'CONTACT_PHASE_QUEUED' } });
    const second = next(request, 'connected');
    desk.notify({ contact: { ...queued(0, 0), phase: 'CONTACT_PHASE_CONNECTED', room: 'support-CT_1', agentId: 'AG_2' } });
    expect(await second).toEqual({ room: 'support-CT_1', token: 'room-jwt', agentId: 'AG_2' });
  });

  it('join() waits for an agent', async () => {
    const { request } = await start();
    await expect(request.join()).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('tells of a callback, and of the end, then closes', async () => {
    const { desk, request } = await start();
    await next(request, 'queued');
    const callback = next(request, 'callback');
    desk.notify({ contact: { ...queued(3), phase: 'CONTACT_PHASE_CALLBACK' } });
    await callback;
    const ended = next<{ reason: string }>(request, 'ended');
    desk.notify({ contact: { ...queued(0, 0), phase: 'CONTACT_PHASE_ENDED', endReason: 'completed' } });
    expect(await ended).toEqual({ reason: 'completed' });
    expect(request.phase).toBe('ended');
  });

  it('asks again for the same contact after a reconnection, keeping its place', async () => {
    let asked = 0;
    const { desk, request } = await start((method) => (method === 'requestSupport' ? { contact: queued(++asked === 1 ? 3 : 2) } : undefined));
    await next(request, 'queued');
    const update = next(request, 'queued');
    desk.last().ws.close(4503, 'server shutdown');
    expect(await update).toEqual({ position: 2, estimatedWaitSeconds: 60 });
    expect(desk.conns).toHaveLength(2);
    expect(desk.conns[1]!.frames.map((f) => f.hello?.token ?? f.requestSupport?.contactId)).toEqual(['desk-jwt', 'CT_1']);
  });

  it('leave() abandons the contact', async () => {
    const { desk, request } = await start((method) => (method === 'requestSupport' ? { contact: queued(3) } : method === 'leaveQueue' ? { ok: {} } : undefined));
    const ended = next<{ reason: string }>(request, 'ended');
    await request.leave();
    expect(desk.methods()).toEqual(['hello', 'requestSupport', 'leaveQueue']);
    expect(await ended).toEqual({ reason: 'abandoned' });
    await request.leave();
  });

  it('rejects with the server error and its code', async () => {
    const error = await start((method) => (method === 'requestSupport' ? { error: { code: 'NOT_FOUND', message: 'no such queue' } } : undefined)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'NOT_FOUND', message: 'no such queue' });
  });

  it('rejects a token of another role', async () => {
    desk = await FakeDesk.start();
    desk.role = 'agent';
    const error = await SupportRequest.create({ ...fast, url: desk.url, token: 't', queue: 'q', channel: 'chat' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'PERMISSION_DENIED' });
  });

  it('stops reconnecting when the token is refused, with an error', async () => {
    const { desk, request } = await start();
    await next(request, 'queued');
    const failed = next<GatewayError>(request, 'error');
    desk.welcome = { error: { code: 'TOKEN_EXPIRED', message: 'expired' } };
    desk.last().ws.close(4503, 'server shutdown');
    expect(await failed).toMatchObject({ code: 'TOKEN_EXPIRED' });
    const connections = desk.conns.length;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(desk.conns).toHaveLength(connections);
    expect(connections).toBe(2);
  });
});
