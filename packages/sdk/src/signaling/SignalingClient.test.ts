import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { GatewayError } from '../errors.js';
import { SignalingClient, type SignalingClientOptions } from './SignalingClient.js';
import { LocalCloseCode, type WebSocketConstructor } from './Socket.js';

const WS = WebSocket as unknown as WebSocketConstructor;
type Frame = Record<string, any>;

interface Conn {
  ws: ServerSocket;
  frames: Frame[];
  closed: Promise<number>;
}

/** A scripted signaling server: `answer` gets every request and returns the reply (or nothing). */
class FakeServer {
  readonly conns: Conn[] = [];
  answer: (request: Frame, conn: Conn) => unknown;
  private constructor(
    readonly wss: WebSocketServer,
    readonly url: string,
    answer: (request: Frame, conn: Conn) => unknown,
  ) {
    this.answer = answer;
    wss.on('connection', (ws) => {
      const conn: Conn = { ws, frames: [], closed: new Promise((resolve) => ws.on('close', (code) => resolve(code))) };
      this.conns.push(conn);
      ws.on('message', (data) => {
        const request = JSON.parse(data.toString());
        conn.frames.push(request);
        const reply = this.answer(request, conn);
        if (reply !== undefined && ws.readyState === ws.OPEN) ws.send(JSON.stringify(reply));
      });
    });
  }

  static async start(answer: (request: Frame, conn: Conn) => unknown = standard()): Promise<FakeServer> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    return new FakeServer(wss, `ws://127.0.0.1:${(wss.address() as { port: number }).port}/ws`, answer);
  }

  /** The method of each connection's first frame. */
  firstMethods(): string[] {
    return this.conns.map((c) => Object.keys(c.frames[0] ?? {}).find((k) => k !== 'id') ?? '');
  }

  last(): Conn {
    return this.conns[this.conns.length - 1]!;
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

const joinResponse = (resumeToken: string, participantId = 'PA_me') => ({
  participant: { participantId, identity: 'me', role: 'end_user' },
  room: 'room-1',
  resumeToken,
  routerRtpCapabilities: { codecs: [] },
});

/** join -> resume token rt-N (N = connection number); resume -> accepted; ping -> pong; leave -> 4000. */
function standard(overrides: { resume?: (request: Frame) => unknown; ping?: (request: Frame) => unknown } = {}) {
  let joins = 0;
  return (request: Frame, conn: Conn): unknown => {
    const id = request.id;
    if (request.join) return { response: { id, join: joinResponse(`rt-${++joins}`, `PA_${joins}`) } };
    if (request.resume) {
      const custom = overrides.resume?.(request);
      if (custom !== undefined) return { response: { id, ...custom } };
      return { response: { id, resume: joinResponse(request.resume.resumeToken) } };
    }
    if (request.ping) return overrides.ping ? overrides.ping(request) : { response: { id, ping: { clientTimeMs: request.ping.clientTimeMs, serverTimeMs: 1 } } };
    if (request.leave) {
      setTimeout(() => conn.ws.close(4000, 'left'), 5);
      return { response: { id, leave: {} } };
    }
    return undefined;
  };
}

/** Fast timings so reconnection tests take milliseconds. */
const fast: Partial<SignalingClientOptions> = {
  WebSocket: WS,
  requestTimeoutMs: 1_000,
  connectTimeoutMs: 1_000,
  heartbeatIntervalMs: 60_000,
  heartbeatTimeoutMs: 120_000,
  reconnectInitialDelayMs: 10,
  reconnectMaxDelayMs: 50,
  reconnectGiveUpAfterMs: 5_000,
};

function events(client: SignalingClient) {
  const seen: string[] = [];
  for (const name of ['reconnecting', 'reconnected', 'disconnected'] as const) {
    client.on(name, (info?: unknown) => seen.push(name === 'reconnected' ? `reconnected:${(info as { resumed: boolean }).resumed ? 'resumed' : 'rejoined'}` : name));
  }
  return seen;
}

const next = <T extends unknown[]>(client: SignalingClient, event: 'reconnected' | 'disconnected' | 'reconnecting') =>
  new Promise<T>((resolve) => client.once(event, (...args: unknown[]) => resolve(args as T)));

describe('SignalingClient', () => {
  let server: FakeServer | undefined;
  let client: SignalingClient | undefined;
  afterEach(async () => {
    await client?.leave();
    await server?.stop();
    client = server = undefined;
  });

  it('joins with the token first, and runs restore before resolving', async () => {
    server = await FakeServer.start();
    const restore = vi.fn(async () => undefined);
    client = new SignalingClient({ ...fast, url: server.url, token: 'jwt-1', restore });
    const response = await client.connect();
    expect(server.last().frames[0]).toEqual({ id: 1, join: { token: 'jwt-1', protocolVersion: 1 } });
    // fromJSON restores what the server's toJSON left out.
    expect(response.participants).toEqual([]);
    expect(response.transportIds).toEqual([]);
    expect(restore).toHaveBeenCalledWith(response, 'joined');
    expect(client.state).toBe('connected');
  });

  it('matches responses to requests by id, whatever their order', async () => {
    server = await FakeServer.start();
    const held: Frame[] = [];
    const base = standard();
    server.answer = (r, c) => {
      if (!r.ping) return base(r, c);
      held.push(r);
      // Answer the two pings in reverse order.
      if (held.length === 2) for (const p of [...held].reverse()) c.ws.send(JSON.stringify({ response: { id: p.id, ping: { clientTimeMs: p.ping.clientTimeMs, serverTimeMs: 5 } } }));
      return undefined;
    };
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    await client.connect();
    const [a, b] = await Promise.all([client.request('ping', { clientTimeMs: 1 }), client.request('ping', { clientTimeMs: 2 })]);
    expect(a).toEqual({ clientTimeMs: 1, serverTimeMs: 5 });
    expect(b).toEqual({ clientTimeMs: 2, serverTimeMs: 5 });
    expect(held.map((r) => r.id)).toEqual([2, 3]);
  });

  it('rejects an error response with its code', async () => {
    server = await FakeServer.start();
    const base = standard();
    server.answer = (r, c) => (r.createTransport ? { response: { id: r.id, error: { code: 'RATE_LIMITED', message: 'slow down', retryAfterMs: 300 } } } : base(r, c));
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    await client.connect();
    const error = await client.request('createTransport', { direction: 'send' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({ code: 'RATE_LIMITED', message: 'slow down', retryAfterMs: 300 });
  });

  it('rejects a failed join, and stays disconnected', async () => {
    server = await FakeServer.start((r) => ({ response: { id: r.id, error: { code: 'TOKEN_EXPIRED', message: 'expired' } } }));
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    await expect(client.connect()).rejects.toMatchObject({ code: 'TOKEN_EXPIRED' });
    expect(client.state).toBe('disconnected');
  });

  it('rejects connect when nothing listens', async () => {
    client = new SignalingClient({ ...fast, url: 'ws://127.0.0.1:1/ws', token: 't' });
    await expect(client.connect()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('times out a request nobody answers', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't', requestTimeoutMs: 100 });
    await client.connect();
    await expect(client.request('getStats', { transportId: 'x' })).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('delivers notifications', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    await client.connect();
    const got = new Promise((resolve) => client!.on('notification', resolve));
    server.last().ws.send(JSON.stringify({ notification: { participantLeft: { participantId: 'PA_1', reason: 'left' } } }));
    expect(await got).toEqual({ $case: 'participantLeft', value: { participantId: 'PA_1', reason: 'left' } });
  });

  it('closes a socket whose server stops answering heartbeats, and resumes on a new one', async () => {
    server = await FakeServer.start(standard({ ping: () => undefined }));
    const restore = vi.fn(async () => undefined);
    client = new SignalingClient({ ...fast, url: server.url, token: 't', heartbeatIntervalMs: 50, heartbeatTimeoutMs: 200, restore });
    const seen = events(client);
    await client.connect();
    const pending = client.request('getStats', { transportId: 'x' }, 10_000);
    const reconnected = next(client, 'reconnected');
    // Once the client gave up on the socket, the server answers pings again.
    client.once('reconnecting', () => (server!.answer = standard()));
    await expect(pending).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    await reconnected;
    expect(await server.conns[0]!.closed).toBe(LocalCloseCode.HEARTBEAT_LOST);
    expect(server.conns[1]!.frames[0]).toEqual({ id: expect.any(Number), resume: { resumeToken: 'rt-1', protocolVersion: 1 } });
    expect(restore).toHaveBeenLastCalledWith(expect.objectContaining({ resumeToken: 'rt-1' }), 'resumed');
    expect(seen).toEqual(['reconnecting', 'reconnected:resumed']);
    expect(client.state).toBe('connected');
  });

  it('resumes first after an unexpected close, and keeps the new resume token', async () => {
    server = await FakeServer.start();
    let resumes = 0;
    server.answer = standard({ resume: () => ({ resume: joinResponse(`rt-resumed-${++resumes}`) }) });
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    const seen = events(client);
    await client.connect();
    for (let i = 0; i < 2; i++) {
      const reconnected = next(client, 'reconnected');
      server.last().ws.close(4503, 'server shutdown');
      await reconnected;
    }
    expect(server.firstMethods()).toEqual(['join', 'resume', 'resume']);
    expect(server.conns[1]!.frames[0].resume.resumeToken).toBe('rt-1');
    expect(server.conns[2]!.frames[0].resume.resumeToken).toBe('rt-resumed-1');
    expect(seen).toEqual(['reconnecting', 'reconnected:resumed', 'reconnecting', 'reconnected:resumed']);
  });

  it('joins again with the token on a fresh connection when the session expired', async () => {
    server = await FakeServer.start(standard({ resume: () => ({ error: { code: 'SESSION_EXPIRED', message: 'gone' } }) }));
    const restore = vi.fn(async () => undefined);
    client = new SignalingClient({ ...fast, url: server.url, token: 'jwt', restore });
    const seen = events(client);
    await client.connect();
    const reconnected = next(client, 'reconnected');
    client.dropSocket();
    await reconnected;
    expect(server.firstMethods()).toEqual(['join', 'resume', 'join']);
    expect(server.conns[1]!.frames).toHaveLength(1);
    expect(server.conns[2]!.frames[0].join.token).toBe('jwt');
    expect(restore).toHaveBeenLastCalledWith(expect.objectContaining({ resumeToken: 'rt-2' }), 'rejoined');
    expect(seen).toEqual(['reconnecting', 'reconnected:rejoined']);
  });

  it('joins again with a fresh token from tokenProvider, never the expired original, and only when it must', async () => {
    // The server accepts only tokens it has not seen expire; the session itself resumes without one.
    const valid = new Set(['jwt-original']);
    let resumable = true;
    const base = standard({ resume: () => (resumable ? undefined : { error: { code: 'SESSION_EXPIRED', message: 'gone' } }) });
    server = await FakeServer.start((r, c) => (r.join && !valid.has(r.join.token) ? { response: { id: r.id, error: { code: 'TOKEN_EXPIRED', message: 'expired' } } } : base(r, c)));
    let issued = 0;
    const tokenProvider = vi.fn(async () => {
      const token = `jwt-fresh-${++issued}`;
      valid.add(token);
      return token;
    });
    client = new SignalingClient({ ...fast, url: server.url, token: 'jwt-original', tokenProvider });
    const seen = events(client);
    await client.connect();
    valid.delete('jwt-original');
    // A drop the session survives: resumed on its own credential, no token asked for.
    let reconnected = next(client, 'reconnected');
    client.dropSocket();
    await reconnected;
    expect(tokenProvider).not.toHaveBeenCalled();
    // A drop it does not: joined again with a fresh token.
    resumable = false;
    reconnected = next(client, 'reconnected');
    client.dropSocket();
    await reconnected;
    expect(server.firstMethods()).toEqual(['join', 'resume', 'resume', 'join']);
    expect(server.last().frames[0].join.token).toBe('jwt-fresh-1');
    // A rejoin the server asks for (4010) asks for a fresh token too.
    reconnected = next(client, 'reconnected');
    server.last().ws.close(4010, 'rejoin required');
    await reconnected;
    expect(server.last().frames[0].join.token).toBe('jwt-fresh-2');
    expect(tokenProvider).toHaveBeenCalledTimes(2);
    expect(seen).toEqual(['reconnecting', 'reconnected:resumed', 'reconnecting', 'reconnected:rejoined', 'reconnecting', 'reconnected:rejoined']);
  });

  it('retries a tokenProvider that fails, and gives up on a token the server refuses', async () => {
    server = await FakeServer.start(standard({ resume: () => ({ error: { code: 'SESSION_EXPIRED', message: 'gone' } }) }));
    let calls = 0;
    const tokenProvider = vi.fn(async () => {
      if (++calls === 1) throw new Error('backend unreachable');
      return 'jwt-fresh';
    });
    client = new SignalingClient({ ...fast, url: server.url, token: 'jwt', tokenProvider });
    await client.connect();
    const reconnected = next(client, 'reconnected');
    client.dropSocket();
    await reconnected;
    expect(tokenProvider).toHaveBeenCalledTimes(2);
    expect(server.last().frames[0].join.token).toBe('jwt-fresh');
    // Now the server refuses what the provider gives: over for good, not retried forever.
    server.answer = (r) => ({ response: { id: r.id, error: { code: r.resume ? 'SESSION_EXPIRED' : 'TOKEN_EXPIRED', message: 'no' } } });
    const disconnected = next<[{ reason: string }]>(client, 'disconnected');
    client.dropSocket();
    expect((await disconnected)[0]).toMatchObject({ reason: 'unauthenticated' });
    expect(tokenProvider).toHaveBeenCalledTimes(3);
  });

  it('joins again when the server requires it (4010)', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 'jwt' });
    const seen = events(client);
    await client.connect();
    const reconnected = next(client, 'reconnected');
    const conn = server.last();
    conn.ws.send(JSON.stringify({ notification: { rejoinRequired: { reason: 'node_gone' } } }));
    conn.ws.close(4010, 'rejoin required');
    await reconnected;
    expect(server.firstMethods()).toEqual(['join', 'join']);
    expect(seen).toEqual(['reconnecting', 'reconnected:rejoined']);
  });

  it('ends the session and joins again when restoring media fails for another reason than the connection', async () => {
    server = await FakeServer.start();
    let calls = 0;
    const restore = vi.fn(async (_response: unknown, how: string) => {
      calls++;
      if (how === 'resumed') throw new GatewayError('NOT_FOUND', 'no such transport');
    });
    client = new SignalingClient({ ...fast, url: server.url, token: 'jwt', restore });
    await client.connect();
    const reconnected = next<[{ resumed: boolean }]>(client, 'reconnected');
    client.dropSocket();
    expect((await reconnected)[0]).toEqual({ resumed: false });
    expect(server.firstMethods()).toEqual(['join', 'resume', 'join']);
    // The half-restored session was left, so nobody keeps a ghost of it.
    expect(server.conns[1]!.frames.map((f) => Object.keys(f).find((k) => k !== 'id'))).toContain('leave');
    expect(calls).toBe(3);
  });

  it.each([
    [4000, 'left'],
    [4001, 'unauthenticated'],
    [4004, 'replaced'],
    [4005, 'removed'],
  ])('does not reconnect after close %i', async (code, reason) => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    const seen = events(client);
    await client.connect();
    const disconnected = next<[{ reason: string; code: number }]>(client, 'disconnected');
    server.last().ws.close(code, 'bye');
    expect((await disconnected)[0]).toMatchObject({ reason, code });
    await new Promise((r) => setTimeout(r, 100));
    expect(server.conns).toHaveLength(1);
    expect(seen).toEqual(['disconnected']);
    expect(client.state).toBe('disconnected');
  });

  it('gives up after the reconnection window and reports disconnected', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't', reconnectGiveUpAfterMs: 400 });
    const seen = events(client);
    await client.connect();
    const disconnected = next<[{ reason: string; code: number; error?: GatewayError }]>(client, 'disconnected');
    const started = Date.now();
    await server.stop();
    server = undefined;
    const [info] = await disconnected;
    expect(info.reason).toBe('reconnect_failed');
    expect(info.error?.code).toBe('UNAVAILABLE');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(seen).toEqual(['reconnecting', 'disconnected']);
    await expect(client.request('ping', { clientTimeMs: 0 })).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
  });

  it('gives up when a rejoin is refused', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    await client.connect();
    server.answer = (r) => ({ response: { id: r.id, error: { code: r.resume ? 'SESSION_EXPIRED' : 'TOKEN_EXPIRED', message: 'no' } } });
    const disconnected = next<[{ reason: string }]>(client, 'disconnected');
    client.dropSocket();
    expect((await disconnected)[0]).toMatchObject({ reason: 'unauthenticated' });
    expect(server.firstMethods()).toEqual(['join', 'resume', 'join']);
  });

  it.each([
    ['a resume refused as REMOVED', (r: Frame) => (r.resume ? 'REMOVED' : 'INTERNAL'), ['join', 'resume']],
    ['a rejoin refused as REMOVED (the session expired, the token was revoked)', (r: Frame) => (r.resume ? 'SESSION_EXPIRED' : 'REMOVED'), ['join', 'resume', 'join']],
    ['a rejoin refused as ROOM_ENDED', (r: Frame) => (r.resume ? 'SESSION_EXPIRED' : 'ROOM_ENDED'), ['join', 'resume', 'join']],
  ])('stops as removed after %s, and does not try again', async (_what, code, methods) => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    await client.connect();
    server.answer = (r) => ({ response: { id: r.id, error: { code: code(r), message: 'no' } } });
    const disconnected = next<[{ reason: string; code: number }]>(client, 'disconnected');
    client.dropSocket();
    expect((await disconnected)[0]).toMatchObject({ reason: 'removed', code: 4005 });
    await new Promise((r) => setTimeout(r, 100));
    expect(server.firstMethods()).toEqual(methods);
  });

  it('leaves mid-reconnection: resumes the detached session only to leave it', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't', reconnectInitialDelayMs: 5_000, reconnectMaxDelayMs: 5_000 });
    const seen = events(client);
    await client.connect();
    const reconnecting = next(client, 'reconnecting');
    client.dropSocket();
    await reconnecting;
    await client.leave();
    const methods = server.conns.map((c) => c.frames.map((f) => Object.keys(f).find((k) => k !== 'id')));
    expect(methods).toEqual([['join'], ['resume', 'leave']]);
    expect(server.conns[1]!.frames[0].resume.resumeToken).toBe('rt-1');
    await new Promise((r) => setTimeout(r, 100));
    expect(server.conns).toHaveLength(2);
    expect(seen).toEqual(['reconnecting', 'disconnected']);
  });

  it('leaves: sends leave, reports it, and does not reconnect', async () => {
    server = await FakeServer.start();
    client = new SignalingClient({ ...fast, url: server.url, token: 't' });
    const seen = events(client);
    await client.connect();
    await client.leave();
    expect(server.last().frames.some((f) => f.leave)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toEqual(['disconnected']);
    expect(server.conns).toHaveLength(1);
  });
});
