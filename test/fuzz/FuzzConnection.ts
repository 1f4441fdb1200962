import WebSocket from 'ws';
import type { KnownIds, Rng } from './generators.js';
import type { FuzzStats } from './fuzzTypes.js';

/** A socket with responses counted and the last known ids of its session. */
export class FuzzConnection {
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
