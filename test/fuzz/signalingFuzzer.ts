import net from 'node:net';
import WebSocket from 'ws';
import { Rng, forgedTokens, nextFrame, splicedResumeTokens, validParams, type KnownIds, type TenantSecret } from './generators.js';

/**
 * A seeded protocol fuzzer for signaling, run against live replicas: many connections, each
 * sending valid, mutated and broken frames of every method (before and after joining), floods,
 * forged join tokens, spliced resume tokens and ids from other rooms, plus HTTP requests to every
 * route. After each batch a fresh client must join and answer within 5 s and /sdk.js must
 * answer 200 on every replica. A forged credential or a foreign id that is accepted is counted
 * as a failure, with what it was.
 */

export interface FuzzTarget {
  /** ws://host:port/ws of each replica. */
  wsUrls: string[];
  /** http://host:port of each replica. */
  httpUrls: string[];
  tenant: TenantSecret;
  /** A second tenant: tokens signed with its key must never pass as the first's. */
  other: TenantSecret;
  mint(request: { room: string; identity: string; role: 'agent' | 'end_user' }): Promise<string>;
  maxFrameBytes: number;
}

export interface FuzzOptions {
  seed: number;
  frames: number;
  httpRequests: number;
  /** Frames per batch; liveness is checked after each. */
  batchFrames?: number;
  /** Connections sending at once. */
  concurrency?: number;
  onBatch?: (stats: FuzzStats) => void | Promise<void>;
}

export interface FuzzStats {
  seed: number;
  frames: number;
  httpRequests: number;
  connections: number;
  batches: number;
  responses: Record<string, number>;
  closes: Record<string, number>;
  http: Record<string, number>;
  /** Credentials (tokens, resume tokens, API keys, URLs) that were accepted though forged. */
  forgedAccepted: string[];
  /** Requests that succeeded with an id of another room. */
  foreignIdsAccepted: string[];
  livenessFailures: string[];
}

const ID_METHODS: Record<string, keyof KnownIds> = {
  connectTransport: 'transportId',
  restartIce: 'transportId',
  getStats: 'transportId',
  pauseProducer: 'producerId',
  resumeProducer: 'producerId',
  closeProducer: 'producerId',
  consume: 'producerId',
  resumeConsumer: 'consumerId',
  pauseConsumer: 'consumerId',
  setPreferredLayers: 'consumerId',
  redactMessage: 'messageId',
  answerSmartAction: 'actionId',
  artifactUrl: 'artifactId',
};

/** A socket with responses counted and the last known ids of its session. */
class FuzzConnection {
  readonly ids: KnownIds = {};
  responses = 0;
  closed: { code: number } | undefined;
  private readonly waiting = new Map<number, (response: Record<string, any>) => void>();
  private readonly opened: Promise<void>;

  constructor(
    readonly ws: WebSocket,
    stats: FuzzStats,
  ) {
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.on('error', () => undefined);
    ws.on('message', (data) => {
      let message: any;
      try {
        message = JSON.parse(data.toString());
      } catch {
        stats.responses.UNPARSABLE_REPLY = (stats.responses.UNPARSABLE_REPLY ?? 0) + 1;
        return;
      }
      const response = message.response;
      if (!response) return;
      this.responses++;
      const code = response.error?.code ?? 'OK';
      stats.responses[code] = (stats.responses[code] ?? 0) + 1;
      this.learn(response);
      this.waiting.get(response.id ?? 0)?.(response);
      this.waiting.delete(response.id ?? 0);
    });
    ws.on('close', (code) => {
      this.closed = { code };
      stats.closes[String(code)] = (stats.closes[String(code)] ?? 0) + 1;
      for (const resolve of this.waiting.values()) resolve({ error: { code: 'CLOSED' } });
      this.waiting.clear();
    });
  }

  static async open(url: string, stats: FuzzStats): Promise<FuzzConnection> {
    const connection = new FuzzConnection(new WebSocket(url, { maxPayload: 16 * 1024 * 1024 }), stats);
    await connection.opened;
    stats.connections++;
    return connection;
  }

  private learn(response: Record<string, any>): void {
    const ids = this.ids;
    if (response.createTransport?.transportId) ids.transportId = response.createTransport.transportId;
    if (response.produce?.producerId) ids.producerId = response.produce.producerId;
    if (response.consume?.consumerId) ids.consumerId = response.consume.consumerId;
    if (response.sendMessage?.messageId) ids.messageId = response.sendMessage.messageId;
    if (response.requestSmartAction?.actionId) ids.actionId = response.requestSmartAction.actionId;
    if (response.join?.participant?.participantId) ids.participantId = response.join.participant.participantId;
  }

  /** Sends a request and waits for its answer (or the socket's end, or `timeoutMs`). */
  request(id: number, method: string, params: unknown, timeoutMs = 5_000): Promise<Record<string, any>> {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return Promise.resolve({ error: { code: 'CLOSED' } });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ error: { code: 'NO_ANSWER' } });
      }, timeoutMs);
      this.waiting.set(id, (response) => {
        clearTimeout(timer);
        resolve(response);
      });
      this.ws.send(JSON.stringify({ id, [method]: params }));
    });
  }

  send(data: string | Buffer): void {
    if (!this.closed && this.ws.readyState === WebSocket.OPEN) this.ws.send(data, { binary: Buffer.isBuffer(data) });
  }

  /** Waits until at most `outstanding` frames are unanswered. */
  async drain(sent: number, outstanding: number, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && this.responses < sent - outstanding && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  }

  end(rng: Rng, nextId: () => number): void {
    const how = rng.int(3);
    if (how === 0) this.send(JSON.stringify({ id: nextId(), leave: {} }));
    if (how === 2) this.ws.terminate();
    else setTimeout(() => this.ws.close(), 50).unref();
  }
}

function emptyStats(seed: number): FuzzStats {
  return { seed, frames: 0, httpRequests: 0, connections: 0, batches: 0, responses: {}, closes: {}, http: {}, forgedAccepted: [], foreignIdsAccepted: [], livenessFailures: [] };
}

export async function fuzzSignaling(target: FuzzTarget, options: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(options.seed);
  const stats = emptyStats(options.seed);
  const batchFrames = options.batchFrames ?? 2_000;
  const concurrency = options.concurrency ?? 6;
  const batches = Math.max(1, Math.ceil(options.frames / batchFrames));
  const httpPerBatch = Math.ceil(options.httpRequests / batches);
  let idCounter = 1;
  const nextId = () => (idCounter = (idCounter % 4_000_000_000) + 1);
  /** Ids seen in sessions, with their room, to try from other rooms. */
  const harvested: Array<{ room: string; ids: KnownIds }> = [];

  for (let batch = 0; batch < batches; batch++) {
    const batchEnd = Math.min(options.frames, stats.frames + batchFrames);
    const liveResumeTokens: Array<{ room: string; token: string }> = [];
    const remainingFrames = () => batchEnd - stats.frames;
    const worker = async (workerRng: Rng) => {
      while (remainingFrames() > 0) {
        const room = `fz-${workerRng.int(8)}`;
        let connection: FuzzConnection;
        try {
          connection = await FuzzConnection.open(workerRng.pick(target.wsUrls), stats);
        } catch {
          stats.livenessFailures.push('a WebSocket could not be opened');
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        const joinToken = await target.mint({ room, identity: `fuzz-${workerRng.int(1e6)}`, role: workerRng.chance(0.5) ? 'agent' : 'end_user' });
        let resumeToken = `demo.${room}.PA_none.secret`;
        if (workerRng.chance(0.7)) {
          const joined = await connection.request(nextId(), 'join', { token: joinToken, protocolVersion: 1 });
          if (joined.join) {
            resumeToken = joined.join.resumeToken;
            liveResumeTokens.push({ room, token: resumeToken });
            // Some ids to work with: transports, a track, a message.
            await connection.request(nextId(), 'createTransport', { direction: 'send' });
            const sent = await connection.request(nextId(), 'produce', validParams(workerRng, 'produce', connection.ids, { join: joinToken, resume: resumeToken }));
            if (sent.produce) await connection.request(nextId(), 'sendMessage', { text: 'hi', clientMessageId: `m${workerRng.int(1e9)}` });
            harvested.push({ room, ids: { ...connection.ids } });
            if (harvested.length > 200) harvested.shift();
          }
        }
        const flood = workerRng.chance(0.05);
        const count = flood ? 300 : 20 + workerRng.int(120);
        let sent = 0;
        for (let i = 0; i < count && !connection.closed && remainingFrames() > 0; i++) {
          const id = nextId();
          // Now and then a request that names an id of another room.
          const foreign = harvested.length > 0 && workerRng.chance(0.08) ? harvested[workerRng.int(harvested.length)]! : undefined;
          if (foreign && foreign.room !== room) {
            const method = workerRng.pick(Object.keys(ID_METHODS));
            const params = validParams(workerRng, method, foreign.ids, { join: joinToken, resume: resumeToken });
            const key = ID_METHODS[method]!;
            if (foreign.ids[key]) {
              const answer = await connection.request(id, method, params, 5_000);
              sent++;
              stats.frames++;
              if (!answer.error) stats.foreignIdsAccepted.push(`${method} with a ${key} of room ${foreign.room} from room ${room}`);
              continue;
            }
          }
          const frame = nextFrame(workerRng, id, connection.ids, { join: joinToken, resume: resumeToken }, target.maxFrameBytes);
          connection.send(frame.data);
          sent++;
          stats.frames++;
          // Keep a few frames in flight, except in a flood.
          if (!flood) await connection.drain(sent, 16);
        }
        await connection.drain(sent, 0, flood ? 2_000 : 5_000);
        connection.end(workerRng, nextId);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(new Rng(options.seed * 7919 + batch * 131 + i))));

    await tryForgeries(rng, target, stats, liveResumeTokens, nextId);
    await fuzzHttp(
      rng,
      target,
      stats,
      httpPerBatch,
      liveResumeTokens.map((t) => t.token),
    );
    await checkLiveness(target, stats, nextId);
    stats.batches++;
    await options.onBatch?.(stats);
  }
  return stats;
}

/** Forged join tokens and spliced resume tokens: each must be refused. */
async function tryForgeries(rng: Rng, target: FuzzTarget, stats: FuzzStats, live: Array<{ room: string; token: string }>, nextId: () => number): Promise<void> {
  const valid = await target.mint({ room: `forge-${rng.int(1e6)}`, identity: 'victim', role: 'end_user' });
  const attempts: Array<{ what: string; method: 'join' | 'resume'; params: Record<string, unknown> }> = forgedTokens(rng, valid, target.tenant, target.other).map((f) => ({
    what: `join token: ${f.what}`,
    method: 'join',
    params: { token: f.token, protocolVersion: 1 },
  }));
  for (let i = 0; i + 1 < live.length && i < 6; i += 2) {
    for (const token of splicedResumeTokens(live[i]!.token, live[i + 1]!.token)) attempts.push({ what: 'spliced resume token', method: 'resume', params: { resumeToken: token } });
  }
  for (const attempt of attempts) {
    let connection: FuzzConnection;
    try {
      connection = await FuzzConnection.open(rng.pick(target.wsUrls), stats);
    } catch {
      stats.livenessFailures.push('a WebSocket could not be opened');
      continue;
    }
    const answer = await connection.request(nextId(), attempt.method, attempt.params);
    stats.frames++;
    if (answer.join || answer.resume) stats.forgedAccepted.push(attempt.what);
    connection.ws.terminate();
  }
}

/** After each batch: every replica lets a fresh client join and answer within 5 s, and serves /sdk.js. */
async function checkLiveness(target: FuzzTarget, stats: FuzzStats, nextId: () => number): Promise<void> {
  for (const [i, url] of target.wsUrls.entries()) {
    try {
      const connection = await FuzzConnection.open(url, stats);
      const token = await target.mint({ room: `live-${Date.now()}`, identity: 'probe', role: 'end_user' });
      const joined = await connection.request(nextId(), 'join', { token, protocolVersion: 1 }, 5_000);
      const pong = joined.join ? await connection.request(nextId(), 'ping', { clientTimeMs: Date.now() }, 5_000) : joined;
      if (!pong.ping) stats.livenessFailures.push(`replica ${i}: ${pong.error?.code ?? 'no pong'}`);
      await connection.request(nextId(), 'leave', {}, 2_000);
      connection.ws.terminate();
    } catch (error) {
      stats.livenessFailures.push(`replica ${i}: ${String(error)}`);
    }
  }
  for (const [i, base] of target.httpUrls.entries()) {
    const status = await fetch(`${base}/sdk.js`, { signal: AbortSignal.timeout(5_000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (status !== 200) stats.livenessFailures.push(`replica ${i}: /sdk.js answered ${status}`);
  }
}

const methods = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH', 'TRACE', 'CONNECT', 'PROPFIND', 'G\u00e9T', ''];

/**
 * HTTP requests to every route of signaling (and arbitrary paths), written byte by byte onto a
 * socket so that anything a client can send is sent: bad methods, targets, headers, lengths and
 * bodies, and a few slow senders. A forged credential that is accepted is a failure.
 */
async function fuzzHttp(rng: Rng, target: FuzzTarget, stats: FuzzStats, count: number, resumeTokens: string[]): Promise<void> {
  const basic = (key: string, secret: string) => `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`;
  const forgedBasic = [
    basic(target.tenant.apiKey, `${target.tenant.apiSecret}x`),
    basic(target.tenant.apiKey, target.other.apiSecret),
    basic(target.other.apiKey, target.tenant.apiSecret),
    basic(`${target.tenant.apiKey}x`, target.tenant.apiSecret),
    basic(target.tenant.apiKey, ''),
    `Basic ${'A'.repeat(rng.int(20_000))}`,
    'Basic',
    `Bearer ${target.tenant.apiSecret}`,
  ];
  const bearer = () =>
    `Bearer ${rng.chance(0.5) && resumeTokens.length > 1 ? (rng.pick(splicedResumeTokens(rng.pick(resumeTokens), rng.pick(resumeTokens))) ?? 'x') : rng.pick(['', 'x', 'a.b.c.d', '...', '\u00ff'])}`;
  // Every request of the batch is drawn first, in order (so a seed gives the same requests), then
  // sent from a few clients at once, each waiting for its answer.
  const specs = Array.from({ length: count }, () => {
    const base = new URL(rng.pick(target.httpUrls));
    const route = rng.int(8);
    const id = rng.pick(['SA_x', 'AT_x', '..', '%2e%2e', 'a'.repeat(65), '\u0000', '%00', 'SA_%E0%A4%A']);
    let method = rng.pick(methods);
    let path = rng.pick([
      '/',
      '/sdk.js',
      '/sdk.js.map',
      '/agent',
      '/end-user',
      '/index.html',
      '/app.css',
      '/ws',
      '/v1/tokens',
      `/v1/smart-actions/${id}/upload`,
      `/v1/artifacts/${id}?token=${rng.pick(['', 'x.y.z', 'eyJhbGciOiJub25lIn0.eyJ0bnQiOiJkZW1vIiwiYXJ0IjoiQVRfeCJ9.'])}`,
    ]);
    if (route === 0)
      path = rng.pick([
        '//a:99999/',
        'http://[',
        '*',
        '/../../../../etc/passwd',
        '/%2e%2e/%2e%2e/etc/passwd',
        `/${'a/'.repeat(3_000)}`,
        `/?${'q='.repeat(5_000)}`,
        '/\u00e9',
        '//sdk.js',
        '/%',
        '/%ZZ',
      ]);
    const headers: string[] = [`Host: ${base.host}`];
    let body: Buffer = Buffer.alloc(0);
    let credential: 'forged-basic' | 'bearer' | 'none' = 'none';
    if (path === '/v1/tokens' || rng.chance(0.2)) {
      method = rng.chance(0.8) ? 'POST' : method;
      headers.push(`Authorization: ${rng.pick(forgedBasic)}`);
      credential = 'forged-basic';
      body = Buffer.from(
        rng.pick([
          JSON.stringify({ room: 'r', identity: 'x', role: 'agent', canRecord: true }),
          '{',
          'null',
          `{"room":${'['.repeat(5_000)}}`,
          JSON.stringify({ room: '../x', identity: '\u0000', role: 'root' }),
        ]),
      );
    } else if (path.includes('/upload')) {
      method = rng.chance(0.8) ? 'POST' : method;
      headers.push(`Authorization: ${bearer()}`);
      credential = 'bearer';
      body = rng.bytes(rng.pick([0, 10, 5_000, 200_000]));
    }
    if (rng.chance(0.2))
      headers.push(
        rng.pick([
          'Content-Length: -1',
          'Content-Length: 99999999999',
          'Content-Length: abc',
          'Transfer-Encoding: chunked',
          'Transfer-Encoding: gzip, chunked',
          'Expect: 100-continue',
          `X-Long: ${'x'.repeat(rng.pick([100, 20_000, 100_000]))}`,
          'Bad Header: x',
          'Connection: upgrade',
          'Upgrade: websocket',
          '\u0000: x',
        ]),
      );
    else headers.push(`Content-Length: ${body.length}`);
    const request = Buffer.concat([Buffer.from(`${method} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
    return { port: Number(base.port), path, credential, authorization: headers.find((h) => h.startsWith('Authorization')), request, slow: rng.chance(0.01) };
  });
  const slow: Promise<void>[] = [];
  const send = async (spec: (typeof specs)[number]) => {
    if (spec.slow && slow.length < 4) {
      slow.push(slowSend(spec.port, spec.request));
      return;
    }
    const answer = await rawRequest(spec.port, spec.request);
    stats.httpRequests++;
    const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 'none';
    stats.http[status] = (stats.http[status] ?? 0) + 1;
    if (spec.credential === 'forged-basic' && spec.path === '/v1/tokens' && status === '200') stats.forgedAccepted.push(`POST /v1/tokens with ${spec.authorization?.slice(0, 40)}`);
    if (spec.credential === 'bearer' && status === '201') stats.forgedAccepted.push(`upload with a forged bearer token on ${spec.path}`);
    if (spec.path.startsWith('/v1/artifacts/') && status === '200') stats.forgedAccepted.push(`artifact download with a forged URL token: ${spec.path.slice(0, 80)}`);
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < specs.length) await send(specs[next++]!);
    }),
  );
  await Promise.all(slow);
}

function rawRequest(port: number, request: Buffer, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const done = () => {
      socket.destroy();
      resolve(answer);
    };
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      // One answer is enough (keep-alive would keep the socket open).
      if (/\r\n\r\n/.test(answer)) setTimeout(done, 20);
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.setTimeout(timeoutMs, done);
    socket.write(request);
  });
}

/** A client that sends its request a few bytes at a time, far slower than any real one. */
function slowSend(port: number, request: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let offset = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || offset >= request.length) {
        clearInterval(timer);
        socket.destroy();
        resolve();
        return;
      }
      socket.write(request.subarray(offset, offset + 2));
      offset += 2;
    }, 250);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(timer);
      resolve();
    });
    // Nobody waits longer than the server's own timeouts.
    setTimeout(() => socket.destroy(), 15_000).unref();
  });
}
