import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import { DeskServerMessage, type DeskNotification, type DeskRequest, type DeskResponse, type DeskWelcome } from '@gateway/proto/gateway/routing/v1/desk';
import { backoffDelayMs } from '@gateway/common/backoff';
import { PROTOCOL_VERSION } from '@gateway/common/protocol';
import { Emitter } from '../events.js';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import { Socket, closedError, type SocketProtocol, type WebSocketConstructor } from '../signaling/Socket.js';
import { deskUrl } from '../signaling/urls.js';

type DeskMethod = NonNullable<DeskRequest['method']>;
type DeskMethodName = DeskMethod['$case'];
type DeskParams<K extends DeskMethodName> = Extract<DeskMethod, { $case: K }>['value'];
export type DeskResult = Exclude<NonNullable<DeskResponse['result']>, { $case: 'error' }>;
type DeskResultOf<C extends DeskResult['$case']> = Extract<DeskResult, { $case: C }>['value'];
export type DeskEvent = NonNullable<DeskNotification['event']>;
type DeskSocket = Socket<DeskMethod, DeskResult, DeskEvent>;

const DESK: SocketProtocol<DeskMethod, DeskResult, DeskEvent> = {
  decode: (json) => DeskServerMessage.fromJSON(json),
  ping: () => ({ method: 'ping', params: {} }),
  name: 'desk',
};

/** Who a desk token speaks for; each has its own object (SupportRequest, AgentDesk, SupervisorDesk). */
export type DeskRole = 'end_user' | 'agent' | 'supervisor';

/** Refusals of hello that the same token keeps getting: the desk stops for good. */
const FATAL = [ErrorCode.UNAUTHENTICATED, ErrorCode.TOKEN_EXPIRED, ErrorCode.PERMISSION_DENIED];
/** Closes by the server after which there is nothing to come back to. */
const FINAL_CLOSES = new Set<number>([CloseCode.CLOSE_CODE_UNAUTHENTICATED, CloseCode.CLOSE_CODE_SESSION_REPLACED]);

/** How to reach the contact center's desk, and how patient to be. */
export interface DeskOptions {
  /** The same url as for `Gateway.connect()`: ws(s)://host/ws or the http(s) base; the desk is at `/v1/desk` beside it. */
  url: string;
  /** A desk token from the app's backend; its role (end user, agent, supervisor) decides what the desk may do. */
  token: string;
  /**
   * Gives a fresh desk token whenever the desk connects again after a drop; without it the
   * original token is used again, which fails once it has expired.
   */
  tokenProvider?: () => Promise<string>;
  /** Defaults to globalThis.WebSocket; pass the `ws` package's WebSocket in Node. */
  WebSocket?: WebSocketConstructor;
  /** 15 s by default. */
  requestTimeoutMs?: number;
  /** How long opening a socket may take before the attempt counts as failed (10 s by default). */
  connectTimeoutMs?: number;
  /** How often to ping the server (15 s by default). */
  pingIntervalMs?: number;
  /** No frame from the server for this long and the connection counts as lost (40 s by default). */
  pingTimeoutMs?: number;
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** How long to keep trying after the connection drops before giving up (by default it never gives up). */
  reconnectGiveUpAfterMs?: number;
}

type Timings = Required<Omit<DeskOptions, 'url' | 'token' | 'tokenProvider' | 'WebSocket'>>;
const DEFAULTS: Timings = {
  requestTimeoutMs: 15_000,
  connectTimeoutMs: 10_000,
  pingIntervalMs: 15_000,
  pingTimeoutMs: 40_000,
  reconnectInitialDelayMs: 500,
  reconnectMaxDelayMs: 10_000,
  reconnectGiveUpAfterMs: Number.POSITIVE_INFINITY,
};

type DeskClientEvents = {
  notification: [event: DeskEvent];
  /** Connected again; the restore hook has run. */
  reconnected: [welcome: DeskWelcome];
  /** Gone for good: the token was refused, or reconnecting gave up. Not emitted by close(). */
  failed: [error: GatewayError];
};

/**
 * The desk connection: hello with the token first, then requests answered by id and
 * notifications, a ping every pingIntervalMs. After a drop it connects again with backoff,
 * says hello again and runs `restore` (an end user asks for its contact again) before
 * `reconnected`; a refused token ends it.
 */
export class DeskClient extends Emitter<DeskClientEvents> {
  private readonly timings: Timings;
  private readonly url: string;
  private readonly WebSocketImpl: WebSocketConstructor | undefined;
  private socket: DeskSocket | undefined;
  private state: 'idle' | 'connected' | 'reconnecting' | 'closed' = 'idle';
  private nextId = 1;
  private wake: (() => void) | undefined;

  constructor(
    private readonly options: DeskOptions,
    private readonly role: DeskRole,
    private readonly restore?: (welcome: DeskWelcome) => Promise<void>,
  ) {
    super();
    const timings = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof Timings>) timings[key] = options[key] ?? DEFAULTS[key];
    this.timings = timings;
    this.url = deskUrl(options.url);
    this.WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Opens the socket and says hello; rejects (and closes) if either fails or the token is not of this role. */
  async connect(): Promise<DeskWelcome> {
    if (this.state !== 'idle') throw new GatewayError(ErrorCode.INVALID_STATE, 'connect() was already called');
    try {
      const welcome = await this.hello(await this.openSocket(), this.options.token);
      this.state = 'connected';
      return welcome;
    } catch (error) {
      this.close();
      throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
    }
  }

  /** A request on the current connection; rejects with the server's error code, TIMEOUT or CONNECTION_CLOSED. */
  request<K extends DeskMethodName>(method: K, params: DeskParams<K>): Promise<DeskResult> {
    if (!this.socket) return Promise.reject(closedError());
    return this.socket.request(method, params as never, this.timings.requestTimeoutMs);
  }

  /** A request whose answer must be of one kind (MALFORMED_MESSAGE otherwise). */
  async expect<K extends DeskMethodName, C extends DeskResult['$case']>(method: K, params: DeskParams<K>, answer: C): Promise<DeskResultOf<C>> {
    const result = await this.request(method, params);
    if (result.$case !== answer) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, `expected a ${answer} answer to ${method}, got ${result.$case}`);
    return result.value as DeskResultOf<C>;
  }

  /** Closes for good (idempotent). */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.wake?.();
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, 'closed');
  }

  // ------------------------------------------------------------------------- sockets

  private openSocket(): Promise<DeskSocket> {
    const Impl = this.WebSocketImpl;
    if (!Impl) return Promise.reject(new GatewayError(ErrorCode.UNSUPPORTED, 'no WebSocket implementation available'));
    return Socket.open(
      Impl,
      this.url,
      this.timings.connectTimeoutMs,
      {
        nextId: () => this.nextId++,
        onNotification: (socket, event) => {
          if (socket === this.socket) this.emit('notification', event);
        },
        onClose: (socket, code) => this.onSocketClosed(socket, code),
      },
      DESK,
    );
  }

  /** Says hello as the socket's first frame and makes it the current one. */
  private async hello(socket: DeskSocket, token: string): Promise<DeskWelcome> {
    this.socket?.close(1000, 'replaced by a new connection');
    this.socket = socket;
    const welcome = await this.expect('hello', { token, protocolVersion: PROTOCOL_VERSION }, 'hello');
    if (welcome.role !== this.role) {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, `the desk token is for the ${welcome.role || 'unknown'} role, not ${this.role}`);
    }
    socket.startHeartbeat(this.timings.pingIntervalMs, this.timings.pingTimeoutMs);
    return welcome;
  }

  private onSocketClosed(socket: DeskSocket, code: number): void {
    // While connecting or reconnecting, the failure reaches the attempt through its requests.
    if (socket !== this.socket || this.state !== 'connected') return;
    if (FINAL_CLOSES.has(code)) {
      const unauthenticated = code === CloseCode.CLOSE_CODE_UNAUTHENTICATED;
      this.fail(new GatewayError(unauthenticated ? ErrorCode.UNAUTHENTICATED : ErrorCode.CONNECTION_CLOSED, `the desk connection was closed (${code})`));
      return;
    }
    void this.reconnect(code);
  }

  // ------------------------------------------------------------------------- reconnection

  private async reconnect(closeCode: number): Promise<void> {
    this.state = 'reconnecting';
    let lastError = new GatewayError(ErrorCode.CONNECTION_CLOSED, `the desk connection closed (${closeCode})`);
    const deadline = Date.now() + this.timings.reconnectGiveUpAfterMs;
    const { reconnectInitialDelayMs: initialMs, reconnectMaxDelayMs: maxMs } = this.timings;
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) return this.fail(lastError);
      // Even the first attempt waits a little: when a replica shuts down, its clients spread out.
      await this.sleep(Math.min(left, backoffDelayMs(attempt, { initialMs, maxMs })));
      if (this.state !== 'reconnecting') return;
      let socket: DeskSocket | undefined;
      try {
        const token = await this.freshToken();
        if (this.state !== 'reconnecting') return;
        socket = await this.openSocket();
        if (this.state !== 'reconnecting') return socket.close(1000, 'closed');
        const welcome = await this.hello(socket, token);
        await this.restore?.(welcome);
        if (this.state !== 'reconnecting') return;
        if (!socket.isOpen || socket !== this.socket) throw closedError();
        this.state = 'connected';
        this.emit('reconnected', welcome);
        return;
      } catch (error) {
        if (this.state !== 'reconnecting') return;
        lastError = GatewayError.from(error, ErrorCode.UNAVAILABLE);
        if (hasCode(lastError, ...FATAL)) return this.fail(lastError);
        if (socket && socket === this.socket) socket.close(1000, 'reconnect attempt failed');
        if (hasCode(lastError, ErrorCode.RATE_LIMITED) && lastError.retryAfterMs > 0) await this.sleep(lastError.retryAfterMs);
      }
    }
  }

  private async freshToken(): Promise<string> {
    const provider = this.options.tokenProvider;
    if (!provider) return this.options.token;
    try {
      const token = await provider();
      if (typeof token !== 'string' || !token) throw new Error('the tokenProvider gave no token');
      return token;
    } catch (error) {
      // Not the server refusing a token: the attempt failed, the next one asks again.
      throw new GatewayError(ErrorCode.UNAVAILABLE, `the tokenProvider failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private fail(error: GatewayError): void {
    if (this.state === 'closed') return;
    this.close();
    this.emit('failed', error);
  }
}
