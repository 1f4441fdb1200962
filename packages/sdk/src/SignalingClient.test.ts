import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { GatewayError } from './errors.js';
import { HEARTBEAT_LOST, SignalingClient, type WebSocketConstructor } from './SignalingClient.js';

const WS = WebSocket as unknown as WebSocketConstructor;

/** A scripted server: answers each request with what `answer` returns (or nothing). */
async function server(answer: (request: Record<string, any>) => unknown) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const request = JSON.parse(data.toString());
      const reply = answer(request);
      if (reply !== undefined) ws.send(JSON.stringify(reply));
    });
  });
  const port = (wss.address() as { port: number }).port;
  return { url: `ws://127.0.0.1:${port}/ws`, wss };
}

describe('SignalingClient', () => {
  let wss: WebSocketServer | undefined;
  afterEach(() => wss?.close());

  it('matches responses to requests by id, decoding defaults', async () => {
    const s = await server((r) => (r.ping ? { response: { id: r.id, ping: { clientTimeMs: r.ping.clientTimeMs, serverTimeMs: 5 } } } : undefined));
    wss = s.wss;
    const client = await SignalingClient.open(s.url, { WebSocket: WS });
    const [a, b] = await Promise.all([client.request('ping', { clientTimeMs: 1 }), client.request('ping', { clientTimeMs: 2 })]);
    expect(a).toEqual({ clientTimeMs: 1, serverTimeMs: 5 });
    expect(b).toEqual({ clientTimeMs: 2, serverTimeMs: 5 });
    client.close();
  });

  it('rejects an error response with its code', async () => {
    const s = await server((r) => ({ response: { id: r.id, error: { code: 'PERMISSION_DENIED', message: 'no', retryAfterMs: 0 } } }));
    wss = s.wss;
    const client = await SignalingClient.open(s.url, { WebSocket: WS });
    const error = await client.request('createTransport', { direction: 'send' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('PERMISSION_DENIED');
    client.close();
  });

  it('times out a request nobody answers', async () => {
    const s = await server(() => undefined);
    wss = s.wss;
    const client = await SignalingClient.open(s.url, { WebSocket: WS, requestTimeoutMs: 100, heartbeatIntervalMs: 60_000 });
    await expect(client.request('leave', {})).rejects.toMatchObject({ code: 'TIMEOUT' });
    client.close();
  });

  it('delivers notifications', async () => {
    const s = await server(() => undefined);
    wss = s.wss;
    const client = await SignalingClient.open(s.url, { WebSocket: WS });
    const got = new Promise((resolve) => client.on('notification', resolve));
    for (const ws of s.wss.clients) ws.send(JSON.stringify({ notification: { participantLeft: { participantId: 'PA_1', reason: 'left' } } }));
    expect(await got).toEqual({ $case: 'participantLeft', value: { participantId: 'PA_1', reason: 'left' } });
    client.close();
  });

  it('gives up on a socket whose server stops answering heartbeats, failing pending requests', async () => {
    const s = await server(() => undefined);
    wss = s.wss;
    const client = await SignalingClient.open(s.url, { WebSocket: WS, heartbeatIntervalMs: 50, heartbeatTimeoutMs: 200, requestTimeoutMs: 10_000 });
    const pending = client.request('leave', {});
    const closed = new Promise<number>((resolve) => client.on('close', (code) => resolve(code)));
    expect(await closed).toBe(HEARTBEAT_LOST);
    await expect(pending).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect(client.isOpen).toBe(false);
  });

  it('reports the close code the server sends', async () => {
    const s = await server(() => undefined);
    wss = s.wss;
    const client = await SignalingClient.open(s.url, { WebSocket: WS });
    const closed = new Promise<number>((resolve) => client.on('close', (code) => resolve(code)));
    for (const ws of s.wss.clients) ws.close(4010, 'rejoin required');
    expect(await closed).toBe(4010);
  });
});
