import { randomBytes } from 'node:crypto';
import type { NatsConnection, Msg, MsgHdrs, Subscription } from '@nats-io/transport-node';
import { z } from 'zod';
import {
  contextFromNatsHeaders,
  contextFromTraceparent,
  ErrorCode,
  GatewayError,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  openJson,
  recordSpan,
  sealJson,
  SpanKind,
  subjects,
  traceparentOf,
  type Keyring,
  type Logger,
} from '@gateway/common';
import {
  AgentEvent,
  AgentStatus,
  Channel,
  Command,
  type ContactRecord,
  ContactPhase,
  ContactState as ContactStateMessage,
  QueueView as QueueViewMessage,
  Reply,
  type AgentState,
  type ContactState,
  type Offer,
  type QueueView,
} from '@gateway/proto/gateway/routing/v1/routing';
import { RoutingRefusal, type RoutingEngine, type RoutingEvent } from '../engine/RoutingEngine.js';
import type { Agent, Channel as ChannelName, Contact, PendingRecord, Queue, RoutingProfile } from '../engine/model.js';
import { MAX_PENDING_RECORDS } from '../state/RoutingRecords.js';
import { contactRecordOf, pendingRecordOf, publishContactRecord } from './contactRecords.js';
import { isOpen } from '../directory/businessHours.js';
import type { BusinessHours } from '../directory/model.js';
import type { TenantOwner } from './TenantOwner.js';
import { QueueStatistics } from './QueueStatistics.js';

/** What a tenant's routing needs of its directory: the queues, profiles and people. */
export interface DirectoryView {
  queues: ReadonlyArray<Queue & { name: string; contextFields?: readonly string[]; businessHours?: BusinessHours }>;
  profiles: readonly RoutingProfile[];
  people: ReadonlyArray<{ personId: string; name: string; roles: readonly string[]; skills: Readonly<Record<string, number>>; profileId?: string }>;
}

export interface TenantRoutingOptions {
  /** An agent's app not reported connected for this long is taken as gone (signaling reports every few seconds). */
  presenceTimeoutMs: number;
  /** An agent's app silent this long (no presence report) goes offline; a return within it resumes. */
  agentGraceMs: number;
  /** An end user's app silent this long leaves the queue (abandoned), unless a callback was offered. */
  endUserGraceMs: number;
  /** How often time is looked at: offers timing out, overflow, callbacks, presence. */
  tickMs: number;
  /** Supervisors' view goes out at most this often while anything changes. */
  queueViewMs: number;
}

export interface RoutingObserver {
  command(kind: string, code: string, durationMs: number): void;
  event(event: RoutingEvent, nowMs: number, contact: Contact | undefined): void;
}

const channelNames: Record<number, ChannelName | undefined> = { [Channel.CHANNEL_VOICE]: 'voice', [Channel.CHANNEL_VIDEO]: 'video', [Channel.CHANNEL_CHAT]: 'chat' };
const channelOf: Record<ChannelName, Channel> = { voice: Channel.CHANNEL_VOICE, video: Channel.CHANNEL_VIDEO, chat: Channel.CHANNEL_CHAT };
const statusOf: Record<Agent['status'], AgentStatus> = {
  available: AgentStatus.AGENT_STATUS_AVAILABLE,
  away: AgentStatus.AGENT_STATUS_AWAY,
  after_contact_work: AgentStatus.AGENT_STATUS_AFTER_CONTACT_WORK,
  offline: AgentStatus.AGENT_STATUS_OFFLINE,
};

const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const identity = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]+$/);
const reference = z.string().min(1).max(64);
/** The app's context: string values only, 32 fields, 4 KiB of JSON. */
const contextSchema = z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.string().max(1_024)).refine((c) => Object.keys(c).length <= 32, 'at most 32 context fields');
const MAX_CONTEXT_JSON = 4 * 1024;

/** What a contact's sealed part holds: never in a log, never outside this tenant. */
interface SealedAbout {
  name: string;
  context: Record<string, string>;
}

/**
 * The routing of one tenant, run by the replica holding its lease (docs/routing.md): answers the
 * commands on the tenant's subject (validated, then run on the engine through the owner, which
 * stores each decision before it counts), watches time (offers timing out, overflow, callbacks,
 * apps gone quiet), and tells agents, end users and supervisors what changed.
 */
export class TenantRouting {
  private subscription: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** When each agent's and end user's app was last reported connected (in memory: a new owner gives everyone the grace period). */
  private readonly agentSeen = new Map<string, number>();
  private readonly contactSeen = new Map<string, number>();
  /** What each waiting contact was last told (position, estimate, phase), to tell only changes. */
  private readonly told = new Map<string, Told>();
  /** The offer each agent was last told of and not told is over (agent id -> contact id). */
  private readonly toldOffers = new Map<string, string>();
  /** When each offer out was made (or, made by a previous owner, first seen here): its span's start. */
  private readonly offeredAt = new Map<string, number>();
  private readonly statistics: QueueStatistics;
  private ticking = false;
  private queueViewDirty = true;
  private lastQueueViewMs = 0;
  private people: Map<string, DirectoryView['people'][number]>;
  private queueInfo: Map<string, DirectoryView['queues'][number]>;
  private readonly startedAtMs: number;

  constructor(
    readonly tenant: string,
    private readonly nc: NatsConnection,
    private readonly owner: TenantOwner,
    directory: DirectoryView,
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly options: TenantRoutingOptions,
    private readonly observer?: RoutingObserver,
    private readonly now: () => number = Date.now,
  ) {
    this.people = new Map(directory.people.map((p) => [p.personId, p]));
    this.queueInfo = new Map(directory.queues.map((q) => [q.queueId, q]));
    this.statistics = new QueueStatistics(this.now);
    this.startedAtMs = this.now();
    this.directory = directory;
  }

  private directory: DirectoryView;

  private get engine(): RoutingEngine {
    return this.owner.engine;
  }

  /** Loads the tenant, applies its directory, and starts answering. */
  async start(): Promise<void> {
    await this.owner.load();
    await this.applyDirectory(this.directory);
    if (this.closed) return;
    this.subscription = this.nc.subscribe(subjects.routingCommand(this.tenant), { callback: (error, msg) => (error ? undefined : void this.onCommand(msg)) });
    this.timer = setInterval(() => void this.onTick(), this.options.tickMs);
    this.timer.unref();
  }

  /**
   * The tenant's directory, as it is now (at start, and when its admins change it): queues,
   * profiles and agents are set on the engine; a person no longer an agent keeps what they hold
   * but is refused as an agent from now on.
   */
  async applyDirectory(directory: DirectoryView): Promise<void> {
    this.directory = directory;
    this.people = new Map(directory.people.map((p) => [p.personId, p]));
    this.queueInfo = new Map(directory.queues.map((q) => [q.queueId, q]));
    await this.run('directory', (engine) => {
      for (const queue of directory.queues) engine.setQueue(queue);
      for (const profile of directory.profiles) engine.setProfile(profile);
      const nowMs = this.now();
      for (const person of directory.people) {
        if (person.roles.includes('agent') && person.profileId) engine.setAgent({ agentId: person.personId, profileId: person.profileId, skills: { ...person.skills } }, nowMs);
      }
      return engine.assign(nowMs);
    });
  }

  /** Stops answering (the lease is gone or the replica stops). Safe to repeat. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.subscription?.drain().catch(() => undefined);
  }

  private async onCommand(msg: Msg): Promise<void> {
    const started = performance.now();
    let kind = 'invalid';
    let reply: Reply;
    let headers: MsgHdrs | undefined;
    try {
      let command: Command;
      try {
        command = Command.decode(msg.data);
      } catch (error) {
        throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the command does not decode', { cause: error });
      }
      if (command.tenant !== this.tenant) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the command names another tenant');
      if (!command.command) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the command names no operation');
      kind = command.command.$case;
      const operation = command.command;
      const traced = this.spanOf(operation, msg.headers);
      reply = traced
        ? await inSpan(traced.name, traced.options, async (span) => {
            const answer = await this.serve(operation).catch((error: unknown) => {
              const failure = this.failure(error);
              markFailed(span, new GatewayError(GatewayError.isCode(failure.code) ? failure.code : ErrorCode.INTERNAL, failure.message));
              return { result: { $case: 'error', value: failure } } satisfies Reply;
            });
            if (answer.result?.$case === 'contact') span.setAttribute('gateway.contact_id', answer.result.value.contactId);
            // The caller's next steps (the agent's join token) belong to the contact's trace too.
            headers = natsHeadersWithTrace();
            return answer;
          })
        : await this.serve(operation);
    } catch (error) {
      const failure = this.failure(error);
      reply = { result: { $case: 'error', value: failure } };
    }
    this.observer?.command(kind, reply.result?.$case === 'error' ? reply.result.value.code : 'OK', performance.now() - started);
    if (msg.reply) msg.respond(Reply.encode(reply).finish(), headers ? { headers } : undefined);
  }

  /**
   * The span of a command in its contact's trace (docs/observability.md): a request for support
   * begins the trace (continuing the caller's), an accept continues the trace kept with the
   * contact (linked to the caller's). Other commands (presence every few seconds, statuses) make
   * no span of their own.
   */
  private spanOf(command: NonNullable<Command['command']>, headers: MsgHdrs | undefined): { name: string; options: Parameters<typeof inSpan>[1] } | undefined {
    if (command.$case === 'requestSupport') {
      const parent = contextFromNatsHeaders(headers);
      const attributes = {
        'gateway.tenant': this.tenant,
        'gateway.queue_id': id.safeParse(command.value.queueId).success ? command.value.queueId : 'invalid',
        'gateway.channel': channelNames[command.value.channel] ?? 'unknown',
      };
      return { name: 'gateway.routing.v1.Routing/requestSupport', options: { kind: SpanKind.SERVER, ...(parent ? { parent } : { root: true }), attributes } };
    }
    if (command.$case === 'accept') {
      const contact = this.engine.contacts.get(command.value.contactId);
      const parent = contextFromTraceparent(contact?.about?.traceparent);
      if (!contact || !parent) return undefined;
      return { name: 'gateway.routing.v1.Routing/accept', options: { kind: SpanKind.SERVER, parent, links: linksFromNatsHeaders(headers), attributes: contactAttributes(this.tenant, contact) } };
    }
    return undefined;
  }

  private failure(error: unknown): { code: string; message: string } {
    if (error instanceof RoutingRefusal) return { code: error.code === 'NO_CAPACITY' ? ErrorCode.LIMIT_EXCEEDED : error.code, message: error.message };
    const gatewayError = GatewayError.from(error);
    if (gatewayError.code === ErrorCode.INTERNAL) this.log.error({ tenant: this.tenant, err: error }, 'routing command failed');
    return { code: gatewayError.code, message: gatewayError.code === ErrorCode.INTERNAL ? 'routing failed; try again' : gatewayError.message };
  }

  private async serve(command: NonNullable<Command['command']>): Promise<Reply> {
    const nowMs = this.now();
    switch (command.$case) {
      case 'requestSupport':
        return { result: { $case: 'contact', value: await this.requestSupport(command.value) } };
      case 'withdraw': {
        const contact = this.contactOf(command.value.contactId, command.value.by);
        await this.run('withdraw', (engine) => engine.abandon(contact.contactId));
        return ok();
      }
      case 'presence':
        for (const agentId of command.value.agentIds.slice(0, 10_000)) {
          if (!id.safeParse(agentId).success || !this.engine.agents.has(agentId)) continue;
          this.agentSeen.set(agentId, nowMs);
          if (this.engine.agents.get(agentId)?.beforeDisconnect) await this.run('reconnect', (engine) => engine.reconnect(agentId, nowMs));
        }
        return ok();
      case 'endUserPresence':
        for (const contactId of command.value.contactIds.slice(0, 100_000)) if (this.engine.contacts.has(contactId)) this.contactSeen.set(contactId, nowMs);
        return ok();
      case 'disconnected': {
        const agentId = this.agentOf(command.value.agentId).agentId;
        await this.run('disconnect', (engine) => engine.disconnect(agentId, nowMs));
        return ok();
      }
      case 'setStatus': {
        const agent = this.agentOf(command.value.agentId);
        const status = command.value.status === AgentStatus.AGENT_STATUS_AVAILABLE ? 'available' : command.value.status === AgentStatus.AGENT_STATUS_AWAY ? 'away' : undefined;
        if (!status) throw new GatewayError(ErrorCode.BAD_REQUEST, 'an agent sets itself available or away');
        const reason = command.value.reason.slice(0, 64) || undefined;
        this.agentSeen.set(agent.agentId, nowMs);
        await this.run('setStatus', (engine) => [...engine.setStatus(agent.agentId, status, nowMs, reason), ...engine.assign(nowMs)]);
        return { result: { $case: 'agent', value: await this.agentState(agent.agentId) } };
      }
      case 'accept': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        // Already theirs: the answer to an accept that took longer than the caller waited (a
        // write riding out a leader election) is given again, so the agent gets their join token.
        const held = this.engine.contacts.get(contactId);
        if (held?.state === 'connected' && held.agentId === agent.agentId) return { result: { $case: 'contact', value: this.contactState(held) } };
        await this.run('accept', (engine) => {
          const events = engine.accept(contactId, agent.agentId);
          const contact = engine.contacts.get(contactId);
          if (contact?.about) {
            contact.about.connectedAtMs ??= nowMs;
            contact.about.room ??= roomOf(contactId);
          }
          return [...events, ...engine.assign(nowMs)];
        });
        return { result: { $case: 'contact', value: this.contactState(this.engine.contacts.get(contactId)!) } };
      }
      case 'decline': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        await this.run('decline', (engine) => [...engine.decline(contactId, agent.agentId), ...engine.assign(nowMs)]);
        return ok();
      }
      case 'transfer': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        const toAgentId = command.value.toAgentId ? this.agentOf(command.value.toAgentId).agentId : undefined;
        const toQueueId = command.value.toQueueId ? id.parse(command.value.toQueueId) : this.engine.contacts.get(contactId)?.queueId;
        if (!toQueueId) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact');
        if (toAgentId === agent.agentId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a contact is not transferred to the agent who holds it');
        await this.run('transfer', (engine) => {
          const events = engine.transfer(contactId, agent.agentId, { queueId: toQueueId, ...(toAgentId ? { agentId: toAgentId } : {}) }, nowMs, { warm: command.value.warm });
          const about = engine.contacts.get(contactId)?.about;
          if (about) about.transfers = [...(about.transfers ?? []), { fromAgentId: agent.agentId, toQueueId, ...(toAgentId ? { toAgentId } : {}), warm: command.value.warm, atMs: nowMs }].slice(-50);
          return [...events, ...engine.assign(nowMs)];
        });
        return ok();
      }
      case 'completeTransfer': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        if (!this.engine.contacts.get(contactId)?.handingOver?.includes(agent.agentId)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no contact this agent is handing over');
        await this.run('completeTransfer', (engine) => [...engine.completeTransfer(contactId, agent.agentId), ...engine.assign(nowMs)]);
        return { result: { $case: 'agent', value: await this.agentState(agent.agentId) } };
      }
      case 'end': {
        const agent = this.agentOf(command.value.agentId);
        const contact = this.engine.contacts.get(id.parse(command.value.contactId));
        if (!contact || contact.agentId !== agent.agentId) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact of this agent');
        let overflowing: PendingRecord[] = [];
        await this.run('end', (engine) => {
          const events = engine.complete(contact.contactId, nowMs, contact.about?.connectedAtMs ?? nowMs);
          // Its record waits on the agent's record for the wrap-up (so a new owner still has it).
          const held = engine.agents.get(agent.agentId);
          if (held) {
            const pending = [...(held.pendingRecords ?? []), pendingRecordOf(contact, nowMs)];
            overflowing = pending.slice(0, Math.max(0, pending.length - MAX_PENDING_RECORDS));
            held.pendingRecords = pending.slice(-MAX_PENDING_RECORDS);
          }
          return [...events, ...engine.assign(nowMs)];
        });
        // Never wrapped up, and pushed out by newer ones: sent as they are (an agent's part of a warm transfer is no record).
        for (const pending of overflowing) if (!pending.handedOver) await this.sendRecord(contactRecordOf(this.tenant, pending, 'completed'));
        return ok();
      }
      case 'wrapUp': {
        const agent = this.agentOf(command.value.agentId);
        const next = command.value.next === AgentStatus.AGENT_STATUS_AWAY ? 'away' : 'available';
        const reason = command.value.reason.slice(0, 64) || undefined;
        const contactId = command.value.contactId;
        const pending = agent.pendingRecords?.find((p) => p.contactId === contactId);
        if (contactId && !pending) throw new GatewayError(ErrorCode.NOT_FOUND, 'no contact of this agent waits for its wrap-up');
        if (!contactId && agent.status !== 'after_contact_work') throw new GatewayError(ErrorCode.INVALID_STATE, 'not in after-contact work');
        // The wrap-up of a part of a warm transfer ends the agent's after-contact work only: the contact's record is the last agent's.
        if (pending && !pending.handedOver) {
          const wrapUp = { disposition: command.value.disposition.slice(0, 64), notes: command.value.notes.slice(0, 2_000) };
          // Out first: a record sent twice is one (its message id), a record lost is not.
          await publishContactRecord(this.nc, contactRecordOf(this.tenant, pending, 'completed', wrapUp));
        }
        await this.run('wrapUp', (engine) => {
          const held = engine.agents.get(agent.agentId);
          if (!held) return [];
          held.pendingRecords = held.pendingRecords?.filter((p) => p.contactId !== contactId);
          if (held.pendingRecords?.length === 0) held.pendingRecords = undefined;
          engine.touch('agents', agent.agentId);
          // The last of its contacts wrapped up: available again, or away.
          const events = held.status === 'after_contact_work' && !held.pendingRecords ? engine.wrapUp(agent.agentId, nowMs, next, reason) : [];
          return [...events, ...engine.assign(nowMs)];
        });
        return { result: { $case: 'agent', value: await this.agentState(agent.agentId) } };
      }
      case 'agentState': {
        const agent = this.agentOf(command.value.agentId);
        this.agentSeen.set(agent.agentId, nowMs);
        if (agent.beforeDisconnect) await this.run('reconnect', (engine) => engine.reconnect(agent.agentId, nowMs));
        return { result: { $case: 'agent', value: await this.agentState(agent.agentId) } };
      }
      case 'contactState': {
        const contact = this.contactOf(command.value.contactId, command.value.by);
        this.contactSeen.set(contact.contactId, nowMs);
        return { result: { $case: 'contact', value: this.contactState(contact) } };
      }
      case 'queueView': {
        const person = this.people.get(command.value.supervisorId);
        if (!person?.roles.includes('supervisor')) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only a supervisor sees the queues');
        return { result: { $case: 'queues', value: this.queueView() } };
      }
      case 'supervise': {
        const person = this.people.get(command.value.supervisorId);
        if (!person?.roles.includes('supervisor')) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only a supervisor watches over contacts');
        const contact = this.engine.contacts.get(id.parse(command.value.contactId));
        if (!contact) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact');
        // Its room exists from the first accept until it ends (through transfers, whoever holds it).
        if (contact.state === 'ended' || !contact.about?.room) throw new GatewayError(ErrorCode.INVALID_STATE, 'the contact is not in a call');
        return { result: { $case: 'contact', value: this.contactState(contact) } };
      }
    }
  }

  private async requestSupport(request: { endUser: string; queueId: string; channel: Channel; contextJson: string; contactId: string; name: string; crmContactId: string }): Promise<ContactState> {
    const endUser = identity.parse(request.endUser);
    const nowMs = this.now();
    // Asking again (a reconnect, or a second tap): the contact they have keeps its place.
    const existing = request.contactId ? this.engine.contacts.get(request.contactId) : this.engine.contactOfEndUser(endUser);
    if (existing) {
      if (existing.about?.endUser !== endUser) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact');
      this.contactSeen.set(existing.contactId, nowMs);
      return this.contactState(existing);
    }
    const queueId = id.safeParse(request.queueId);
    if (!queueId.success || !this.engine.queues.has(queueId.data)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such queue');
    const channel = channelNames[request.channel];
    if (!channel) throw new GatewayError(ErrorCode.BAD_REQUEST, 'channel must be voice, video or chat');
    if (Buffer.byteLength(request.contextJson) > MAX_CONTEXT_JSON) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, 'the context is limited to 4 KiB');
    let context: Record<string, string> = {};
    if (request.contextJson) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(request.contextJson);
      } catch (error) {
        throw new GatewayError(ErrorCode.BAD_REQUEST, 'the context is not JSON', { cause: error });
      }
      const checked = contextSchema.safeParse(parsed);
      if (!checked.success) throw new GatewayError(ErrorCode.BAD_REQUEST, `the context is refused: ${checked.error.issues[0]?.message ?? 'invalid'}`);
      context = checked.data;
    }
    const contactId = `ct_${randomBytes(12).toString('hex')}`;
    const sealed = await sealJson(this.keyring, this.tenant, `routing-contact:${contactId}`, { name: request.name.slice(0, 128), context } satisfies SealedAbout);
    const hours = this.queueInfo.get(queueId.data)?.businessHours;
    // Outside the queue's hours the end user need not hold on: a callback, keeping their place.
    const closed = hours !== undefined && !isOpen(hours, nowMs);
    const crmContactId = request.crmContactId ? reference.parse(request.crmContactId) : undefined;
    // The contact's trace, kept with its record: whoever owns the tenant later records in it.
    const traceparent = traceparentOf();
    await this.run('requestSupport', (engine) => {
      const contact = engine.enqueue(
        { contactId, queueId: queueId.data, channel, about: { endUser, sealed, ...(crmContactId ? { crmContactId } : {}), ...(traceparent ? { traceparent } : {}) } },
        nowMs,
      );
      if (!closed) return engine.assign(nowMs);
      contact.callback = true;
      return [{ type: 'callback_offered', contactId }];
    });
    this.contactSeen.set(contactId, nowMs);
    this.statistics.requested(queueId.data);
    // A contact that only waits (no agent free) makes no event, and supervisors must see it.
    this.queueViewDirty = true;
    const contact = this.engine.contacts.get(contactId);
    // Offered in the same breath: the state says so.
    return contact ? this.contactState(contact) : { ...emptyContactState(), contactId, phase: ContactPhase.CONTACT_PHASE_ENDED };
  }

  private async onTick(): Promise<void> {
    // A tick that outlasts the interval is not joined by the next one: they would do its work twice.
    if (this.closed || this.ticking) return;
    this.ticking = true;
    const nowMs = this.now();
    try {
      const gone = (seen: Map<string, number>, key: string, graceMs: number) => (seen.get(key) ?? this.startedAtMs) + graceMs <= nowMs;
      // Apps gone quiet: agents go away (their offer moves on), then offline; end users leave the queue.
      for (const agent of this.engine.agents.values()) {
        if (agent.status === 'offline') continue;
        if (!agent.beforeDisconnect && gone(this.agentSeen, agent.agentId, this.options.presenceTimeoutMs)) {
          await this.run('disconnect', (engine) => engine.disconnect(agent.agentId, nowMs));
        } else if (agent.beforeDisconnect && gone(this.agentSeen, agent.agentId, this.options.agentGraceMs)) {
          await this.run('offline', (engine) => engine.setStatus(agent.agentId, 'offline', nowMs));
        }
      }
      for (const contact of [...this.engine.contacts.values()]) {
        if (contact.state === 'connected' || contact.callback) continue;
        if (gone(this.contactSeen, contact.contactId, this.options.endUserGraceMs)) {
          await this.run('abandon', (engine) => engine.abandon(contact.contactId));
        }
      }
      await this.run('tick', (engine) => engine.tick(nowMs));
      this.tellPositions();
      if (this.queueViewDirty && nowMs - this.lastQueueViewMs >= this.options.queueViewMs) {
        this.queueViewDirty = false;
        this.lastQueueViewMs = nowMs;
        this.publish(subjects.routingQueues(this.tenant), encodeQueueView(this.queueView()));
      }
    } catch (error) {
      if (!(error instanceof RoutingRefusal)) this.log.warn({ tenant: this.tenant, err: error }, 'routing tick failed; next tick tries again');
    } finally {
      this.ticking = false;
    }
  }

  /** Runs an operation through the owner (stored before it counts), then tells everyone concerned. */
  private async run(kind: string, operation: (engine: RoutingEngine) => RoutingEvent[]): Promise<void> {
    let events: RoutingEvent[];
    try {
      events = await this.owner.run((engine) => {
        const decided = operation(engine);
        for (const event of decided) if (event.type === 'handed_over') this.holdPartRecord(engine, event.agentId, event.contact);
        return decided;
      });
    } catch (error) {
      if (this.owner.trusted) await this.tellAfterReload();
      throw error;
    }
    if (events.length > 0) this.queueViewDirty = true;
    const nowMs = this.now();
    for (const event of events) {
      const contact = event.type === 'ended' ? event.contact : 'contactId' in event ? this.engine.contacts.get(event.contactId) : undefined;
      this.observer?.event(event, nowMs, contact);
      this.statistics.record(event, contact, nowMs, this.engine);
      this.traceOffer(event, contact, nowMs);
      await this.tell(event, contact);
      if (event.type === 'ended' && event.reason === 'abandoned') await this.sendRecord(contactRecordOf(this.tenant, pendingRecordOf(event.contact, nowMs), 'abandoned'));
    }
    if (kind !== 'tick' && events.length > 0) this.tellPositions();
  }

  /**
   * Each offer as a span of its contact's trace, from when it was made to its outcome (accepted,
   * declined, timed out, withdrawn when the end user left). An offer made by a previous owner
   * counts from when this one learned of it.
   */
  private traceOffer(event: RoutingEvent, contact: Readonly<Contact> | undefined, nowMs: number): void {
    if (event.type === 'offered') {
      this.offeredAt.set(event.contactId, nowMs);
      return;
    }
    const outcome =
      event.type === 'connected'
        ? 'accepted'
        : event.type === 'declined'
          ? 'declined'
          : event.type === 'offer_expired'
            ? 'timed_out'
            : event.type === 'ended' && event.reason === 'abandoned' && event.contact.offer
              ? 'withdrawn'
              : undefined;
    if (event.type === 'ended') this.offeredAt.delete(event.contactId);
    if (!outcome || !contact) return;
    const startTime = this.offeredAt.get(contact.contactId) ?? nowMs;
    this.offeredAt.delete(contact.contactId);
    recordSpan('routing offer', contextFromTraceparent(contact.about?.traceparent), {
      startTime,
      endTime: nowMs,
      attributes: { ...contactAttributes(this.tenant, contact), 'gateway.offer.outcome': outcome },
    });
  }

  /**
   * After an operation that was not stored (the owner reloaded the tenant from the store), tells
   * the agents and end users where the store differs from what they were told: part of it may
   * have been stored after all (a write that went unanswered landed, then a half-made offer was
   * undone), and nobody may be left ringing for an offer that is not theirs, or not told of one
   * that is.
   */
  private async tellAfterReload(): Promise<void> {
    for (const [agentId, contactId] of [...this.toldOffers]) {
      if (this.engine.agents.get(agentId)?.offeredContactId === contactId) continue;
      this.toldOffers.delete(agentId);
      this.toAgent(agentId, { $case: 'offerWithdrawn', value: { contactId, reason: 'withdrawn' } });
    }
    for (const agent of this.engine.agents.values()) {
      const contact = agent.offeredContactId ? this.engine.contacts.get(agent.offeredContactId) : undefined;
      if (!contact || this.toldOffers.get(agent.agentId) === contact.contactId) continue;
      this.toldOffers.set(agent.agentId, contact.contactId);
      this.offeredAt.set(contact.contactId, this.now());
      this.toAgent(agent.agentId, { $case: 'offered', value: await this.offerOf(contact) });
    }
    for (const contact of this.engine.contacts.values()) this.toContact(contact);
  }

  private async tell(event: RoutingEvent, contact: Readonly<Contact> | undefined): Promise<void> {
    this.noteOffers(event);
    switch (event.type) {
      case 'offered': {
        if (!contact) return;
        this.toAgent(event.agentId, { $case: 'offered', value: await this.offerOf(contact) });
        this.toContact(contact);
        return;
      }
      case 'offer_expired':
      case 'declined':
        this.toAgent(event.agentId, { $case: 'offerWithdrawn', value: { contactId: event.contactId, reason: event.type === 'declined' ? 'declined' : 'expired' } });
        return;
      case 'connected':
        if (!contact) return;
        this.toAgent(event.agentId, { $case: 'connected', value: this.contactState(contact) });
        // In the accept's trace: the end user's join token is minted under it.
        this.toContact(contact, false, natsHeadersWithTrace());
        // Those handing it over see who took it.
        for (const agentId of contact.handingOver ?? []) this.toAgent(agentId, { $case: 'state', value: await this.agentState(agentId) });
        return;
      case 'agent_status':
        this.toAgent(event.agentId, { $case: 'state', value: await this.agentState(event.agentId) });
        return;
      case 'overflowed':
      case 'callback_offered':
        if (contact) this.toContact(contact, true);
        return;
      case 'transferred': {
        // Cold: the first agent's part is over now. Warm: they keep the contact (in its room, busy) until they complete the hand-over.
        if (event.warm) this.toAgent(event.fromAgentId, { $case: 'state', value: await this.agentState(event.fromAgentId) });
        else this.toAgent(event.fromAgentId, { $case: 'ended', value: { ...(contact ? this.contactState(contact) : emptyContactState()), contactId: event.contactId, endReason: 'transferred' } });
        if (contact) this.toContact(contact, true);
        return;
      }
      case 'handed_over':
        this.toAgent(event.agentId, { $case: 'ended', value: { ...this.contactState(event.contact), phase: ContactPhase.CONTACT_PHASE_ENDED, endReason: 'transferred_warm' } });
        return;
      case 'ended': {
        const state: ContactState = {
          ...(contact ? this.contactState(contact) : emptyContactState()),
          contactId: event.contactId,
          phase: ContactPhase.CONTACT_PHASE_ENDED,
          position: 0,
          endReason: event.reason,
        };
        this.told.delete(event.contactId);
        this.contactSeen.delete(event.contactId);
        this.publish(subjects.routingContact(this.tenant, event.contactId), encodeContactState(state));
        if (event.reason === 'abandoned' && event.contact.offer) this.toAgent(event.contact.offer.agentId, { $case: 'offerWithdrawn', value: { contactId: event.contactId, reason: 'abandoned' } });
        if (event.reason === 'completed' && event.contact.agentId) this.toAgent(event.contact.agentId, { $case: 'ended', value: state });
        return;
      }
    }
  }

  /**
   * An agent's part of a warm transfer is over: it waits for their wrap-up on their record, like a
   * contact they ended, marked as a part (its wrap-up sends nothing; the contact's record is the
   * last agent's). Beyond the bound the oldest part is dropped, never a contact's record: a part
   * has nothing to send.
   */
  private holdPartRecord(engine: RoutingEngine, agentId: string, contact: Readonly<Contact>): void {
    const agent = engine.agents.get(agentId);
    if (!agent) return;
    const pending = [...(agent.pendingRecords ?? []), { ...pendingRecordOf(contact, this.now()), agentId, handedOver: true }];
    if (pending.length > MAX_PENDING_RECORDS)
      pending.splice(
        pending.findIndex((p) => p.handedOver),
        1,
      );
    agent.pendingRecords = pending;
    engine.touch('agents', agentId);
  }

  /** Which agent was told of which offer, as events go out. */
  private noteOffers(event: RoutingEvent): void {
    if (event.type === 'offered') this.toldOffers.set(event.agentId, event.contactId);
    else if (event.type === 'declined' || event.type === 'offer_expired' || event.type === 'connected') this.toldOffers.delete(event.agentId);
    else if (event.type === 'ended' && event.contact.offer) this.toldOffers.delete(event.contact.offer.agentId);
  }

  /** Sends a contact's record, retried a few times; one that cannot be sent is logged (by id only). */
  private async sendRecord(record: ContactRecord): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await publishContactRecord(this.nc, record);
        return;
      } catch (error) {
        if (attempt >= 3 || this.closed) {
          this.log.error({ tenant: this.tenant, contactId: record.contactId, err: error }, "a contact's record could not be sent");
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  /** Tells each waiting contact whose place, estimate or phase changed (only queues where something moved can have one). */
  private tellPositions(): void {
    for (const queueId of this.engine.takeMovedQueues()) for (const contact of this.engine.queuedIn(queueId)) this.toContact(contact);
  }

  private toContact(contact: Readonly<Contact>, always = false, headers?: MsgHdrs): void {
    // Compared before the state is built: most contacts of a queue that moved have nothing new.
    const place = contact.state === 'connected' ? undefined : this.engine.placeOf(contact.contactId);
    const now: Told = { phase: phaseOf(contact), queueId: contact.queueId, position: place?.position ?? 0, estimatedWaitSeconds: place?.estimatedWaitSeconds ?? 0 };
    const last = this.told.get(contact.contactId);
    const same = last?.phase === now.phase && last.queueId === now.queueId && last.position === now.position && last.estimatedWaitSeconds === now.estimatedWaitSeconds;
    if (!always && same) return;
    this.told.set(contact.contactId, now);
    this.publish(subjects.routingContact(this.tenant, contact.contactId), encodeContactState(this.contactState(contact)), headers);
  }

  private toAgent(agentId: string, event: AgentEvent['event']): void {
    this.publish(subjects.routingAgent(this.tenant, agentId), AgentEvent.encode({ agentId, event }).finish());
  }

  private publish(subject: string, data: Uint8Array, headers?: MsgHdrs): void {
    try {
      this.nc.publish(subject, data, headers ? { headers } : undefined);
    } catch (error) {
      // The connection is closing: the apps ask for the state again when they reconnect.
      this.log.debug({ tenant: this.tenant, err: error }, 'routing event not published');
    }
  }

  contactState(contact: Readonly<Contact>): ContactState {
    const place = contact.state === 'connected' ? undefined : this.engine.placeOf(contact.contactId);
    return {
      contactId: contact.contactId,
      phase: phaseOf(contact),
      queueId: contact.queueId,
      channel: channelOf[contact.channel],
      position: contact.state === 'connected' ? 0 : (place?.position ?? 0),
      estimatedWaitSeconds: contact.state === 'connected' ? 0 : (place?.estimatedWaitSeconds ?? 0),
      room: contact.state === 'connected' ? (contact.about?.room ?? roomOf(contact.contactId)) : '',
      agentId: contact.state === 'connected' ? (contact.agentId ?? '') : '',
      endReason: '',
      requestedAtMs: contact.requestedAtMs,
    };
  }

  private async offerOf(contact: Readonly<Contact>): Promise<Offer> {
    const about = await this.opened(contact);
    const shown = this.queueInfo.get(contact.queueId)?.contextFields;
    // Only the fields the queue lets agents see (none named: all of them). Never a phone number: the token's contact details are not here at all.
    const context = shown ? Object.fromEntries(Object.entries(about.context).filter(([key]) => shown.includes(key))) : about.context;
    const lastTransfer = contact.about?.transfers?.at(-1);
    return {
      contactId: contact.contactId,
      queueId: contact.queueId,
      channel: channelOf[contact.channel],
      expiresAtMs: contact.offer?.expiresAtMs ?? 0,
      contextJson: JSON.stringify(context),
      name: about.name,
      requestedAtMs: contact.requestedAtMs,
      transferredBy: lastTransfer?.fromAgentId ?? '',
    };
  }

  private async opened(contact: Readonly<Contact>): Promise<SealedAbout> {
    if (!contact.about?.sealed) return { name: '', context: {} };
    try {
      return await openJson<SealedAbout>(this.keyring, this.tenant, `routing-contact:${contact.contactId}`, contact.about.sealed);
    } catch (error) {
      this.log.warn({ tenant: this.tenant, contactId: contact.contactId, err: error }, "a contact's details do not open; offered without them");
      return { name: '', context: {} };
    }
  }

  async agentState(agentId: string): Promise<AgentState> {
    const agent = this.engine.agents.get(agentId);
    if (!agent) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such agent');
    const offered = agent.offeredContactId ? this.engine.contacts.get(agent.offeredContactId) : undefined;
    const held = this.engine.heldBy(agentId);
    const busy = agent.status === 'available' && held.length > 0;
    const handingOver = held.filter((c) => c.handingOver?.includes(agentId));
    return {
      agentId,
      status: busy ? AgentStatus.AGENT_STATUS_BUSY : statusOf[agent.status],
      reason: agent.awayReason ?? '',
      offer: offered ? await this.offerOf(offered) : undefined,
      // A contact handed over warm is in its room whatever its phase: the room is said.
      contacts: held.map((c) => ({ ...this.contactState(c), room: c.about?.room ?? roomOf(c.contactId) })),
      wrapUpContactIds: (agent.pendingRecords ?? []).map((p) => p.contactId),
      handingOverContactIds: handingOver.map((c) => c.contactId),
    };
  }

  /** The supervisors' view (and the metrics' source at each scrape): one walk over the queued contacts and the agents. */
  queueView(): QueueView {
    const nowMs = this.now();
    const agents = [...this.engine.agents.values()].map((agent) => ({ agent, held: this.engine.heldBy(agent.agentId) }));
    const connected = new Map<string, number>();
    for (const { held } of agents) for (const contact of held) connected.set(contact.queueId, (connected.get(contact.queueId) ?? 0) + 1);
    return {
      atMs: nowMs,
      queues: [...this.engine.queues.values()].map((queue) => {
        const waiting = this.engine.queuedIn(queue.queueId);
        let longestWaitSeconds = 0;
        let offered = 0;
        for (const contact of waiting) {
          longestWaitSeconds = Math.max(longestWaitSeconds, Math.floor((nowMs - contact.requestedAtMs) / 1000));
          if (contact.state === 'offered') offered++;
        }
        // The last in the order of service waits the longest from now.
        const last = waiting.at(-1);
        return {
          queueId: queue.queueId,
          name: this.queueInfo.get(queue.queueId)?.name ?? queue.queueId,
          waiting: waiting.length,
          longestWaitSeconds,
          offered,
          connected: connected.get(queue.queueId) ?? 0,
          ...this.statistics.today(queue.queueId),
          estimatedWaitSeconds: Math.max(0, last ? (this.engine.placeOf(last.contactId)?.estimatedWaitSeconds ?? 0) : 0),
          serviceLevelSeconds: queue.serviceLevelSeconds,
        };
      }),
      agents: agents.map(({ agent, held }) => ({
        agentId: agent.agentId,
        name: this.people.get(agent.agentId)?.name ?? '',
        status: agent.status === 'available' && held.length > 0 ? AgentStatus.AGENT_STATUS_BUSY : statusOf[agent.status],
        reason: agent.awayReason ?? '',
        contactIds: held.map((c) => c.contactId),
        rooms: held.map((c) => c.about?.room ?? roomOf(c.contactId)),
      })),
    };
  }

  private agentOf(agentId: string): Agent {
    const person = this.people.get(agentId);
    if (!person?.roles.includes('agent')) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'not an agent of this tenant');
    const agent = this.engine.agents.get(agentId);
    if (!agent) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such agent');
    return agent;
  }

  /** A contact, only for the end user who asked for it (anyone else: as if it did not exist). */
  private contactOf(contactId: string, endUser: string): Contact {
    const contact = this.engine.contacts.get(contactId);
    if (!contact || contact.about?.endUser !== endUser) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact');
    return contact;
  }
}

/** What a contact was last told of where it stands. */
interface Told {
  phase: ContactPhase;
  queueId: string;
  position: number;
  estimatedWaitSeconds: number;
}

function phaseOf(contact: Readonly<Contact>): ContactPhase {
  if (contact.state === 'connected') return ContactPhase.CONTACT_PHASE_CONNECTED;
  if (contact.state === 'offered') return ContactPhase.CONTACT_PHASE_OFFERED;
  return contact.callback ? ContactPhase.CONTACT_PHASE_CALLBACK : ContactPhase.CONTACT_PHASE_QUEUED;
}

/** What a contact's spans say of it: ids and kinds only, never a name, the context or a phone number. */
const contactAttributes = (tenant: string, contact: Readonly<Contact>) => ({
  'gateway.tenant': tenant,
  'gateway.queue_id': contact.queueId,
  'gateway.channel': contact.channel,
  'gateway.contact_id': contact.contactId,
});

/** The room of a contact: named after it, so every replica names it alike. */
export const roomOf = (contactId: string) => `cc_${contactId}`;

const ok = (): Reply => ({ result: { $case: 'ok', value: {} } });

function emptyContactState(): ContactState {
  return {
    contactId: '',
    phase: ContactPhase.CONTACT_PHASE_UNSPECIFIED,
    queueId: '',
    channel: Channel.CHANNEL_UNSPECIFIED,
    position: 0,
    estimatedWaitSeconds: 0,
    room: '',
    agentId: '',
    endReason: '',
    requestedAtMs: 0,
  };
}

const encodeContactState = (state: ContactState) => ContactStateMessage.encode(state).finish();
const encodeQueueView = (view: QueueView) => QueueViewMessage.encode(view).finish();
