import { ServerMessage, type Notification, type Request, type Response } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '../errors.js';

type Method = NonNullable<Request['method']>;
export type MethodName = Method['$case'];
export type ParamsOf<M extends MethodName> = Extract<Method, { $case: M }>['value'];
type Result = NonNullable<Response['result']>;
export type ResultOf<M extends MethodName> = Extract<Result, { $case: M }>['value'];
export type NotificationEvent = NonNullable<Notification['event']>;

/** Close codes the SDK puts on sockets it closes itself (4900+ is ours, 4000-4899 the server's). */
export const LocalCloseCode = {
  /** No frame from the server for heartbeatTimeoutMs: the network is gone even if the socket does not know. */
  HEARTBEAT_LOST: 4900,
  /** Dropped on purpose by _debugDropSocket(), as a network cut would. */
  DROPPED: 4901,
} as const;

/** The part of the WebSocket API the client uses; browsers' WebSocket and the `ws` package fit. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: never) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: never) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** How a socket reaches its owner; request ids are numbered by the owner, across its sockets. */
export interface SocketHooks {
  nextId(): number;
  onNotification(socket: Socket, event: NotificationEvent): void;
  onClose(socket: Socket, code: number, reason: string): void;
}

interface Pending {
  resolve(result: Result): void;
  reject(error: GatewayError): void;
  timer: ReturnType<typeof setTimeout>;
}

/** One WebSocket: requests and their answers, notifications, heartbeat. Never reopens. */
export class Socket {
  private readonly pending = new Map<number, Pending>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private lastHeardAt = Date.now();
  private closed = false;
  closeCode: number | undefined;

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly hooks: SocketHooks,
  ) {
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => this.onClosed(ev.code, ev.reason);
    ws.onerror = () => undefined;
  }

  static open(Impl: WebSocketConstructor, url: string, timeoutMs: number, hooks: SocketHooks): Promise<Socket> {
    return new Promise((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = new Impl(url);
      } catch (error) {
        reject(new GatewayError(ErrorCode.UNAVAILABLE, 'cannot open the signaling connection', { cause: error }));
        return;
      }
      const fail = (message: string) => {
        clearTimeout(timer);
        ws.onopen = ws.onclose = null;
        // Keep an error listener: `ws` throws on an error event nobody listens to.
        ws.onerror = () => undefined;
        try {
          ws.close();
        } catch {
          // never opened
        }
        reject(new GatewayError(ErrorCode.UNAVAILABLE, message));
      };
      const timer = setTimeout(() => fail('opening the signaling connection timed out'), timeoutMs);
      ws.onerror = () => fail('cannot open the signaling connection');
      ws.onclose = (ev) => fail(`the signaling connection closed while opening (${ev.code})`);
      ws.onopen = () => {
        clearTimeout(timer);
        ws.onopen = null;
        resolve(new Socket(ws, hooks));
      };
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  request<M extends MethodName>(method: M, params: ParamsOf<M>, timeoutMs: number): Promise<ResultOf<M>> {
    if (this.closed) return Promise.reject(closedError(this.closeCode));
    const id = this.hooks.nextId();
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GatewayError(ErrorCode.TIMEOUT, `no answer to ${method} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (result) => {
          if (result.$case === 'error') {
            const { code, message, retryAfterMs } = result.value;
            reject(new GatewayError(code || ErrorCode.INTERNAL, message, { retryAfterMs }));
          } else if (result.$case !== method) {
            reject(new GatewayError(ErrorCode.MALFORMED_MESSAGE, `expected a ${method} answer, got ${result.$case}`));
          } else {
            (resolve as (value: unknown) => void)(result.value);
          }
        },
        reject,
        timer,
      });
      try {
        this.ws.send(JSON.stringify({ id, [method]: params }));
      } catch (error) {
        // The socket died under us: give up on it, which fails this request too.
        this.close(LocalCloseCode.HEARTBEAT_LOST, error instanceof Error ? error.message.slice(0, 100) : 'send failed');
      }
    });
  }

  startHeartbeat(intervalMs: number, timeoutMs: number): void {
    clearInterval(this.heartbeat);
    this.lastHeardAt = Date.now();
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeardAt > timeoutMs) {
        this.close(LocalCloseCode.HEARTBEAT_LOST, 'heartbeat lost');
        return;
      }
      this.request('ping', { clientTimeMs: Date.now() }, timeoutMs).catch(() => undefined);
    }, intervalMs);
  }

  private onMessage(data: unknown): void {
    if (this.closed) return;
    this.lastHeardAt = Date.now();
    let message: ServerMessage;
    try {
      message = ServerMessage.fromJSON(JSON.parse(String(data)));
    } catch {
      return;
    }
    const m = message.message;
    if (m?.$case === 'response') {
      const entry = this.pending.get(m.value.id);
      if (!entry || !m.value.result) return;
      this.pending.delete(m.value.id);
      clearTimeout(entry.timer);
      entry.resolve(m.value.result);
    } else if (m?.$case === 'notification' && m.value.event) {
      this.hooks.onNotification(this, m.value.event);
    }
  }

  /**
   * Closes at once, without waiting for a closing handshake that a dead network would never
   * finish. The owner hears of it through onClose like of any other close.
   */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws.onmessage = null;
    this.ws.onclose = null;
    this.ws.onerror = () => undefined;
    try {
      this.ws.close(code, reason);
    } catch {
      // already closing
    }
    this.onClosed(code, reason);
  }

  private onClosed(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    clearInterval(this.heartbeat);
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(closedError(code));
    }
    this.pending.clear();
    this.hooks.onClose(this, code, reason);
  }
}

export function closedError(code?: number): GatewayError {
  return new GatewayError(ErrorCode.CONNECTION_CLOSED, code === undefined ? 'not connected' : `the connection closed (${code})`);
}
