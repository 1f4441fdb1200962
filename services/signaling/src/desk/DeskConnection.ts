import type { WebSocket, RawData } from 'ws';
import type { MsgHdrs } from '@nats-io/transport-node';
import { contextFromNatsHeaders, ErrorCode, GatewayError, inSpan, PROTOCOL_VERSION, SpanKind, subjects, toClientError, type ClientError, type Logger, type TenantCredentials } from '@gateway/common';
import { DeskServerMessage, type DeskJoin, type DeskNotification, type DeskResponse } from '@gateway/proto/gateway/routing/v1/desk';
import { AgentEvent, AgentStatus, Channel, ContactPhase, ContactState, QueueView, type Reply } from '@gateway/proto/gateway/routing/v1/routing';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import { mintJoinToken, verifyDeskToken, type DeskGrant, type GrantedSource, type MintRequest } from '../auth/tokens.js';
import { RateLimiter } from '../limits/RateLimiter.js';
import { parseFrameWith, rawToString } from '../ws/frames.js';
import type { DeskHub } from './DeskHub.js';
import { deskMethodRoles, deskRequestSchemas } from './requests.js';
import type { RoutingClient } from './RoutingClient.js';

export interface DeskOptions {
  maxFrameBytes: number;
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  joinTimeoutMs: number;
  pingIntervalMs: number;
}

export interface DeskParts {
  credentials: TenantCredentials;
  routing: RoutingClient;
  hub: DeskHub;
  log: Logger;
  observe: (method: string, code: string, durationMs: number) => void;
}

type Request = NonNullable<ReturnType<typeof parseFrameWith<typeof deskRequestSchemas>>['request']>;
type Result = NonNullable<DeskResponse['result']>;

const channels = { voice: Channel.CHANNEL_VOICE, video: Channel.CHANNEL_VIDEO, chat: Channel.CHANNEL_CHAT } as const;
const channelNames: Record<number, string | undefined> = { [Channel.CHANNEL_VOICE]: 'voice', [Channel.CHANNEL_VIDEO]: 'video', [Channel.CHANNEL_CHAT]: 'chat' };
/** What an end user may publish in the room of a contact, by its channel. */
const endUserSources: Record<number, GrantedSource[]> = {
  [Channel.CHANNEL_VIDEO]: ['camera', 'microphone', 'screen'],
  [Channel.CHANNEL_VOICE]: ['microphone', 'screen'],
  [Channel.CHANNEL_CHAT]: [],
};
const MAX_MALFORMED_IN_A_ROW = 20;

type SupervisionMode = 'monitor' | 'whisper' | 'barge';
/**
 * How a supervisor is in a contact's room (participant/visibility.ts): monitoring, seen by other
 * supervisors only and sending nothing; whispering, heard by the agents only; barged in, in the
 * call like anyone. Each receives everything.
 */
const supervisionGrants: Record<SupervisionMode, Pick<MintRequest, 'visibleTo' | 'canPublish' | 'canSubscribe' | 'sources'>> = {
  monitor: { visibleTo: 'supervisors', canPublish: false, canSubscribe: true, sources: [] },
  whisper: { visibleTo: 'agents', canPublish: true, canSubscribe: true, sources: ['microphone'] },
  barge: { canPublish: true, canSubscribe: true, sources: ['camera', 'microphone'] },
};
/** A supervisor's join token is for joining at once; the session then lives on its own credential. */
const SUPERVISION_TOKEN_TTL_SECONDS = 120;

/**
 * One desk WebSocket (`/v1/desk`, docs/routing.md): an end user waiting for support, an agent
 * taking contacts, or a supervisor watching the queues. The first request is `hello` with a desk
 * token; every later one is checked by schema and by the token's role, then sent to the tenant's
 * routing owner. What routing says about this person comes back as notifications; when a contact
 * connects, each side is given a join token for its room, minted here with the grants of its role.
 */
export class DeskConnection {
  private grant: DeskGrant | undefined;
  private contactId = '';
  private readonly limiter: RateLimiter;
  private readonly releases: Array<() => void> = [];
  private releaseContact: (() => void) | undefined;
  private readonly joinedRooms = new Set<string>();
  private malformedInARow = 0;
  private awaitingPong = 0;
  private readonly pingTimer: NodeJS.Timeout;
  private readonly helloTimer: NodeJS.Timeout;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly ws: WebSocket,
    private readonly parts: DeskParts,
    private readonly options: DeskOptions,
    private readonly onClosed: (connection: DeskConnection) => void,
  ) {
    this.limiter = new RateLimiter(options.rateLimitPerSecond, options.rateLimitBurst);
    ws.on('message', (data, isBinary) => {
      try {
        this.onFrame(data, isBinary);
      } catch (error) {
        this.respondError(0, toClientError(error, parts.log, { stage: 'desk frame' }));
      }
    });
    ws.on('pong', () => (this.awaitingPong = 0));
    ws.on('close', () => this.cleanUp());
    ws.on('error', (error) => parts.log.debug({ err: error }, 'desk websocket error'));
    this.pingTimer = setInterval(() => {
      if (this.awaitingPong >= 2) return void this.ws.terminate();
      this.awaitingPong++;
      this.ws.ping();
    }, options.pingIntervalMs);
    this.helloTimer = setTimeout(() => {
      if (!this.grant) this.close(CloseCode.CLOSE_CODE_JOIN_TIMEOUT, 'no hello in time');
    }, options.joinTimeoutMs);
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.closed) return;
    if (this.limiter.take() > 0) {
      if (this.limiter.abusive()) this.close(CloseCode.CLOSE_CODE_RATE_LIMITED, 'rate limit exceeded');
      else this.respondError(0, { code: ErrorCode.RATE_LIMITED, message: 'too many requests; slow down' });
      return;
    }
    const parsed = isBinary
      ? { id: 0, error: new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'frames must be JSON text') }
      : parseFrameWith(rawToString(data), this.options.maxFrameBytes, deskRequestSchemas);
    if (parsed.error || !parsed.request) {
      const error = parsed.error!;
      this.parts.observe('invalid', error.code, 0);
      this.respondError(parsed.id, { code: error.code, message: error.message });
      if (++this.malformedInARow > MAX_MALFORMED_IN_A_ROW) this.close(CloseCode.CLOSE_CODE_PROTOCOL_VIOLATION, 'too many malformed frames');
      return;
    }
    this.malformedInARow = 0;
    const { id, request } = parsed;
    this.queue = this.queue.then(() => this.serve(id, request));
  }

  private async serve(id: number, request: Request): Promise<void> {
    if (this.closed) return;
    const started = performance.now();
    try {
      const result = await this.handle(request);
      this.send({ message: { $case: 'response', value: { id, result } } });
      this.parts.observe(request.$case, 'OK', performance.now() - started);
    } catch (error) {
      const gatewayError = GatewayError.from(error);
      this.parts.observe(request.$case, gatewayError.code, performance.now() - started);
      this.respondError(id, toClientError(gatewayError, this.parts.log, { method: `desk.${request.$case}` }));
      if (request.$case === 'hello' && (gatewayError.code === ErrorCode.UNAUTHENTICATED || gatewayError.code === ErrorCode.TOKEN_EXPIRED)) {
        this.close(CloseCode.CLOSE_CODE_UNAUTHENTICATED, gatewayError.code);
      }
    }
  }

  private async handle(request: Request): Promise<Result> {
    if (request.$case === 'ping') return { $case: 'ok', value: {} };
    if (request.$case === 'hello') return this.hello(request.value.token);
    const grant = this.grant;
    if (!grant) throw new GatewayError(ErrorCode.NOT_JOINED, 'say hello first');
    if (deskMethodRoles[request.$case] !== grant.role) throw new GatewayError(ErrorCode.PERMISSION_DENIED, `${request.$case} is not for a desk token of role ${grant.role}`);
    const { tenant, identity } = grant;
    const send = (command: Parameters<RoutingClient['send']>[1]) => this.parts.routing.send(tenant, command);
    switch (request.$case) {
      case 'requestSupport': {
        const { queue, channel, context, contactId } = request.value;
        // The contact's trace begins here (docs/observability.md): routing keeps it with the contact.
        const attributes = { 'gateway.tenant': tenant, 'gateway.queue_id': queue, 'gateway.channel': channel };
        return inSpan('gateway.routing.v1.Desk/requestSupport', { kind: SpanKind.SERVER, root: true, attributes }, async (span) => {
          const reply = await send({
            $case: 'requestSupport',
            value: {
              endUser: identity,
              queueId: queue,
              channel: channels[channel],
              contextJson: JSON.stringify(context),
              contactId: contactId || this.contactId,
              name: grant.name,
              crmContactId: grant.contact.crmContactId ?? '',
            },
          });
          const state = contactOf(reply);
          span.setAttribute('gateway.contact_id', state.contactId);
          this.followContact(state.contactId);
          // Anything that happened before this replica listened: the state now, told as an event would be.
          void send({ $case: 'contactState', value: { contactId: state.contactId, by: identity } }).then(
            (now) => this.onContactState(contactOf(now), undefined),
            () => undefined,
          );
          return { $case: 'contact', value: state } satisfies Result;
        });
      }
      case 'leaveQueue': {
        if (!this.contactId) throw new GatewayError(ErrorCode.INVALID_STATE, 'not waiting in a queue');
        await send({ $case: 'withdraw', value: { contactId: this.contactId, by: identity } });
        return { $case: 'ok', value: {} };
      }
      case 'setStatus': {
        const status = request.value.status === 'available' ? AgentStatus.AGENT_STATUS_AVAILABLE : AgentStatus.AGENT_STATUS_AWAY;
        return { $case: 'agent', value: agentOf(await send({ $case: 'setStatus', value: { agentId: identity, status, reason: request.value.reason } })) };
      }
      case 'accept': {
        const { result, trace } = await this.parts.routing.request(tenant, { $case: 'accept', value: { agentId: identity, contactId: request.value.contactId } });
        return { $case: 'join', value: await this.joinFor(contactOf(result), trace) };
      }
      case 'decline':
        await send({ $case: 'decline', value: { agentId: identity, contactId: request.value.contactId } });
        return { $case: 'ok', value: {} };
      case 'transfer': {
        const { contactId, queue, agentId, warm } = request.value;
        await send({ $case: 'transfer', value: { agentId: identity, contactId, toQueueId: queue, toAgentId: agentId, warm } });
        return { $case: 'ok', value: {} };
      }
      case 'completeTransfer':
        return { $case: 'agent', value: agentOf(await send({ $case: 'completeTransfer', value: { agentId: identity, contactId: request.value.contactId } })) };
      case 'end':
        await send({ $case: 'end', value: { agentId: identity, contactId: request.value.contactId } });
        return { $case: 'ok', value: {} };
      case 'wrapUp': {
        const { contactId, disposition, notes, next, reason } = request.value;
        const nextStatus = next === 'away' ? AgentStatus.AGENT_STATUS_AWAY : AgentStatus.AGENT_STATUS_AVAILABLE;
        return { $case: 'agent', value: agentOf(await send({ $case: 'wrapUp', value: { agentId: identity, contactId, disposition, notes, next: nextStatus, reason } })) };
      }
      case 'queueView':
        return { $case: 'queues', value: queuesOf(await send({ $case: 'queueView', value: { supervisorId: identity } })) };
      case 'supervise': {
        const state = contactOf(await send({ $case: 'supervise', value: { supervisorId: identity, contactId: request.value.contactId } }));
        return { $case: 'join', value: await this.supervisionJoin(state, request.value.mode) };
      }
    }
  }

  private async hello(token: string): Promise<Result> {
    if (this.grant) throw new GatewayError(ErrorCode.ALREADY_JOINED, 'this connection already said hello');
    const grant = await verifyDeskToken(this.parts.credentials, token);
    const send = (command: Parameters<RoutingClient['send']>[1]) => this.parts.routing.send(grant.tenant, command);
    let agent;
    if (grant.role === 'agent') {
      // Listening first: nothing said between the state and the subscription is lost.
      this.releases.push(this.parts.hub.listen(subjects.routingAgent(grant.tenant, grant.identity), (data) => this.onAgentEvent(data)));
      agent = agentOf(await send({ $case: 'agentState', value: { agentId: grant.identity } }));
      this.releases.push(this.parts.hub.holdAgent(grant.tenant, grant.identity));
    } else if (grant.role === 'supervisor') {
      // The directory decides who supervises: asking the view is the check.
      queuesOf(await send({ $case: 'queueView', value: { supervisorId: grant.identity } }));
      this.releases.push(this.parts.hub.listen(subjects.routingQueues(grant.tenant), (data) => this.onQueueView(data)));
    }
    if (this.closed) {
      this.cleanUpHeld();
      throw new GatewayError(ErrorCode.UNAVAILABLE, 'the connection closed');
    }
    this.grant = grant;
    clearTimeout(this.helloTimer);
    return { $case: 'hello', value: { role: grant.role, identity: grant.identity, agent, protocolVersion: PROTOCOL_VERSION } };
  }

  private followContact(contactId: string): void {
    if (this.contactId === contactId || !this.grant) return;
    this.releaseContact?.();
    this.contactId = contactId;
    const stopListening = this.parts.hub.listen(subjects.routingContact(this.grant.tenant, contactId), (data, headers) => {
      const state = decode(ContactState, data);
      if (state) this.onContactState(state, headers);
    });
    const release = this.parts.hub.holdContact(this.grant.tenant, contactId);
    this.releaseContact = () => {
      stopListening();
      release();
    };
  }

  private lastTold = '';

  /** `headers`: what routing published it with (a connected contact's carry its trace). */
  private onContactState(state: ContactState, headers: MsgHdrs | undefined): void {
    if (this.closed || state.contactId !== this.contactId) return;
    const summary = `${state.phase}:${state.queueId}:${state.position}:${state.estimatedWaitSeconds}:${state.agentId}`;
    if (summary === this.lastTold) return;
    this.lastTold = summary;
    this.notify({ $case: 'contact', value: state });
    if (state.phase === ContactPhase.CONTACT_PHASE_CONNECTED && state.room && !this.joinedRooms.has(state.room)) {
      this.joinedRooms.add(state.room);
      void this.joinFor(state, contextFromNatsHeaders(headers)).then(
        (join) => this.notify({ $case: 'connected', value: join }),
        (error: unknown) => this.parts.log.warn({ err: error }, 'could not mint the join token of a connected contact'),
      );
    }
    if (state.phase === ContactPhase.CONTACT_PHASE_ENDED) {
      this.releaseContact?.();
      this.releaseContact = undefined;
      this.contactId = '';
      this.lastTold = '';
    }
  }

  private onAgentEvent(data: Uint8Array): void {
    const message = decode(AgentEvent, data);
    const event = message?.event;
    if (!event || this.closed) return;
    if (event.$case === 'offered') this.notify({ $case: 'offered', value: event.value });
    else if (event.$case === 'offerWithdrawn') this.notify({ $case: 'offerWithdrawn', value: event.value });
    else if (event.$case === 'state') this.notify({ $case: 'agent', value: event.value });
    else if (event.$case === 'ended') this.notify({ $case: 'contactEnded', value: event.value });
    // `connected` is the answer to the agent's own accept, which carries the join token.
  }

  private onQueueView(data: Uint8Array): void {
    const view = decode(QueueView, data);
    if (view && !this.closed) this.notify({ $case: 'queues', value: view });
  }

  /**
   * A join token for the contact's room, with the grants of this side: agents record; end users
   * publish what the channel carries. Minted in a span of the contact's trace when routing gave it.
   */
  private joinFor(contact: ContactState, trace: ReturnType<typeof contextFromNatsHeaders>): Promise<DeskJoin> {
    if (!trace) return this.mintJoin(contact);
    const attributes = {
      'gateway.tenant': this.grant!.tenant,
      'gateway.queue_id': contact.queueId,
      'gateway.channel': channelNames[contact.channel] ?? 'unknown',
      'gateway.contact_id': contact.contactId,
      'gateway.desk_role': this.grant!.role,
    };
    return inSpan('desk join token', { parent: trace, attributes }, () => this.mintJoin(contact));
  }

  private async mintJoin(contact: ContactState): Promise<DeskJoin> {
    const grant = this.grant!;
    const tenant = grant.signer;
    const base = { room: contact.room, identity: grant.identity, ...(grant.name ? { name: grant.name } : {}), ttlSeconds: 6 * 3600 };
    const { token } =
      grant.role === 'agent'
        ? await mintJoinToken(tenant, { ...base, role: 'agent', canRecord: true })
        : await mintJoinToken(tenant, {
            ...base,
            role: 'end_user',
            sources: endUserSources[contact.channel] ?? [],
            canPublish: (endUserSources[contact.channel] ?? []).length > 0,
            ...(grant.contact.crmContactId ? { crmContactId: grant.contact.crmContactId } : {}),
            ...(grant.contact.phoneNumber ? { phoneNumber: grant.contact.phoneNumber } : {}),
            ...(grant.contact.deviceIds ? { deviceIds: grant.contact.deviceIds } : {}),
          });
    return { contact, token };
  }

  /**
   * A supervisor's join token for a contact's room: short-lived (it is for joining now), seen and
   * heard as the mode says (supervisionGrants).
   */
  private async supervisionJoin(contact: ContactState, mode: SupervisionMode): Promise<DeskJoin> {
    const grant = this.grant!;
    const { token } = await mintJoinToken(grant.signer, {
      room: contact.room,
      identity: grant.identity,
      ...(grant.name ? { name: grant.name } : {}),
      role: 'supervisor',
      ttlSeconds: SUPERVISION_TOKEN_TTL_SECONDS,
      ...supervisionGrants[mode],
    });
    return { contact, token };
  }

  private notify(event: DeskNotification['event']): void {
    this.send({ message: { $case: 'notification', value: { event } } });
  }

  private respondError(id: number, error: ClientError): void {
    const retryAfterMs = Math.max(0, Math.min(0xffffffff, Math.round(error.retryAfterMs ?? 0)));
    this.send({ message: { $case: 'response', value: { id, result: { $case: 'error', value: { code: error.code, message: error.message, retryAfterMs } } } } });
  }

  private send(message: DeskServerMessage): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify(DeskServerMessage.toJSON(message)));
  }

  close(code: CloseCode, reason: string): void {
    if (this.closed) return;
    this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), 2_000).unref();
    this.cleanUp();
  }

  private cleanUpHeld(): void {
    for (const release of this.releases.splice(0)) release();
    this.releaseContact?.();
    this.releaseContact = undefined;
  }

  private cleanUp(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.helloTimer);
    this.cleanUpHeld();
    const grant = this.grant;
    // An agent's app gone: an offer it holds moves on now, not at its timeout.
    if (grant?.role === 'agent') {
      void this.parts.routing.send(grant.tenant, { $case: 'disconnected', value: { agentId: grant.identity } }).catch(() => undefined);
    }
    this.onClosed(this);
  }
}

function contactOf(result: NonNullable<Reply['result']>): ContactState {
  if (result.$case !== 'contact') throw new GatewayError(ErrorCode.INTERNAL, 'routing answered something else');
  return result.value;
}

function agentOf(result: NonNullable<Reply['result']>) {
  if (result.$case !== 'agent') throw new GatewayError(ErrorCode.INTERNAL, 'routing answered something else');
  return result.value;
}

function queuesOf(result: NonNullable<Reply['result']>) {
  if (result.$case !== 'queues') throw new GatewayError(ErrorCode.INTERNAL, 'routing answered something else');
  return result.value;
}

/** Decodes what routing published; something that does not decode is dropped. */
function decode<T>(type: { decode(input: Uint8Array): T }, data: Uint8Array): T | undefined {
  try {
    return type.decode(data);
  } catch {
    return undefined;
  }
}
