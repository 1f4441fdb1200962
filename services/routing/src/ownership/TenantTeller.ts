import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import { contextFromTraceparent, natsHeadersWithTrace, recordSpan, subjects, type Logger } from '@gateway/common';
import { AgentEvent, ContactPhase, QueueView as QueueViewMessage, type ContactState, type QueueView } from '@gateway/proto/gateway/routing/v1/routing';
import type { RoutingEngine } from '../engine/RoutingEngine.js';
import type { RoutingEvent } from '../engine/events.js';
import type { Contact } from '../engine/model.js';
import { emptyContactState, encodeContactState, phaseOf, type TenantViews } from './TenantViews.js';

/** What a contact was last told of where it stands. */
interface Told {
  phase: ContactPhase;
  queueId: string;
  position: number;
  estimatedWaitSeconds: number;
}

/**
 * What a tenant's agents, end users and supervisors are told as its routing changes (docs/routing.md):
 * each decision's events to those concerned, a waiting contact's new place, the offers each agent
 * holds (again after a reload, where the store differs from what they were told), and each offer
 * as a span of its contact's trace. Publishing is best effort: the apps ask for the state again
 * when they reconnect.
 */
export class TenantTeller {
  /** What each waiting contact was last told (position, estimate, phase), to tell only changes. */
  private readonly told = new Map<string, Told>();
  /** The offer each agent was last told of and not told is over (agent id -> contact id). */
  private readonly toldOffers = new Map<string, string>();
  /** When each offer out was made (or, made by a previous owner, first seen here): its span's start. */
  private readonly offeredAt = new Map<string, number>();

  constructor(
    private readonly tenant: string,
    private readonly nc: NatsConnection,
    private readonly engine: RoutingEngine,
    private readonly views: TenantViews,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  async tell(event: RoutingEvent, contact: Readonly<Contact> | undefined): Promise<void> {
    this.noteOffers(event);
    switch (event.type) {
      case 'offered': {
        if (!contact) return;
        this.toAgent(event.agentId, { $case: 'offered', value: await this.views.offerOf(contact) });
        this.toContact(contact);
        return;
      }
      case 'offer_expired':
      case 'declined':
        this.toAgent(event.agentId, { $case: 'offerWithdrawn', value: { contactId: event.contactId, reason: event.type === 'declined' ? 'declined' : 'expired' } });
        return;
      case 'connected':
        if (!contact) return;
        this.toAgent(event.agentId, { $case: 'connected', value: this.views.contactState(contact) });
        // In the accept's trace: the end user's join token is minted under it.
        this.toContact(contact, false, natsHeadersWithTrace());
        // Those handing it over see who took it.
        for (const agentId of contact.handingOver ?? []) this.toAgent(agentId, { $case: 'state', value: await this.views.agentState(agentId) });
        return;
      case 'agent_status':
        this.toAgent(event.agentId, { $case: 'state', value: await this.views.agentState(event.agentId) });
        return;
      case 'overflowed':
      case 'callback_offered':
        if (contact) this.toContact(contact, true);
        return;
      case 'transferred': {
        // Cold: the first agent's part is over now. Warm: they keep the contact (in its room, busy) until they complete the hand-over.
        if (event.warm) this.toAgent(event.fromAgentId, { $case: 'state', value: await this.views.agentState(event.fromAgentId) });
        else
          this.toAgent(event.fromAgentId, { $case: 'ended', value: { ...(contact ? this.views.contactState(contact) : emptyContactState()), contactId: event.contactId, endReason: 'transferred' } });
        if (contact) this.toContact(contact, true);
        return;
      }
      case 'handed_over':
        this.toAgent(event.agentId, { $case: 'ended', value: { ...this.views.contactState(event.contact), phase: ContactPhase.CONTACT_PHASE_ENDED, endReason: 'transferred_warm' } });
        return;
      case 'ended': {
        const state: ContactState = {
          ...(contact ? this.views.contactState(contact) : emptyContactState()),
          contactId: event.contactId,
          phase: ContactPhase.CONTACT_PHASE_ENDED,
          position: 0,
          endReason: event.reason,
        };
        this.told.delete(event.contactId);
        this.publish(subjects.routingContact(this.tenant, event.contactId), encodeContactState(state));
        if (event.reason === 'abandoned' && event.contact.offer) this.toAgent(event.contact.offer.agentId, { $case: 'offerWithdrawn', value: { contactId: event.contactId, reason: 'abandoned' } });
        if (event.reason === 'completed' && event.contact.agentId) this.toAgent(event.contact.agentId, { $case: 'ended', value: state });
        return;
      }
    }
  }

  /** Which agent was told of which offer, as events go out. */
  private noteOffers(event: RoutingEvent): void {
    if (event.type === 'offered') this.toldOffers.set(event.agentId, event.contactId);
    else if (event.type === 'declined' || event.type === 'offer_expired' || event.type === 'connected') this.toldOffers.delete(event.agentId);
    else if (event.type === 'ended' && event.contact.offer) this.toldOffers.delete(event.contact.offer.agentId);
  }

  /** Tells each waiting contact whose place, estimate or phase changed (only queues where something moved can have one). */
  tellPositions(): void {
    for (const queueId of this.engine.takeMovedQueues()) for (const contact of this.engine.queuedIn(queueId)) this.toContact(contact);
  }

  /** The supervisors' view of the queues. */
  tellSupervisors(view: QueueView): void {
    this.publish(subjects.routingQueues(this.tenant), QueueViewMessage.encode(view).finish());
  }

  /**
   * After an operation that was not stored (the owner reloaded the tenant from the store), tells
   * the agents and end users where the store differs from what they were told: part of it may
   * have been stored after all (a write that went unanswered landed, then a half-made offer was
   * undone), and nobody may be left ringing for an offer that is not theirs, or not told of one
   * that is.
   */
  async tellAfterReload(): Promise<void> {
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
      this.toAgent(agent.agentId, { $case: 'offered', value: await this.views.offerOf(contact) });
    }
    for (const contact of this.engine.contacts.values()) this.toContact(contact);
  }

  /**
   * Each offer as a span of its contact's trace, from when it was made to its outcome (accepted,
   * declined, timed out, withdrawn when the end user left). An offer made by a previous owner
   * counts from when this one learned of it.
   */
  traceOffer(event: RoutingEvent, contact: Readonly<Contact> | undefined, nowMs: number): void {
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

  private toContact(contact: Readonly<Contact>, always = false, headers?: MsgHdrs): void {
    // Compared before the state is built: most contacts of a queue that moved have nothing new.
    const place = contact.state === 'connected' ? undefined : this.engine.placeOf(contact.contactId);
    const now: Told = { phase: phaseOf(contact), queueId: contact.queueId, position: place?.position ?? 0, estimatedWaitSeconds: place?.estimatedWaitSeconds ?? 0 };
    const last = this.told.get(contact.contactId);
    const same = last?.phase === now.phase && last.queueId === now.queueId && last.position === now.position && last.estimatedWaitSeconds === now.estimatedWaitSeconds;
    if (!always && same) return;
    this.told.set(contact.contactId, now);
    this.publish(subjects.routingContact(this.tenant, contact.contactId), encodeContactState(this.views.contactState(contact)), headers);
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
}

/** What a contact's spans say of it: ids and kinds only, never a name, the context or a phone number. */
export const contactAttributes = (tenant: string, contact: Readonly<Contact>) => ({
  'gateway.tenant': tenant,
  'gateway.queue_id': contact.queueId,
  'gateway.channel': contact.channel,
  'gateway.contact_id': contact.contactId,
});
