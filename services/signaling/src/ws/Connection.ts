import type { WebSocket, RawData } from 'ws';
import { CloseCode, ServerMessage, type JoinResponse, type Notification, type Response } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, SpanKind, inSpan, markFailed, toClientError, type ClientError, type Logger, type Span } from '@gateway/common';
import { RateLimiter } from '../limits/RateLimiter.js';
import type { ParticipantSession, SessionLink } from '../participant/ParticipantSession.js';
import { parseFrame, rawToString } from './frames.js';

/** What a connection asks of the replica, which owns the sessions. */
export interface SessionBroker {
  join(link: SessionLink, token: string, protocolVersion: number): Promise<{ session: ParticipantSession; response: JoinResponse }>;
  resume(link: SessionLink, resumeToken: string, protocolVersion: number): Promise<{ session: ParticipantSession; response: JoinResponse }>;
  /** Serves a request of the joined participant (the request dispatch table). */
  handle(session: ParticipantSession, request: Request): Promise<NonNullable<Response['result']>>;
  /** The socket closed: the session waits for a resume. */
  detach(session: ParticipantSession, link: SessionLink): void;
}

export interface ConnectionOptions {
  maxFrameBytes: number;
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  joinTimeoutMs: number;
  pingIntervalMs: number;
}

export interface ConnectionObserver {
  request(method: string, code: string, durationMs: number): void;
  rateLimited(): void;
}

type Request = NonNullable<ReturnType<typeof parseFrame>['request']>;

/** Consecutive malformed frames after which the client is considered broken. */
const MAX_MALFORMED_IN_A_ROW = 20;

/**
 * One client WebSocket: frames in, responses and notifications out. It parses and rate-limits
 * every frame, keeps the connection alive with pings, and hands requests to the broker: the
 * first join or resume gets it a session, every later request is served for that session.
 */
export class Connection implements SessionLink {
  private session: ParticipantSession | undefined;
  private readonly limiter: RateLimiter;
  private malformedInARow = 0;
  private awaitingPong = 0;
  private readonly pingTimer: NodeJS.Timeout;
  private joinTimer: NodeJS.Timeout | undefined;
  private joining = false;
  /**
   * The room's events for the session while its join or resume is answered: they go out after
   * the answer, whose participant list they bring up to date (a participant who joined meanwhile
   * is announced after the list that lacks them, never before it). Dropped if the join fails.
   */
  private heldNotifications: Array<Notification['event']> | undefined;
  private closedFlag = false;
  /** Requests run one after another, in the order the client sent them. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly ws: WebSocket,
    private readonly broker: SessionBroker,
    private readonly options: ConnectionOptions,
    private readonly observer: ConnectionObserver,
    private readonly log: Logger,
    private readonly onClosed: (connection: Connection) => void,
  ) {
    this.limiter = new RateLimiter(options.rateLimitPerSecond, options.rateLimitBurst);
    ws.on('message', (data, isBinary) => {
      // Whatever a frame does, it ends at this connection: an unexpected failure is answered
      // generically and logged under a reference, never thrown into the socket's event loop.
      try {
        this.onFrame(data, isBinary);
      } catch (error) {
        this.respondError(0, toClientError(error, this.log, { stage: 'frame' }));
      }
    });
    ws.on('pong', () => (this.awaitingPong = 0));
    ws.on('close', () => this.onSocketClosed());
    ws.on('error', (error) => this.log.debug({ err: error }, 'websocket error'));
    this.pingTimer = setInterval(() => this.ping(), options.pingIntervalMs);
    this.joinTimer = setTimeout(() => {
      if (!this.session) this.close(CloseCode.CLOSE_CODE_JOIN_TIMEOUT, 'no join in time');
    }, options.joinTimeoutMs);
  }

  get participantId(): string | undefined {
    return this.session?.participantId;
  }

  private ping(): void {
    // Two pings without a pong: the peer is gone without a close (network cut).
    if (this.awaitingPong >= 2) {
      this.log.info({ participantId: this.participantId }, 'connection missed two pongs; terminating');
      this.ws.terminate();
      return;
    }
    this.awaitingPong++;
    this.ws.ping();
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.closedFlag) return;
    const wait = this.limiter.take();
    if (wait > 0) {
      this.observer.rateLimited();
      if (this.limiter.abusive()) {
        this.close(CloseCode.CLOSE_CODE_RATE_LIMITED, 'rate limit exceeded');
        return;
      }
      const id = peekId(data);
      this.respondError(id, { code: ErrorCode.RATE_LIMITED, message: 'too many requests; slow down', retryAfterMs: wait });
      return;
    }
    const text = isBinary ? undefined : rawToString(data);
    const parsed = text === undefined ? { id: 0, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'frames must be JSON text') } : parseFrame(text, this.options.maxFrameBytes);
    if (parsed.error || !parsed.request) {
      const error = parsed.error!;
      this.observer.request('invalid', error.code, 0);
      // Where a frame failed (a path and a rule, never a value): what a client developer needs.
      this.log.debug({ participantId: this.participantId, code: error.code, reason: error.message }, 'frame refused');
      this.respondError(parsed.id, { code: error.code, message: error.message });
      if (++this.malformedInARow > MAX_MALFORMED_IN_A_ROW) this.close(CloseCode.CLOSE_CODE_PROTOCOL_VIOLATION, 'too many malformed frames');
      return;
    }
    this.malformedInARow = 0;
    const { id, request } = parsed;
    this.queue = this.queue.then(() => this.run(id, request)).catch((error: unknown) => this.respondError(id, toClientError(error, this.log, { method: request.$case })));
  }

  private run(id: number, request: Request): Promise<void> {
    if (this.closedFlag) return Promise.resolve();
    // Pings are the heartbeat: a trace each would be noise.
    if (request.$case === 'ping') return this.serve(id, request);
    // Each request starts a trace: a join's covers placement, the SFU and everything it sets off
    // over gRPC and NATS.
    const attributes = { 'rpc.system': 'gateway-signaling', 'rpc.service': 'gateway.signaling.v1', 'rpc.method': request.$case, ...this.spanAttributes() };
    return inSpan(`gateway.signaling.v1/${request.$case}`, { kind: SpanKind.SERVER, root: true, attributes }, (span) => this.serve(id, request, span));
  }

  /** Ids only: the session's tenant, room and participant. */
  private spanAttributes(): Record<string, string> {
    if (!this.session) return {};
    return { 'gateway.tenant': this.session.tenant, 'gateway.room': this.session.room, 'gateway.participant_id': this.session.participantId };
  }

  private async serve(id: number, request: Request, span?: Span): Promise<void> {
    const started = performance.now();
    // A second join on a connection that has a session is refused: its events are not held.
    const holding = (request.$case === 'join' || request.$case === 'resume') && !this.session && !this.joining;
    try {
      let result: NonNullable<Response['result']>;
      if (request.$case === 'join' || request.$case === 'resume') {
        if (holding) this.heldNotifications = [];
        result = await this.attach(request);
        span?.setAttributes(this.spanAttributes());
      } else if (!this.session) {
        throw new GatewayError(ErrorCode.NOT_JOINED, 'join or resume first');
      } else {
        result = await this.broker.handle(this.session, request);
      }
      this.respond(id, result);
      if (holding) this.releaseNotifications();
      this.observer.request(request.$case, 'OK', performance.now() - started);
      if (request.$case === 'leave') this.close(CloseCode.CLOSE_CODE_LEFT, 'left');
    } catch (error) {
      if (holding) this.heldNotifications = undefined;
      const gatewayError = GatewayError.from(error);
      if (span) markFailed(span, gatewayError);
      this.observer.request(request.$case, gatewayError.code, performance.now() - started);
      this.respondError(id, toClientError(gatewayError, this.log, { method: request.$case, participantId: this.participantId }));
      const authFailure = gatewayError.code === ErrorCode.UNAUTHENTICATED || gatewayError.code === ErrorCode.TOKEN_EXPIRED;
      if ((request.$case === 'join' || request.$case === 'resume') && authFailure) {
        this.close(CloseCode.CLOSE_CODE_UNAUTHENTICATED, gatewayError.code);
      } else if ((request.$case === 'join' || request.$case === 'resume') && (gatewayError.code === ErrorCode.REMOVED || gatewayError.code === ErrorCode.ROOM_ENDED)) {
        this.close(CloseCode.CLOSE_CODE_REMOVED, gatewayError.code);
      }
    }
  }

  private async attach(request: { $case: 'join'; value: { token: string; protocolVersion: number } } | { $case: 'resume'; value: { resumeToken: string; protocolVersion: number } }) {
    if (this.session || this.joining) throw new GatewayError(ErrorCode.ALREADY_JOINED, 'this connection already holds a session');
    this.joining = true;
    try {
      const { session, response } =
        request.$case === 'join'
          ? await this.broker.join(this, request.value.token, request.value.protocolVersion)
          : await this.broker.resume(this, request.value.resumeToken, request.value.protocolVersion);
      if (this.closedFlag) {
        // The socket went away while joining: the session waits for a resume like any other.
        this.broker.detach(session, this);
      }
      this.session = session;
      clearTimeout(this.joinTimer);
      return request.$case === 'join' ? { $case: 'join' as const, value: response } : { $case: 'resume' as const, value: response };
    } finally {
      this.joining = false;
    }
  }

  notify(event: Notification['event']): void {
    if (this.heldNotifications) this.heldNotifications.push(event);
    else this.send({ message: { $case: 'notification', value: { event } } });
  }

  private releaseNotifications(): void {
    const held = this.heldNotifications;
    this.heldNotifications = undefined;
    for (const event of held ?? []) this.notify(event);
  }

  private respond(id: number, result: Response['result']): void {
    this.send({ message: { $case: 'response', value: { id, result } } });
  }

  private respondError(id: number, error: ClientError): void {
    const retryAfterMs = Math.max(0, Math.min(0xffffffff, Math.round(error.retryAfterMs ?? 0)));
    this.respond(id, { $case: 'error', value: { code: error.code, message: error.message, retryAfterMs } });
  }

  private send(message: ServerMessage): void {
    if (this.closedFlag || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify(ServerMessage.toJSON(message)));
  }

  close(code: CloseCode, reason: string): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.ws.close(code, reason);
    // A peer that never answers the close handshake is cut after a moment.
    setTimeout(() => this.ws.terminate(), 2_000).unref();
    this.cleanUp();
  }

  private onSocketClosed(): void {
    this.closedFlag = true;
    this.cleanUp();
  }

  private cleaned = false;
  private cleanUp(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.joinTimer);
    if (this.session) this.broker.detach(this.session, this);
    this.onClosed(this);
  }
}

/** Best-effort id of a frame that will not be parsed (rate-limited). */
function peekId(data: RawData): number {
  const match = /"id"\s*:\s*(\d{1,10})/.exec(rawToString(data).slice(0, 64));
  return match ? Number(match[1]) : 0;
}
