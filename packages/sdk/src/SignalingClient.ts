import {
  ServerMessage,
  type Notification,
  type Request,
  type Response,
} from '@gateway/proto/gateway/signaling/v1/signaling';
import { Emitter } from './emitter.js';
import { GatewayError } from './errors.js';

type Method = NonNullable<Request['method']>;
type MethodName = Method['$case'];
type ParamsOf<M extends MethodName> = Extract<Method, { $case: M }>['value'];
type Result = NonNullable<Response['result']>;
type ResultOf<M extends MethodName> = Extract<Result, { $case: M }>['value'];

/** Close code the SDK uses for a socket it gave up on (no answer to heartbeats). */
export const HEARTBEAT_LOST = 4900;

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

type ClientEvents = {
  notification: [event: NonNullable<Notification['event']>];
  close: [code: number, reason: string];
};

export interface SignalingClientOptions {
  requestTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  WebSocket?: WebSocketConstructor;
}

/**
 * One WebSocket to signaling: numbered requests with promised answers, notifications, and an
 * app-level heartbeat (browsers cannot see WebSocket pings) that notices a dead socket.
 */
export class SignalingClient extends Emitter<ClientEvents> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Result) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private lastAnswerAt = Date.now();
  private closed = false;

  private constructor(
    private readonly ws: WebSocketLike,
    private readonly options: Required<Omit<SignalingClientOptions, 'WebSocket'>>,
  ) {
    super();
    ws.onmessage = (ev) => this.onMessage(String(ev.data));
    ws.onclose = (ev) => this.onClose(ev.code, ev.reason);
    ws.onerror = () => undefined;
    this.heartbeat = setInterval(() => this.beat(), options.heartbeatIntervalMs);
  }

  static open(url: string, options: SignalingClientOptions = {}): Promise<SignalingClient> {
    const Ctor = options.WebSocket ?? (globalThis.WebSocket as unknown as WebSocketConstructor | undefined);
    if (!Ctor) return Promise.reject(new GatewayError('UNAVAILABLE', 'no WebSocket implementation available'));
    const resolved = {
      requestTimeoutMs: options.requestTimeoutMs ?? 15_000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 5_000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 10_000,
    };
    return new Promise((resolve, reject) => {
      const ws = new Ctor(url);
      ws.onopen = () => resolve(new SignalingClient(ws, resolved));
      ws.onerror = () => reject(new GatewayError('UNAVAILABLE', `cannot connect to ${url}`));
      ws.onclose = (ev) => reject(new GatewayError('CONNECTION_CLOSED', `connection closed (${ev.code})`));
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  request<M extends MethodName>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    if (this.closed) return Promise.reject(new GatewayError('CONNECTION_CLOSED', 'the connection is closed'));
    const id = this.nextId++;
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GatewayError('TIMEOUT', `${method} got no answer in time`));
      }, this.options.requestTimeoutMs);
      this.pending.set(id, {
        resolve: (result) => {
          if (result.$case === 'error') reject(new GatewayError(result.value.code, result.value.message, result.value.retryAfterMs));
          else (resolve as (value: unknown) => void)(result.value);
        },
        reject,
        timer,
      });
      this.ws.send(JSON.stringify({ id, [method]: params }));
    });
  }

  private onMessage(text: string): void {
    this.lastAnswerAt = Date.now();
    let message: ServerMessage;
    try {
      message = ServerMessage.fromJSON(JSON.parse(text));
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
      this.emit('notification', m.value.event);
    }
  }

  private beat(): void {
    if (this.closed) return;
    if (Date.now() - this.lastAnswerAt > this.options.heartbeatTimeoutMs) {
      // Nothing heard for too long: the network is gone even if the socket does not know yet.
      this.drop(HEARTBEAT_LOST, 'heartbeat lost');
      return;
    }
    this.request('ping', { clientTimeMs: Date.now() }).catch(() => undefined);
  }

  /** Closes the socket without a leave; the session stays resumable. */
  drop(code = 4901, reason = 'dropped'): void {
    if (this.closed) return;
    try {
      this.ws.close();
    } catch {
      // already closing
    }
    this.onClose(code, reason);
  }

  close(code = 1000, reason = 'bye'): void {
    if (this.closed) return;
    this.ws.close(code, reason);
    this.onClose(code, reason);
  }

  private onClose(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.ws.onmessage = null;
    this.ws.onclose = null;
    for (const [, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(new GatewayError('CONNECTION_CLOSED', `connection closed (${code})`));
    }
    this.pending.clear();
    this.emit('close', code, reason);
  }
}
