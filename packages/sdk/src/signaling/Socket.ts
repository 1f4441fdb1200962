import { ServerMessage, type Notification, type Request, type Response } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '../errors.js';

type Method = NonNullable<Request['method']>;
export type MethodName = Method['$case'];
export type ParamsOf<M extends MethodName> = Extract<Method, { $case: M }>['value'];
type Result = NonNullable<Response['result']>;
export type ResultOf<M extends MethodName> = Extract<Result, { $case: M }>['value'];
export type NotificationEvent = NonNullable<Notification['event']>;

/** A oneof of the generated protocol: `{ $case, value }`. */
type OneOf = { $case: string; value: unknown };
/** A server frame of a protocol spoken the gateway.signaling.v1 way: a response to a request id, or a notification. */
interface ServerFrame<R extends OneOf, E> {
  message: { $case: 'response'; value: { id: number; result: R | { $case: 'error'; value: ErrorBody } | undefined } } | { $case: 'notification'; value: { event: E | undefined } } | undefined;
}
interface ErrorBody {
  code: string;
  message: string;
  retryAfterMs: number;
}

/**
 * A protocol a Socket speaks: its requests (M, `{"id": n, "<method>": {...}}`), the results of
 * its responses other than errors (R) and its notifications (E), decoded by `decode` from JSON.
 */
export interface SocketProtocol<M extends OneOf, R extends OneOf, E> {
  decode(json: unknown): ServerFrame<R, E>;
  /** The request the heartbeat sends. */
  ping(): { method: M['$case']; params: M['value'] };
  /** A readable name for messages ("signaling", "desk"). */
  name: string;
}

/** gateway.signaling.v1, the room protocol. */
export const SIGNALING: SocketProtocol<Method, Exclude<Result, { $case: 'error' }>, NotificationEvent> = {
  decode: (json) => ServerMessage.fromJSON(json),
  ping: () => ({ method: 'ping', params: { clientTimeMs: Date.now() } }),
  name: 'signaling',
};

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
export interface SocketHooks<S, E> {
  nextId(): number;
  onNotification(socket: S, event: E): void;
  onClose(socket: S, code: number, reason: string): void;
}

interface Pending<R> {
  resolve(result: R): void;
  reject(error: GatewayError): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * One WebSocket: requests and their answers, notifications, heartbeat. Never reopens. Speaks
 * the room protocol (SIGNALING, the default types), or another of the same shape (the desk's).
 */
export class Socket<M extends OneOf = Method, R extends OneOf = Exclude<Result, { $case: 'error' }>, E = NotificationEvent> {
  private readonly pending = new Map<number, Pending<R>>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private lastHeardAt = Date.now();
  private closed = false;
  closeCode: number | undefined;

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly hooks: SocketHooks<Socket<M, R, E>, E>,
    private readonly protocol: SocketProtocol<M, R, E>,
  ) {
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = (ev) => this.onClosed(ev.code, ev.reason);
    ws.onerror = () => undefined;
  }

  static open<M extends OneOf, R extends OneOf, E>(
    Impl: WebSocketConstructor,
    url: string,
    timeoutMs: number,
    hooks: SocketHooks<Socket<M, R, E>, E>,
    protocol: SocketProtocol<M, R, E>,
  ): Promise<Socket<M, R, E>> {
    const name = protocol.name;
    return new Promise((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = new Impl(url);
      } catch (error) {
        reject(new GatewayError(ErrorCode.UNAVAILABLE, `cannot open the ${name} connection`, { cause: error }));
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
      const timer = setTimeout(() => fail(`opening the ${name} connection timed out`), timeoutMs);
      ws.onerror = () => fail(`cannot open the ${name} connection`);
      ws.onclose = (ev) => fail(`the ${name} connection closed while opening (${ev.code})`);
      ws.onopen = () => {
        clearTimeout(timer);
        ws.onopen = null;
        resolve(new Socket(ws, hooks, protocol));
      };
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /**
   * Sends a request and resolves with its result; rejects with the server's error (its code),
   * TIMEOUT or CONNECTION_CLOSED.
   */
  request<K extends M['$case']>(method: K, params: Extract<M, { $case: K }>['value'], timeoutMs: number): Promise<R> {
    if (this.closed) return Promise.reject(closedError(this.closeCode));
    const id = this.hooks.nextId();
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GatewayError(ErrorCode.TIMEOUT, `no answer to ${method} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
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
      const { method, params } = this.protocol.ping();
      this.request(method, params as Extract<M, { $case: typeof method }>['value'], timeoutMs).catch(() => undefined);
    }, intervalMs);
  }

  private onMessage(data: unknown): void {
    if (this.closed) return;
    this.lastHeardAt = Date.now();
    let message: ServerFrame<R, E>;
    try {
      message = this.protocol.decode(JSON.parse(String(data)));
    } catch {
      return;
    }
    const m = message.message;
    if (m?.$case === 'response') {
      const entry = this.pending.get(m.value.id);
      const result = m.value.result;
      if (!entry || !result) return;
      this.pending.delete(m.value.id);
      clearTimeout(entry.timer);
      if (result.$case === 'error') {
        const { code, message, retryAfterMs } = result.value as ErrorBody;
        entry.reject(new GatewayError(code || ErrorCode.INTERNAL, message, { retryAfterMs }));
      } else {
        entry.resolve(result as R);
      }
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

/** A room protocol request on a socket, resolving with the result of the method's own kind. */
export async function call<K extends MethodName>(socket: Socket, method: K, params: ParamsOf<K>, timeoutMs: number): Promise<ResultOf<K>> {
  // (ParamsOf<K> is that same type; TypeScript cannot see it through the generic K.)
  const result = await socket.request(method, params as never, timeoutMs);
  if (result.$case !== method) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, `expected a ${method} answer, got ${result.$case}`);
  return result.value as ResultOf<K>;
}

export function closedError(code?: number): GatewayError {
  return new GatewayError(ErrorCode.CONNECTION_CLOSED, code === undefined ? 'not connected' : `the connection closed (${code})`);
}
