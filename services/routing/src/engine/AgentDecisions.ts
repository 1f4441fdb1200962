import { capacityOf } from './eligibility.js';
import type { EngineState } from './EngineState.js';
import { type RoutingEvent, RoutingRefusal } from './events.js';
import { type Agent, type AgentStatus, type CapacityKind, type Contact, capacityKindOf } from './model.js';

/**
 * The agent-side decisions (docs/routing.md): an agent's status (and its app going and coming
 * back), their answers to an offer, offers that time out on them, and their capacity as their
 * contacts start and end. Whenever an agent may take a contact again, the queues they serve
 * (and contacts transferred to them by name) are marked for the next pass, which picks the
 * contact to offer them.
 */
export class AgentDecisions {
  constructor(private readonly state: EngineState) {}

  /** Adds an agent (offline) or changes their profile and skills. */
  setAgent(agent: Pick<Agent, 'agentId' | 'profileId' | 'skills'>, nowMs: number): Agent {
    const { agents, indexes } = this.state;
    const existing = agents.get(agent.agentId);
    const next: Agent = existing ? { ...existing, profileId: agent.profileId, skills: agent.skills } : { ...agent, status: 'offline', load: { call: 0, chat: 0 }, idleSinceMs: nowMs, missedOffers: 0 };
    if (existing && existing.profileId !== next.profileId && existing.status !== 'offline') {
      indexes.servingChanged(existing);
      indexes.servingChanged(next);
    }
    agents.set(agent.agentId, next);
    indexes.refreshFree(next);
    this.state.touched.agents.add(agent.agentId);
    this.state.scope.lookAtEverything();
    return next;
  }

  /**
   * The agent's own choice of status. Going available from anything else starts their idle time
   * now; leaving available withdraws an offer they hold (it goes to the next agent at once).
   */
  setStatus(agentId: string, status: AgentStatus, nowMs: number, reason?: string): RoutingEvent[] {
    const { indexes } = this.state;
    const agent = this.state.agent(agentId);
    const events: RoutingEvent[] = [];
    this.state.touched.agents.add(agentId);
    // Gone for good: no longer in the rooms of the contacts they were handing over.
    if (status === 'offline') for (const contact of indexes.heldBy(agentId)) if (contact.handingOver?.includes(agentId)) events.push(...this.endPart(contact, agentId));
    agent.beforeDisconnect = undefined;
    if (status !== 'available' && agent.offeredContactId) events.push(...this.withdrawOffer(agent, 'offer_expired'));
    if (status === 'available' && agent.status !== 'available') {
      agent.idleSinceMs = nowMs;
      agent.missedOffers = 0;
    }
    if ((agent.status === 'offline') !== (status === 'offline')) indexes.servingChanged(agent);
    agent.status = status;
    indexes.refreshFree(agent);
    agent.awayReason = status === 'away' ? reason : undefined;
    if (status === 'available') this.state.markAgent(agent);
    events.push({ type: 'agent_status', agentId, status, ...(agent.awayReason ? { reason: agent.awayReason } : {}) });
    return events;
  }

  /**
   * The agent's app went away without saying so: an offer it holds moves on at once, nothing more
   * is offered (away, `disconnected`), and the status it had is kept for a return (reconnect).
   */
  disconnect(agentId: string, nowMs: number): RoutingEvent[] {
    const agent = this.state.agent(agentId);
    if (agent.status === 'offline' || agent.beforeDisconnect) return [];
    const before = agent.status;
    const events = this.setStatus(agentId, 'away', nowMs, 'disconnected');
    agent.beforeDisconnect = before;
    return events;
  }

  /** The agent's app is back within the grace period: the status it had before (a no-op if it never left). */
  reconnect(agentId: string, nowMs: number): RoutingEvent[] {
    const agent = this.state.agent(agentId);
    const before = agent.beforeDisconnect;
    if (!before) return [];
    return this.setStatus(agentId, before, nowMs);
  }

  /** The agent takes the contact offered to them. */
  accept(contactId: string, agentId: string): RoutingEvent[] {
    const { indexes } = this.state;
    const contact = this.state.contacts.get(contactId);
    const agent = this.state.agent(agentId);
    if (contact?.state !== 'offered' || contact.offer?.agentId !== agentId) {
      throw new RoutingRefusal('OFFER_MOVED_ON', 'this offer is no longer yours: it timed out, was withdrawn or went to another agent');
    }
    const kind = capacityKindOf(contact.channel);
    if (agent.load[kind] >= capacityOf(agent, kind, this.state.profiles)) throw new RoutingRefusal('NO_CAPACITY', 'no room for another contact of this kind');
    this.state.touched.agents.add(agentId);
    this.state.touched.contacts.add(contactId);
    agent.offeredContactId = undefined;
    indexes.refreshFree(agent);
    agent.load[kind]++;
    // Free for an offer again (a chat beside this call, say).
    this.state.markAgent(agent);
    agent.missedOffers = 0;
    contact.state = 'connected';
    contact.offer = undefined;
    contact.agentId = agentId;
    contact.targetAgentId = undefined;
    indexes.refile(contact);
    return [{ type: 'connected', contactId, agentId }];
  }

  /** The agent turns the offer down: it goes to the next agent. */
  decline(contactId: string, agentId: string): RoutingEvent[] {
    const contact = this.state.contacts.get(contactId);
    if (!contact || contact.offer?.agentId !== agentId) throw new RoutingRefusal('OFFER_MOVED_ON', 'this offer is no longer yours');
    return this.withdrawOffer(this.state.agent(agentId), 'declined');
  }

  /** After-contact work done: available again, or away by the agent's choice. */
  wrapUp(agentId: string, nowMs: number, next: 'available' | 'away' = 'available', reason?: string): RoutingEvent[] {
    const agent = this.state.agent(agentId);
    if (agent.status !== 'after_contact_work') throw new RoutingRefusal('INVALID_STATE', 'not in after-contact work');
    return this.setStatus(agentId, next, nowMs, reason);
  }

  /** Offers past their time go to the next agent, and an agent who let too many go in a row is set away. */
  expireOffers(nowMs: number): RoutingEvent[] {
    const events: RoutingEvent[] = [];
    for (const contact of this.state.contacts.values()) {
      if (contact.state === 'offered' && contact.offer && contact.offer.expiresAtMs <= nowMs) {
        const agent = this.state.agents.get(contact.offer.agentId);
        if (!agent) {
          contact.state = 'waiting';
          contact.offer = undefined;
          this.state.touched.contacts.add(contact.contactId);
          this.state.indexes.refile(contact);
          continue;
        }
        events.push(...this.withdrawOffer(agent, 'offer_expired'));
        agent.missedOffers++;
        if (agent.missedOffers >= this.state.options.missedOffersBeforeAway) events.push(...this.setStatus(agent.agentId, 'away', nowMs, 'missed_offers'));
      }
    }
    return events;
  }

  /** The contact offered to the agent is gone (the end user left): they are free for another. */
  offerGone(agent: Agent): void {
    agent.offeredContactId = undefined;
    this.state.indexes.refreshFree(agent);
    this.state.touched.agents.add(agent.agentId);
    this.state.markAgent(agent);
  }

  /** One contact of `kind` no longer counts against the agent's capacity. */
  releaseCapacity(agent: Agent, kind: CapacityKind): void {
    agent.load[kind] = Math.max(0, agent.load[kind] - 1);
    this.state.markAgent(agent);
  }

  /** The agent's contact ended: their capacity back, after-contact work when it was their last contact. */
  contactEnded(agent: Agent, contact: Contact): RoutingEvent[] {
    this.state.touched.agents.add(agent.agentId);
    this.releaseCapacity(agent, capacityKindOf(contact.channel));
    if (agent.load.call + agent.load.chat > 0) return [];
    // An agent who went offline holding the contact is back to wrap it up.
    if (agent.status === 'offline') this.state.indexes.servingChanged(agent);
    agent.status = 'after_contact_work';
    this.state.indexes.refreshFree(agent);
    return [{ type: 'agent_status', agentId: agent.agentId, status: 'after_contact_work' }];
  }

  /** Ends an agent's part of a warm transfer: their capacity back, after-contact work when it was their last contact. */
  endPart(contact: Contact, agentId: string): RoutingEvent[] {
    const asItWas = structuredClone(contact);
    const rest = (contact.handingOver ?? []).filter((id) => id !== agentId);
    contact.handingOver = rest.length > 0 ? rest : undefined;
    this.state.indexes.refile(contact);
    this.state.touched.contacts.add(contact.contactId);
    const events: RoutingEvent[] = [{ type: 'handed_over', contactId: contact.contactId, agentId, contact: asItWas }];
    const agent = this.state.agents.get(agentId);
    if (!agent) return events;
    this.state.touched.agents.add(agentId);
    this.releaseCapacity(agent, capacityKindOf(contact.channel));
    if (agent.load.call + agent.load.chat === 0 && agent.status !== 'offline') {
      agent.status = 'after_contact_work';
      this.state.indexes.refreshFree(agent);
      events.push({ type: 'agent_status', agentId, status: 'after_contact_work' });
    }
    return events;
  }

  /** Takes an offer back from an agent: the contact waits again, passed by them. */
  private withdrawOffer(agent: Agent, why: 'declined' | 'offer_expired'): RoutingEvent[] {
    const contactId = agent.offeredContactId;
    agent.offeredContactId = undefined;
    this.state.indexes.refreshFree(agent);
    this.state.touched.agents.add(agent.agentId);
    if (contactId) this.state.touched.contacts.add(contactId);
    this.state.markAgent(agent);
    const contact = contactId ? this.state.contacts.get(contactId) : undefined;
    if (!contact || contact.offer?.agentId !== agent.agentId) return [];
    contact.state = 'waiting';
    contact.offer = undefined;
    this.state.indexes.refile(contact);
    this.state.scope.queueChanged(contact.queueId);
    if (!contact.passedBy.includes(agent.agentId)) contact.passedBy.push(agent.agentId);
    return [{ type: why, contactId: contact.contactId, agentId: agent.agentId }];
  }
}
