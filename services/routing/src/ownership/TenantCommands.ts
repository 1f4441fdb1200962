import { randomBytes } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ErrorCode, GatewayError, sealJson, traceparentOf, type Keyring } from '@gateway/common';
import { AgentStatus, Channel, type Command, type ContactRecord, ContactPhase, type ContactState, type Reply } from '@gateway/proto/gateway/routing/v1/routing';
import type { RoutingEngine } from '../engine/RoutingEngine.js';
import type { RoutingEvent } from '../engine/events.js';
import type { Agent, Channel as ChannelName, Contact, PendingRecord } from '../engine/model.js';
import { MAX_PENDING_RECORDS } from '../state/RoutingRecords.js';
import { isOpen } from '../directory/businessHours.js';
import type { TenantDirectory } from '../directory/view.js';
import type { AppPresence } from './AppPresence.js';
import { contactRecordOf, pendingRecordOf, publishContactRecord } from './contactRecords.js';
import type { QueueStatistics } from './QueueStatistics.js';
import { emptyContactState, roomOf, type SealedAbout, type TenantViews } from './TenantViews.js';

export const channelNames: Record<number, ChannelName | undefined> = { [Channel.CHANNEL_VOICE]: 'voice', [Channel.CHANNEL_VIDEO]: 'video', [Channel.CHANNEL_CHAT]: 'chat' };

export const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const identity = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[^\u0000-\u001f\u007f]+$/);
const reference = z.string().min(1).max(64);
/** The app's context: string values only, 32 fields, 4 KiB of JSON. */
const contextSchema = z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.string().max(1_024)).refine((c) => Object.keys(c).length <= 32, 'at most 32 context fields');
const MAX_CONTEXT_JSON = 4 * 1024;

/** What the commands ask of the tenant's routing: every change goes through the owner and is told (TenantRouting.run). */
export interface CommandHost {
  run(kind: string, operation: (engine: RoutingEngine) => RoutingEvent[]): Promise<void>;
  sendRecord(record: ContactRecord): Promise<void>;
  /** Something supervisors must see changed without an event (a contact that only waits). */
  queuesChanged(): void;
}

/**
 * The commands of a tenant's agents, end users and supervisors (docs/routing.md), each checked
 * (who may, on what) before it is run on the engine through the host, which stores the decision
 * before it counts and tells everyone concerned; the answer is the state as it is after.
 */
export class TenantCommands {
  constructor(
    private readonly tenant: string,
    private readonly nc: NatsConnection,
    private readonly engine: RoutingEngine,
    private readonly directory: TenantDirectory,
    private readonly views: TenantViews,
    private readonly presence: AppPresence,
    private readonly statistics: QueueStatistics,
    private readonly keyring: Keyring,
    private readonly host: CommandHost,
    private readonly now: () => number,
  ) {}

  async serve(command: NonNullable<Command['command']>): Promise<Reply> {
    const nowMs = this.now();
    switch (command.$case) {
      case 'requestSupport':
        return { result: { $case: 'contact', value: await this.requestSupport(command.value) } };
      case 'withdraw': {
        const contact = this.contactOf(command.value.contactId, command.value.by);
        await this.host.run('withdraw', (engine) => engine.abandon(contact.contactId));
        return ok();
      }
      case 'presence':
        for (const agentId of command.value.agentIds.slice(0, 10_000)) {
          if (!id.safeParse(agentId).success || !this.engine.agents.has(agentId)) continue;
          this.presence.agentSeen(agentId, nowMs);
          if (this.engine.agents.get(agentId)?.beforeDisconnect) await this.host.run('reconnect', (engine) => engine.reconnect(agentId, nowMs));
        }
        return ok();
      case 'endUserPresence':
        for (const contactId of command.value.contactIds.slice(0, 100_000)) if (this.engine.contacts.has(contactId)) this.presence.contactSeen(contactId, nowMs);
        return ok();
      case 'disconnected': {
        const agentId = this.agentOf(command.value.agentId).agentId;
        await this.host.run('disconnect', (engine) => engine.disconnect(agentId, nowMs));
        return ok();
      }
      case 'setStatus': {
        const agent = this.agentOf(command.value.agentId);
        const status = command.value.status === AgentStatus.AGENT_STATUS_AVAILABLE ? 'available' : command.value.status === AgentStatus.AGENT_STATUS_AWAY ? 'away' : undefined;
        if (!status) throw new GatewayError(ErrorCode.BAD_REQUEST, 'an agent sets itself available or away');
        const reason = command.value.reason.slice(0, 64) || undefined;
        this.presence.agentSeen(agent.agentId, nowMs);
        await this.host.run('setStatus', (engine) => [...engine.setStatus(agent.agentId, status, nowMs, reason), ...engine.assign(nowMs)]);
        return { result: { $case: 'agent', value: await this.views.agentState(agent.agentId) } };
      }
      case 'accept': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        // Already theirs: the answer to an accept that took longer than the caller waited (a
        // write riding out a leader election) is given again, so the agent gets their join token.
        const held = this.engine.contacts.get(contactId);
        if (held?.state === 'connected' && held.agentId === agent.agentId) return { result: { $case: 'contact', value: this.views.contactState(held) } };
        await this.host.run('accept', (engine) => {
          const events = engine.accept(contactId, agent.agentId);
          const contact = engine.contacts.get(contactId);
          if (contact?.about) {
            contact.about.connectedAtMs ??= nowMs;
            contact.about.room ??= roomOf(contactId);
          }
          return [...events, ...engine.assign(nowMs)];
        });
        return { result: { $case: 'contact', value: this.views.contactState(this.engine.contacts.get(contactId)!) } };
      }
      case 'decline': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        await this.host.run('decline', (engine) => [...engine.decline(contactId, agent.agentId), ...engine.assign(nowMs)]);
        return ok();
      }
      case 'transfer': {
        const agent = this.agentOf(command.value.agentId);
        const contactId = id.parse(command.value.contactId);
        const toAgentId = command.value.toAgentId ? this.agentOf(command.value.toAgentId).agentId : undefined;
        const toQueueId = command.value.toQueueId ? id.parse(command.value.toQueueId) : this.engine.contacts.get(contactId)?.queueId;
        if (!toQueueId) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact');
        if (toAgentId === agent.agentId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a contact is not transferred to the agent who holds it');
        await this.host.run('transfer', (engine) => {
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
        await this.host.run('completeTransfer', (engine) => [...engine.completeTransfer(contactId, agent.agentId), ...engine.assign(nowMs)]);
        return { result: { $case: 'agent', value: await this.views.agentState(agent.agentId) } };
      }
      case 'end': {
        const agent = this.agentOf(command.value.agentId);
        const contact = this.engine.contacts.get(id.parse(command.value.contactId));
        if (!contact || contact.agentId !== agent.agentId) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact of this agent');
        let overflowing: PendingRecord[] = [];
        await this.host.run('end', (engine) => {
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
        for (const pending of overflowing) if (!pending.handedOver) await this.host.sendRecord(contactRecordOf(this.tenant, pending, 'completed'));
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
        await this.host.run('wrapUp', (engine) => {
          const held = engine.agents.get(agent.agentId);
          if (!held) return [];
          held.pendingRecords = held.pendingRecords?.filter((p) => p.contactId !== contactId);
          if (held.pendingRecords?.length === 0) held.pendingRecords = undefined;
          engine.touch('agents', agent.agentId);
          // The last of its contacts wrapped up: available again, or away.
          const events = held.status === 'after_contact_work' && !held.pendingRecords ? engine.wrapUp(agent.agentId, nowMs, next, reason) : [];
          return [...events, ...engine.assign(nowMs)];
        });
        return { result: { $case: 'agent', value: await this.views.agentState(agent.agentId) } };
      }
      case 'agentState': {
        const agent = this.agentOf(command.value.agentId);
        this.presence.agentSeen(agent.agentId, nowMs);
        if (agent.beforeDisconnect) await this.host.run('reconnect', (engine) => engine.reconnect(agent.agentId, nowMs));
        return { result: { $case: 'agent', value: await this.views.agentState(agent.agentId) } };
      }
      case 'contactState': {
        const contact = this.contactOf(command.value.contactId, command.value.by);
        this.presence.contactSeen(contact.contactId, nowMs);
        return { result: { $case: 'contact', value: this.views.contactState(contact) } };
      }
      case 'queueView': {
        const person = this.directory.people.get(command.value.supervisorId);
        if (!person?.roles.includes('supervisor')) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only a supervisor sees the queues');
        return { result: { $case: 'queues', value: this.views.queueView() } };
      }
      case 'supervise': {
        const person = this.directory.people.get(command.value.supervisorId);
        if (!person?.roles.includes('supervisor')) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only a supervisor watches over contacts');
        const contact = this.engine.contacts.get(id.parse(command.value.contactId));
        if (!contact) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such contact');
        // Its room exists from the first accept until it ends (through transfers, whoever holds it).
        if (contact.state === 'ended' || !contact.about?.room) throw new GatewayError(ErrorCode.INVALID_STATE, 'the contact is not in a call');
        return { result: { $case: 'contact', value: this.views.contactState(contact) } };
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
      this.presence.contactSeen(existing.contactId, nowMs);
      return this.views.contactState(existing);
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
    const hours = this.directory.queues.get(queueId.data)?.businessHours;
    // Outside the queue's hours the end user need not hold on: a callback, keeping their place.
    const closed = hours !== undefined && !isOpen(hours, nowMs);
    const crmContactId = request.crmContactId ? reference.parse(request.crmContactId) : undefined;
    // The contact's trace, kept with its record: whoever owns the tenant later records in it.
    const traceparent = traceparentOf();
    await this.host.run('requestSupport', (engine) => {
      const contact = engine.enqueue(
        { contactId, queueId: queueId.data, channel, about: { endUser, sealed, ...(crmContactId ? { crmContactId } : {}), ...(traceparent ? { traceparent } : {}) } },
        nowMs,
      );
      if (!closed) return engine.assign(nowMs);
      contact.callback = true;
      return [{ type: 'callback_offered', contactId }];
    });
    this.presence.contactSeen(contactId, nowMs);
    this.statistics.requested(queueId.data);
    // A contact that only waits (no agent free) makes no event, and supervisors must see it.
    this.host.queuesChanged();
    const contact = this.engine.contacts.get(contactId);
    // Offered in the same breath: the state says so.
    return contact ? this.views.contactState(contact) : { ...emptyContactState(), contactId, phase: ContactPhase.CONTACT_PHASE_ENDED };
  }

  private agentOf(agentId: string): Agent {
    const person = this.directory.people.get(agentId);
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

const ok = (): Reply => ({ result: { $case: 'ok', value: {} } });
