import { CloseCode, type JoinResponse } from '@gateway/proto/gateway/signaling/v1/signaling';
import { Emitter } from '../events.js';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import { LocalCloseCode, SIGNALING, Socket, call, closedError, type MethodName, type NotificationEvent, type ParamsOf, type ResultOf, type WebSocketConstructor } from './Socket.js';
import { PROTOCOL_VERSION } from '@gateway/common/protocol';
import { signalingUrl } from './urls.js';
import { backoffDelayMs } from '@gateway/common/backoff';

/** Closes after which there is nothing to come back to. */
const FINAL_CLOSES: ReadonlyMap<number, DisconnectReason> = new Map([
  [CloseCode.CLOSE_CODE_LEFT, 'left'],
  [CloseCode.CLOSE_CODE_UNAUTHENTICATED, 'unauthenticated'],
  [CloseCode.CLOSE_CODE_SESSION_REPLACED, 'replaced'],
  [CloseCode.CLOSE_CODE_REMOVED, 'removed'],
]);
/** Resume answers meaning the session is gone for good; a fresh join may still work. */
const RESUME_IMPOSSIBLE = [ErrorCode.SESSION_EXPIRED, ErrorCode.NOT_FOUND, ErrorCode.UNAUTHENTICATED];
/** Join answers that the same token will keep getting. */
const JOIN_REFUSED = [ErrorCode.UNAUTHENTICATED, ErrorCode.TOKEN_EXPIRED, ErrorCode.PERMISSION_DENIED, ErrorCode.BAD_REQUEST];
/** Failures of the connection itself, as opposed to answers from the server. */
const CONNECTION_FAILURES = [ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE];

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'disconnected';
/** `removed`: the customer's backend removed the participant or ended the room (close 4005, or REMOVED / ROOM_ENDED on reconnecting). */
export type DisconnectReason = 'left' | 'unauthenticated' | 'replaced' | 'removed' | 'rejected' | 'reconnect_failed';
export interface DisconnectInfo {
  reason: DisconnectReason;
  /** The WebSocket close code that ended it (the last one seen, when reconnection gave up). */
  code: number;
  error?: GatewayError;
}

/**
 * Brings media state in line with a session that was just joined, resumed or rejoined; runs
 * on the new socket before the client reports itself connected again. A rejection with a
 * connection failure is retried; any other rejection makes the next attempt a full rejoin.
 */
export type SessionRestorer = (response: JoinResponse, how: 'joined' | 'resumed' | 'rejoined') => Promise<void>;

/** How to reach signaling and how patient to be: what an app gives connect() (ConnectOptions). */
export interface ConnectionOptions {
  /** ws(s)://host/ws, or the http(s) base of the server (then /ws is used). */
  url: string;
  /** The join token; kept for a full rejoin when the session cannot be resumed (unless `tokenProvider` is given). */
  token: string;
  /**
   * Gives a fresh join token (from the app's backend) whenever the client must join again
   * because the session could not be resumed; without it the original token is used again,
   * which fails once it has expired. A resume never needs it: it rests on the session's own
   * credential. Rejecting counts as a failed attempt (retried with backoff until
   * reconnectGiveUpAfterMs).
   */
  tokenProvider?: () => Promise<string>;
  /** Defaults to globalThis.WebSocket; pass the `ws` package's WebSocket in Node. */
  WebSocket?: WebSocketConstructor;
  requestTimeoutMs?: number;
  /** How long opening a socket may take before the attempt counts as failed. */
  connectTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** How long to keep trying after the connection drops before giving up. */
  reconnectGiveUpAfterMs?: number;
}

export interface SignalingClientOptions extends ConnectionOptions {
  restore?: SessionRestorer;
}

type Timings = Required<Omit<ConnectionOptions, 'url' | 'token' | 'tokenProvider' | 'WebSocket'>>;
const DEFAULTS: Timings = {
  requestTimeoutMs: 15_000,
  connectTimeoutMs: 10_000,
  heartbeatIntervalMs: 5_000,
  heartbeatTimeoutMs: 10_000,
  reconnectInitialDelayMs: 250,
  reconnectMaxDelayMs: 5_000,
  reconnectGiveUpAfterMs: 60_000,
};

export type SignalingEvents = {
  notification: [event: NotificationEvent];
  stateChanged: [state: ConnectionState];
  reconnecting: [];
  reconnected: [info: { resumed: boolean }];
  disconnected: [info: DisconnectInfo];
};

/**
 * The session's link to signaling, across sockets: requests and notifications go through the
 * current Socket (which also keeps the heartbeat); this decides what happens when one closes.
 * After an unexpected close it reconnects with backoff and resumes the session (`resume` is
 * the first frame on the new socket); when the session cannot be resumed, or the server asks
 * for it, it joins again with a fresh token from `tokenProvider`, or else the original one. Either way the `restore` hook rebuilds media
 * state before `reconnected` is emitted.
 */
export class SignalingClient extends Emitter<SignalingEvents> {
  private readonly timings: Timings;
  private readonly url: string;
  private readonly WebSocketImpl: WebSocketConstructor | undefined;
  private socket: Socket | undefined;
  private stateValue: ConnectionState = 'idle';
  private resumeToken = '';
  private nextId = 1;
  /** Set by a rejoinRequired notification (the 4010 close follows, but a proxy may eat its code). */
  private rejoinRequired = false;
  private wake: (() => void) | undefined;
  private readonly waiters = new Set<{ resolve: () => void; reject: (e: GatewayError) => void }>();

  constructor(private readonly options: SignalingClientOptions) {
    super();
    const timings = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS) as Array<keyof Timings>) timings[key] = options[key] ?? DEFAULTS[key];
    this.timings = timings;
    this.url = signalingUrl(options.url);
    this.WebSocketImpl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The session's resume token (from the latest join or resume), which also authenticates its HTTP uploads. */
  get sessionToken(): string {
    return this.resumeToken;
  }

  /** Opens the socket, joins with the token and runs `restore`; rejects if any of it fails. */
  async connect(): Promise<JoinResponse> {
    if (this.stateValue !== 'idle') throw new GatewayError(ErrorCode.BAD_REQUEST, 'connect() was already called');
    this.setState('connecting');
    try {
      const socket = await this.openSocket();
      const response = await this.handshake(socket, 'join');
      await this.options.restore?.(response, 'joined');
      this.assertStillOpen(socket);
      this.setState('connected');
      return response;
    } catch (error) {
      this.socket?.close(1000, 'join failed');
      this.socket = undefined;
      this.setState('disconnected');
      throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
    }
  }

  /** Sends a request on the current socket; rejects with the server's error code, TIMEOUT or CONNECTION_CLOSED. */
  request<M extends MethodName>(method: M, params: ParamsOf<M>, timeoutMs = this.timings.requestTimeoutMs): Promise<ResultOf<M>> {
    if (!this.socket) return Promise.reject(closedError());
    return call(this.socket, method, params, timeoutMs);
  }

  /** Resolves once connected (at once if already); rejects if the client disconnects for good. */
  whenConnected(): Promise<void> {
    if (this.stateValue === 'connected') return Promise.resolve();
    if (this.stateValue === 'disconnected') return Promise.reject(new GatewayError(ErrorCode.ROOM_CLOSED, 'disconnected'));
    return new Promise((resolve, reject) => this.waiters.add({ resolve, reject }));
  }

  /** Leaves the session for good: a leave request, then the socket is closed. */
  async leave(): Promise<void> {
    if (this.stateValue === 'disconnected') return;
    const joined = this.stateValue === 'connected';
    const socket = this.socket;
    // Stop any (re)connection first, so the close below is not taken for a network failure.
    this.finish({ reason: 'left', code: CloseCode.CLOSE_CODE_LEFT }, false);
    if (socket && joined) await socket.request('leave', {}, 2_000).catch(() => undefined);
    socket?.close(1000, 'left');
    // Mid-reconnection the server still holds the session for its resume window: end it there
    // too, so the others see us go now rather than when the window runs out.
    if (!joined && this.resumeToken) await this.leaveDetachedSession();
    this.emit('disconnected', { reason: 'left', code: CloseCode.CLOSE_CODE_LEFT });
  }

  /** Best effort: resume the detached session on a short-lived socket only to leave it. */
  private async leaveDetachedSession(): Promise<void> {
    const timeout = 2_000;
    let socket: Socket | undefined;
    try {
      socket = await this.openSocket();
      await call(socket, 'resume', { resumeToken: this.resumeToken, protocolVersion: PROTOCOL_VERSION }, timeout);
      await socket.request('leave', {}, timeout);
    } catch {
      // Unreachable or already expired: the server's resume window ends the session anyway.
    } finally {
      socket?.close(1000, 'left');
    }
  }

  /** Closes the socket abruptly as a network cut would (no leave): the session stays resumable. */
  dropSocket(): void {
    this.socket?.close(LocalCloseCode.DROPPED, 'dropped');
  }

  // ------------------------------------------------------------------------- sockets

  private openSocket(): Promise<Socket> {
    const Impl = this.WebSocketImpl;
    if (!Impl) return Promise.reject(new GatewayError(ErrorCode.UNSUPPORTED, 'no WebSocket implementation available'));
    return Socket.open(
      Impl,
      this.url,
      this.timings.connectTimeoutMs,
      {
        nextId: () => this.nextId++,
        onNotification: (socket, event) => this.onNotification(socket, event),
        onClose: (socket, code, reason) => this.onSocketClosed(socket, code, reason),
      },
      SIGNALING,
    );
  }

  /**
   * Sends join or resume as the first frame of a socket and makes it the current one on success.
   * `token` is the join token for a join (the original one unless a fresh one was fetched).
   */
  private async handshake(socket: Socket, method: 'join' | 'resume', token = this.options.token): Promise<JoinResponse> {
    this.socket?.close(1000, 'replaced by a new connection');
    this.socket = socket;
    const timeout = this.timings.requestTimeoutMs;
    const response =
      method === 'join'
        ? await call(socket, 'join', { token, protocolVersion: PROTOCOL_VERSION }, timeout)
        : await call(socket, 'resume', { resumeToken: this.resumeToken, protocolVersion: PROTOCOL_VERSION }, timeout);
    this.resumeToken = response.resumeToken;
    this.rejoinRequired = false;
    socket.startHeartbeat(this.timings.heartbeatIntervalMs, this.timings.heartbeatTimeoutMs);
    return response;
  }

  private onNotification(socket: Socket, event: NotificationEvent): void {
    if (socket !== this.socket) return;
    if (event.$case === 'rejoinRequired') this.rejoinRequired = true;
    this.emit('notification', event);
  }

  private onSocketClosed(socket: Socket, code: number, reason: string): void {
    if (socket !== this.socket) return;
    // While connecting or reconnecting, the failure reaches the attempt through its requests.
    if (this.stateValue !== 'connected') return;
    const final = FINAL_CLOSES.get(code);
    if (final) {
      this.finish({ reason: final, code });
      return;
    }
    void this.reconnect(code, reason);
  }

  private assertStillOpen(socket: Socket): void {
    if (!socket.isOpen || socket !== this.socket) throw closedError();
  }

  // ------------------------------------------------------------------------- reconnection

  private async reconnect(closeCode: number, closeReason: string): Promise<void> {
    this.setState('reconnecting');
    this.emit('reconnecting');
    let mode: 'resume' | 'rejoin' = closeCode === CloseCode.CLOSE_CODE_REJOIN_REQUIRED || this.rejoinRequired ? 'rejoin' : 'resume';
    let lastCode = closeCode;
    let lastError = new GatewayError(ErrorCode.CONNECTION_CLOSED, `connection closed (${closeCode} ${closeReason})`);
    const deadline = Date.now() + this.timings.reconnectGiveUpAfterMs;
    const giveUpInfo = () => ({ reason: 'reconnect_failed' as const, code: lastCode, error: lastError });
    const { reconnectInitialDelayMs: initial, reconnectMaxDelayMs: max } = this.timings;

    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) return this.finish(giveUpInfo());
      // Even the first attempt waits a little: when a replica shuts down, its clients spread out.
      await this.sleep(Math.min(left, backoffDelayMs(attempt, { initialMs: initial, maxMs: max })));
      if (this.stateValue !== 'reconnecting') return;
      if (Date.now() >= deadline) return this.finish(giveUpInfo());

      let socket: Socket | undefined;
      let restoring = false;
      try {
        // A fresh join token is fetched before the socket opens (the server wants join or resume soon after).
        let token = mode === 'rejoin' ? await this.freshToken() : undefined;
        if (this.stateValue !== 'reconnecting') return;
        socket = await this.openSocket();
        if (this.stateValue !== 'reconnecting') return socket.close(1000, 'closed');
        let response: JoinResponse | undefined;
        if (mode === 'resume') {
          try {
            response = await this.handshake(socket, 'resume');
          } catch (error) {
            if (!hasCode(error, ...RESUME_IMPOSSIBLE)) throw error;
            // The session is gone: join afresh, on a fresh connection.
            mode = 'rejoin';
            socket.close(1000, 'resume failed');
            token = await this.freshToken();
            if (this.stateValue !== 'reconnecting') return;
            socket = await this.openSocket();
            if (this.stateValue !== 'reconnecting') return socket.close(1000, 'closed');
          }
        }
        response ??= await this.handshake(socket, 'join', token);
        restoring = true;
        await this.options.restore?.(response, mode === 'resume' ? 'resumed' : 'rejoined');
        if (this.stateValue !== 'reconnecting') return;
        this.assertStillOpen(socket);
        this.setState('connected');
        this.emit('reconnected', { resumed: mode === 'resume' });
        return;
      } catch (error) {
        if (this.stateValue !== 'reconnecting') return;
        lastError = GatewayError.from(error, ErrorCode.UNAVAILABLE);
        lastCode = socket?.closeCode ?? lastCode;
        // Removed by the customer's backend, or its room ended: neither a resume nor the token brings it back.
        if (hasCode(lastError, ErrorCode.REMOVED, ErrorCode.ROOM_ENDED)) return this.finish({ reason: 'removed', code: CloseCode.CLOSE_CODE_REMOVED, error: lastError });
        if (!restoring && mode === 'rejoin' && hasCode(lastError, ...JOIN_REFUSED)) {
          return this.finish({ reason: lastError.code === ErrorCode.PERMISSION_DENIED ? 'rejected' : 'unauthenticated', code: lastCode, error: lastError });
        }
        if (restoring && !hasCode(lastError, ...CONNECTION_FAILURES)) {
          // Media could not be brought back in this session: end it and start a new one, so
          // the others do not keep a ghost of us for the resume window.
          if (socket?.isOpen) await socket.request('leave', {}, 2_000).catch(() => undefined);
          mode = 'rejoin';
        }
        if (socket && socket === this.socket) socket.close(1000, 'reconnect attempt failed');
        if (hasCode(lastError, ErrorCode.RATE_LIMITED) && lastError.retryAfterMs > 0) await this.sleep(lastError.retryAfterMs);
      }
    }
  }

  /** The join token for joining again: a fresh one from the app's tokenProvider, or the original. */
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

  /** Ends the client for good. */
  private finish(info: DisconnectInfo, announce = true): void {
    if (this.stateValue === 'disconnected') return;
    this.setState('disconnected');
    this.wake?.();
    const socket = this.socket;
    this.socket = undefined;
    if (announce) socket?.close(1000, info.reason);
    if (announce) this.emit('disconnected', info);
  }

  private setState(state: ConnectionState): void {
    if (this.stateValue === state) return;
    this.stateValue = state;
    if (state === 'connected' || state === 'disconnected') {
      for (const waiter of this.waiters) {
        if (state === 'connected') waiter.resolve();
        else waiter.reject(new GatewayError(ErrorCode.ROOM_CLOSED, 'disconnected'));
      }
      this.waiters.clear();
    }
    this.emit('stateChanged', state);
  }
}
