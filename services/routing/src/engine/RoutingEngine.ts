import { capacityOf, eligible, freeAgentsByQueue, serversOf, targetPool } from './eligibility.js';
import { type Agent, type AgentStatus, type CapacityKind, type Contact, type ContactAbout, capacityKindOf, type Queue, type RoutingProfile } from './model.js';
import { type RoutingEvent, RoutingRefusal } from './events.js';
import { type QueuePosition, RoutingIndexes } from './RoutingIndexes.js';

export interface EngineOptions {
  /** An offer not answered within this goes to the next agent (default 15 s). */
  offerTimeoutMs: number;
  /** Offers in a row an agent lets time out before being set away (default 2). */
  missedOffersBeforeAway: number;
  /** Every pass looks at every queue (slower; the reference the incremental passes are checked against). */
  fullPasses: boolean;
}

/**
 * The routing decisions of one tenant (docs/routing.md), over its state in memory: which waiting
 * contact is offered to which agent, offers that time out, overflow, callbacks, and the order of
 * service. Deterministic for a given state and clock, so a new owner that loads the stored state
 * decides as the old one would have.
 *
 * The order: contacts by their queue's priority (as the agents' profiles rank it), then by their
 * own priority, then by when they asked; for each, the first eligible agent of the queue's
 * ranking (`eligibility.ts`) who has not passed on this contact (unless everyone eligible has).
 * What the decisions read without walking the tenant is kept in `RoutingIndexes`.
 */
export class RoutingEngine {
  readonly queues = new Map<string, Queue>();
  readonly profiles = new Map<string, RoutingProfile>();
  /** Read them freely; change agents' and contacts' routing fields only through the methods below, which keep the indexes. */
  readonly agents = new Map<string, Agent>();
  readonly contacts = new Map<string, Contact>();
  /**
   * The agents and contacts changed since the owner last took them (takeTouched): the owner
   * stores only these, so a command costs what it changed, not the size of the tenant.
   */
  private touched = { agents: new Set<string>(), contacts: new Set<string>() };
  /**
   * Queues where something changed since the last pass (a contact came or came back, an agent
   * who serves them became free): a pass looks only at these, as nothing else can have a new
   * offer to make. Queues some profile serves with a delay are always looked at, since waiting
   * alone makes their contacts eligible. Everything is looked at after a change of queues,
   * profiles or agents' skills.
   */
  private readonly dirty = new Set<string>();
  /** Agents who became free since the last pass: a contact transferred to one of them by name is looked at wherever it waits. */
  private readonly freed = new Set<string>();
  private everything = true;
  private delayed = new Set<string>();
  /** Where every contact and agent is filed, so nothing the owner does per command walks the whole tenant. */
  private readonly indexes = new RoutingIndexes(this.agents, this.contacts, this.profiles);
  private readonly options: EngineOptions;

  constructor(options: Partial<EngineOptions> = {}) {
    this.options = { offerTimeoutMs: options.offerTimeoutMs ?? 15_000, missedOffersBeforeAway: options.missedOffersBeforeAway ?? 2, fullPasses: options.fullPasses ?? false };
  }

  /** What changed since the last call (ended contacts included: they are gone from `contacts`). */
  takeTouched(): { agents: Set<string>; contacts: Set<string> } {
    const taken = this.touched;
    this.touched = { agents: new Set(), contacts: new Set() };
    return taken;
  }

  /** A change made to an agent or contact outside the engine's own operations (the service's fields). */
  touch(kind: 'agents' | 'contacts', id: string): void {
    this.touched[kind].add(id);
  }

  setQueue(queue: Queue): void {
    this.queues.set(queue.queueId, queue);
    this.everything = true;
  }

  setProfile(profile: RoutingProfile): void {
    this.profiles.set(profile.profileId, profile);
    this.delayed = new Set([...this.profiles.values()].flatMap((p) => p.queues.filter((q) => q.delaySeconds).map((q) => q.queueId)));
    this.everything = true;
    this.indexes.profilesChanged();
  }

  /**
   * Replaces the agents and contacts with stored ones (an owner taking a tenant over): the next
   * pass looks at everything.
   */
  restore(agents: Iterable<Agent>, contacts: Iterable<Contact>): void {
    this.agents.clear();
    this.contacts.clear();
    this.indexes.clear();
    for (const agent of agents) {
      this.agents.set(agent.agentId, agent);
      this.indexes.refreshFree(agent);
    }
    for (const contact of contacts) {
      this.contacts.set(contact.contactId, contact);
      this.indexes.refile(contact);
    }
    this.everything = true;
  }

  /** Adds an agent (offline) or changes their profile and skills. */
  setAgent(agent: Pick<Agent, 'agentId' | 'profileId' | 'skills'>, nowMs: number): Agent {
    const existing = this.agents.get(agent.agentId);
    const next: Agent = existing ? { ...existing, profileId: agent.profileId, skills: agent.skills } : { ...agent, status: 'offline', load: { call: 0, chat: 0 }, idleSinceMs: nowMs, missedOffers: 0 };
    if (existing && existing.profileId !== next.profileId && existing.status !== 'offline') {
      this.indexes.servingChanged(existing);
      this.indexes.servingChanged(next);
    }
    this.agents.set(agent.agentId, next);
    this.indexes.refreshFree(next);
    this.touched.agents.add(agent.agentId);
    this.everything = true;
    return next;
  }

  /**
   * The agent's own choice of status. Going available from anything else starts their idle time
   * now; leaving available withdraws an offer they hold (it goes to the next agent at once).
   */
  setStatus(agentId: string, status: AgentStatus, nowMs: number, reason?: string): RoutingEvent[] {
    const agent = this.agent(agentId);
    const events: RoutingEvent[] = [];
    this.touched.agents.add(agentId);
    // Gone for good: no longer in the rooms of the contacts they were handing over.
    if (status === 'offline') for (const contact of this.heldBy(agentId)) if (contact.handingOver?.includes(agentId)) events.push(...this.endPart(contact, agentId));
    agent.beforeDisconnect = undefined;
    if (status !== 'available' && agent.offeredContactId) events.push(...this.withdrawOffer(agent, 'offer_expired'));
    if (status === 'available' && agent.status !== 'available') {
      agent.idleSinceMs = nowMs;
      agent.missedOffers = 0;
    }
    if ((agent.status === 'offline') !== (status === 'offline')) this.indexes.servingChanged(agent);
    agent.status = status;
    this.indexes.refreshFree(agent);
    agent.awayReason = status === 'away' ? reason : undefined;
    if (status === 'available') this.markAgent(agent);
    events.push({ type: 'agent_status', agentId, status, ...(agent.awayReason ? { reason: agent.awayReason } : {}) });
    return events;
  }

  /**
   * The agent's app went away without saying so: an offer it holds moves on at once, nothing more
   * is offered (away, `disconnected`), and the status it had is kept for a return (reconnect).
   */
  disconnect(agentId: string, nowMs: number): RoutingEvent[] {
    const agent = this.agent(agentId);
    if (agent.status === 'offline' || agent.beforeDisconnect) return [];
    const before = agent.status;
    const events = this.setStatus(agentId, 'away', nowMs, 'disconnected');
    agent.beforeDisconnect = before;
    return events;
  }

  /** The agent's app is back within the grace period: the status it had before (a no-op if it never left). */
  reconnect(agentId: string, nowMs: number): RoutingEvent[] {
    const agent = this.agent(agentId);
    const before = agent.beforeDisconnect;
    if (!before) return [];
    return this.setStatus(agentId, before, nowMs);
  }

  /** An end user asks for support (`about`: who, kept beside the decisions). */
  enqueue(contact: Pick<Contact, 'contactId' | 'queueId' | 'channel'> & { priority?: number; about?: ContactAbout }, nowMs: number): Contact {
    if (!this.queues.has(contact.queueId)) throw new RoutingRefusal('NOT_FOUND', 'no such queue');
    if (this.contacts.has(contact.contactId)) return this.contacts.get(contact.contactId)!;
    const added: Contact = { ...contact, priority: contact.priority ?? 0, requestedAtMs: nowMs, queuedAtMs: nowMs, state: 'waiting', passedBy: [] };
    this.contacts.set(added.contactId, added);
    this.indexes.refile(added);
    this.touched.contacts.add(added.contactId);
    this.dirty.add(added.queueId);
    return added;
  }

  /** The end user left the queue (or hung up while it rang). */
  abandon(contactId: string): RoutingEvent[] {
    const contact = this.contact(contactId);
    if (contact.state === 'connected' || contact.state === 'ended') throw new RoutingRefusal('INVALID_STATE', 'the contact is not waiting');
    const events: RoutingEvent[] = [];
    const asItWas = structuredClone(contact);
    if (contact.offer) {
      const agent = this.agents.get(contact.offer.agentId);
      if (agent) {
        agent.offeredContactId = undefined;
        this.indexes.refreshFree(agent);
        this.touched.agents.add(agent.agentId);
        this.markAgent(agent);
      }
    }
    this.touched.contacts.add(contactId);
    contact.offer = undefined;
    contact.state = 'ended';
    events.push({ type: 'ended', contactId, reason: 'abandoned', contact: asItWas });
    for (const handing of contact.handingOver ?? []) events.push(...this.endPart(contact, handing));
    this.contacts.delete(contactId);
    this.indexes.unfile(contactId);
    return events;
  }

  /** The agent takes the contact offered to them. */
  accept(contactId: string, agentId: string): RoutingEvent[] {
    const contact = this.contacts.get(contactId);
    const agent = this.agent(agentId);
    if (contact?.state !== 'offered' || contact.offer?.agentId !== agentId) {
      throw new RoutingRefusal('OFFER_MOVED_ON', 'this offer is no longer yours: it timed out, was withdrawn or went to another agent');
    }
    const kind = capacityKindOf(contact.channel);
    if (agent.load[kind] >= capacityOf(agent, kind, this.profiles)) throw new RoutingRefusal('NO_CAPACITY', 'no room for another contact of this kind');
    this.touched.agents.add(agentId);
    this.touched.contacts.add(contactId);
    agent.offeredContactId = undefined;
    this.indexes.refreshFree(agent);
    agent.load[kind]++;
    // Free for an offer again (a chat beside this call, say).
    this.markAgent(agent);
    agent.missedOffers = 0;
    contact.state = 'connected';
    contact.offer = undefined;
    contact.agentId = agentId;
    contact.targetAgentId = undefined;
    this.indexes.refile(contact);
    return [{ type: 'connected', contactId, agentId }];
  }

  /** The agent turns the offer down: it goes to the next agent. */
  decline(contactId: string, agentId: string): RoutingEvent[] {
    const contact = this.contacts.get(contactId);
    if (!contact || contact.offer?.agentId !== agentId) throw new RoutingRefusal('OFFER_MOVED_ON', 'this offer is no longer yours');
    return this.withdrawOffer(this.agent(agentId), 'declined');
  }

  /**
   * The contact ends (either side hung up): the agent goes to after-contact work when it was
   * their last contact; `handleSeconds` feeds the queue's estimated wait.
   */
  complete(contactId: string, nowMs: number, connectedAtMs: number): RoutingEvent[] {
    const contact = this.contact(contactId);
    if (contact.state !== 'connected' || !contact.agentId) throw new RoutingRefusal('INVALID_STATE', 'the contact is not connected');
    const agent = this.agents.get(contact.agentId);
    const events: RoutingEvent[] = [{ type: 'ended', contactId, reason: 'completed', contact: structuredClone(contact) }];
    this.touched.contacts.add(contactId);
    if (agent) {
      this.touched.agents.add(agent.agentId);
      const kind = capacityKindOf(contact.channel);
      agent.load[kind] = Math.max(0, agent.load[kind] - 1);
      this.markAgent(agent);
      if (agent.load.call + agent.load.chat === 0) {
        // An agent who went offline holding the contact is back to wrap it up.
        if (agent.status === 'offline') this.indexes.servingChanged(agent);
        agent.status = 'after_contact_work';
        this.indexes.refreshFree(agent);
        events.push({ type: 'agent_status', agentId: agent.agentId, status: 'after_contact_work' });
      }
    }
    for (const handing of contact.handingOver ?? []) events.push(...this.endPart(contact, handing));
    // The queue's estimated waits change with its handle time.
    this.indexes.handled(contact.queueId, Math.max(1, (nowMs - connectedAtMs) / 1000));
    this.contacts.delete(contactId);
    this.indexes.unfile(contactId);
    return events;
  }

  /**
   * A transfer: the contact waits again in `queueId` (ahead of others: it waited already), or
   * for one named agent only. Cold, the agent lets it go now; warm, they stay in its room and it
   * keeps counting against their capacity until they complete the hand-over (completeTransfer).
   */
  transfer(contactId: string, fromAgentId: string, to: { queueId: string; agentId?: string }, nowMs: number, options: { warm?: boolean } = {}): RoutingEvent[] {
    const contact = this.contact(contactId);
    const warm = options.warm ?? false;
    if (contact.state !== 'connected' || contact.agentId !== fromAgentId) throw new RoutingRefusal('INVALID_STATE', 'only the agent connected to the contact may transfer it');
    if (!this.queues.has(to.queueId)) throw new RoutingRefusal('NOT_FOUND', 'no such queue');
    if (to.agentId && !this.agents.has(to.agentId)) throw new RoutingRefusal('NOT_FOUND', 'no such agent');
    if (to.agentId && (to.agentId === fromAgentId || contact.handingOver?.includes(to.agentId)))
      throw new RoutingRefusal('INVALID_STATE', 'the contact is not transferred to an agent already in its room');
    const from = this.agent(fromAgentId);
    this.touched.agents.add(fromAgentId);
    this.touched.contacts.add(contactId);
    if (warm) {
      contact.handingOver = [...(contact.handingOver ?? []), fromAgentId];
    } else {
      const kind = capacityKindOf(contact.channel);
      from.load[kind] = Math.max(0, from.load[kind] - 1);
      this.markAgent(from);
    }
    this.dirty.add(to.queueId);
    Object.assign(contact, { state: 'waiting', queueId: to.queueId, queuedAtMs: nowMs, priority: contact.priority + 1, agentId: undefined, passedBy: [fromAgentId], targetAgentId: to.agentId });
    this.indexes.refile(contact);
    return [{ type: 'transferred', contactId, fromAgentId, queueId: to.queueId, ...(to.agentId ? { targetAgentId: to.agentId } : {}), warm }];
  }

  /**
   * The first agent of a warm transfer leaves the contact's room: their part is over, it no
   * longer counts against their capacity, and when it was their last contact they go to
   * after-contact work (for their part). The contact goes on, waiting for or with the next agent.
   */
  completeTransfer(contactId: string, agentId: string): RoutingEvent[] {
    const contact = this.contact(contactId);
    if (!contact.handingOver?.includes(agentId)) throw new RoutingRefusal('INVALID_STATE', 'this agent is not handing the contact over');
    return this.endPart(contact, agentId);
  }

  /** After-contact work done: available again, or away by the agent's choice. */
  wrapUp(agentId: string, nowMs: number, next: 'available' | 'away' = 'available', reason?: string): RoutingEvent[] {
    const agent = this.agent(agentId);
    if (agent.status !== 'after_contact_work') throw new RoutingRefusal('INVALID_STATE', 'not in after-contact work');
    return this.setStatus(agentId, next, nowMs, reason);
  }

  /**
   * Time passes: offers past their time go to the next agent (and an agent who let too many go
   * is set away), contacts overflow or are offered a callback, then every waiting contact that
   * has an eligible agent is offered.
   */
  tick(nowMs: number): RoutingEvent[] {
    const events: RoutingEvent[] = [];
    for (const contact of this.contacts.values()) {
      if (contact.state === 'offered' && contact.offer && contact.offer.expiresAtMs <= nowMs) {
        const agent = this.agents.get(contact.offer.agentId);
        if (!agent) {
          contact.state = 'waiting';
          contact.offer = undefined;
          this.touched.contacts.add(contact.contactId);
          this.indexes.refile(contact);
          continue;
        }
        events.push(...this.withdrawOffer(agent, 'offer_expired'));
        agent.missedOffers++;
        if (agent.missedOffers >= this.options.missedOffersBeforeAway) events.push(...this.setStatus(agent.agentId, 'away', nowMs, 'missed_offers'));
      }
    }
    for (const contact of this.contacts.values()) {
      if (contact.state !== 'waiting') continue;
      const queue = this.queues.get(contact.queueId);
      if (!queue) continue;
      const waited = (nowMs - contact.queuedAtMs) / 1000;
      if (queue.overflow && waited >= queue.overflow.afterSeconds && this.queues.has(queue.overflow.queueId)) {
        events.push({ type: 'overflowed', contactId: contact.contactId, fromQueueId: queue.queueId, toQueueId: queue.overflow.queueId });
        contact.queueId = queue.overflow.queueId;
        this.touched.contacts.add(contact.contactId);
        this.dirty.add(contact.queueId);
        contact.queuedAtMs = nowMs;
        this.indexes.refile(contact);
        continue;
      }
      if (!contact.callback && queue.maxWaitSeconds !== undefined && (nowMs - contact.requestedAtMs) / 1000 >= queue.maxWaitSeconds) {
        // The end user need not hold on: they keep their place and are called back into the app.
        contact.callback = true;
        this.touched.contacts.add(contact.contactId);
        this.indexes.markMoved(contact.queueId);
        events.push({ type: 'callback_offered', contactId: contact.contactId });
      }
    }
    events.push(...this.assign(nowMs));
    return events;
  }

  /**
   * Offers waiting contacts to eligible agents, in the order of service (see the class). The
   * agents who could serve a queue at all (free, serving it, skilled enough) are found once per
   * queue and ranked; a queue nobody free can serve is skipped whole, so thousands of waiting
   * contacts cost nothing while every agent is busy.
   */
  assign(nowMs: number): RoutingEvent[] {
    const events: RoutingEvent[] = [];
    let free = this.indexes.free.size;
    if (free === 0) return events;
    // Named for an agent now free, who may serve none of the queue's changes.
    for (const contact of this.indexes.targeted.values()) if (contact.state === 'waiting' && contact.targetAgentId && this.freed.has(contact.targetAgentId)) this.dirty.add(contact.queueId);
    this.freed.clear();
    const looked = this.everything || this.options.fullPasses ? this.indexes.queued.keys() : new Set([...this.dirty, ...this.delayed]);
    this.everything = false;
    this.dirty.clear();
    // Each queue's waiting and offered contacts in order (the offered ones are passed over below).
    const byQueue = new Map<string, readonly Contact[]>();
    for (const queueId of looked) if (this.indexes.queued.has(queueId)) byQueue.set(queueId, this.queuedIn(queueId));
    const queueOrder = [...byQueue.keys()].sort((a, b) => (this.queues.get(a)?.priority ?? 0) - (this.queues.get(b)?.priority ?? 0) || (a < b ? -1 : 1));
    const freeByQueue = freeAgentsByQueue(this.indexes.free, this.profiles);
    for (const queueId of queueOrder) {
      const queue = this.queues.get(queueId);
      if (!queue) continue;
      const pools = serversOf(queue, freeByQueue.get(queueId) ?? [], this.profiles);
      const open = (kind: CapacityKind) => pools[kind].some((agent) => !agent.offeredContactId);
      const exhausted: Record<CapacityKind, boolean> = { call: !open('call'), chat: !open('chat') };
      for (const contact of byQueue.get(queueId)!) {
        if (exhausted.call && exhausted.chat) break;
        if (contact.state !== 'waiting') continue;
        const kind = capacityKindOf(contact.channel);
        if (exhausted[kind] && !contact.targetAgentId) continue;
        // Only a transfer to a named agent goes to someone outside the queue's servers.
        const pool = contact.targetAgentId ? targetPool(this.agents, contact.targetAgentId) : pools[kind];
        let chosen: Agent | undefined;
        let passed: Agent | undefined;
        for (const agent of pool) {
          if (agent.offeredContactId || !eligible(agent, contact, queue, nowMs, this.profiles)) continue;
          if (!contact.passedBy.includes(agent.agentId)) {
            chosen = agent;
            break;
          }
          passed ??= agent;
        }
        if (!chosen && passed) {
          // Everyone eligible passed on it once: round again.
          contact.passedBy = [];
          chosen = passed;
        }
        if (!chosen) continue;
        const expiresAtMs = nowMs + (queue.offerTimeoutSeconds !== undefined ? queue.offerTimeoutSeconds * 1000 : this.options.offerTimeoutMs);
        contact.state = 'offered';
        contact.offer = { agentId: chosen.agentId, expiresAtMs };
        this.indexes.refile(contact);
        chosen.offeredContactId = contact.contactId;
        this.indexes.refreshFree(chosen);
        this.touched.contacts.add(contact.contactId);
        this.touched.agents.add(chosen.agentId);
        events.push({ type: 'offered', contactId: contact.contactId, agentId: chosen.agentId, expiresAtMs });
        if (--free === 0) return events;
        if (!contact.targetAgentId) exhausted[kind] = !open(kind);
      }
    }
    return events;
  }

  /** Where each waiting (or offered) contact stands in its queue, and a rough wait (see `placeOf`). */
  positions(): QueuePosition[] {
    return this.indexes.positions();
  }

  /**
   * Where a waiting (or offered) contact stands in its queue: its place in the order of service,
   * and a rough wait, its place times the queue's handle time, shared by the agents who serve it.
   */
  placeOf(contactId: string): QueuePosition | undefined {
    return this.indexes.placeOf(contactId);
  }

  /** The queue's waiting and offered contacts, in the order of service (do not change the array). */
  queuedIn(queueId: string): readonly Contact[] {
    return this.indexes.queuedIn(queueId);
  }

  /** The agents available and holding no offer. */
  freeAgentIds(): string[] {
    return [...this.indexes.free.keys()];
  }

  /** The contacts the agent holds (connected to them, or handed over warm and not yet left), oldest request first. */
  heldBy(agentId: string): Contact[] {
    return this.indexes.heldBy(agentId);
  }

  /** A contact the end user has (the first they asked for, when several). */
  contactOfEndUser(endUser: string): Contact | undefined {
    return this.indexes.contactOfEndUser(endUser);
  }

  /**
   * The queues where a place, an estimated wait or a phase may have changed since the last call:
   * the owner tells only their contacts.
   */
  takeMovedQueues(): Set<string> {
    return this.indexes.takeMovedQueues();
  }

  /** Ends an agent's part of a warm transfer: their capacity back, after-contact work when it was their last contact. */
  private endPart(contact: Contact, agentId: string): RoutingEvent[] {
    const asItWas = structuredClone(contact);
    const rest = (contact.handingOver ?? []).filter((id) => id !== agentId);
    contact.handingOver = rest.length > 0 ? rest : undefined;
    this.indexes.refile(contact);
    this.touched.contacts.add(contact.contactId);
    const events: RoutingEvent[] = [{ type: 'handed_over', contactId: contact.contactId, agentId, contact: asItWas }];
    const agent = this.agents.get(agentId);
    if (!agent) return events;
    this.touched.agents.add(agentId);
    const kind = capacityKindOf(contact.channel);
    agent.load[kind] = Math.max(0, agent.load[kind] - 1);
    this.markAgent(agent);
    if (agent.load.call + agent.load.chat === 0 && agent.status !== 'offline') {
      agent.status = 'after_contact_work';
      this.indexes.refreshFree(agent);
      events.push({ type: 'agent_status', agentId, status: 'after_contact_work' });
    }
    return events;
  }

  /** Takes an offer back from an agent: the contact waits again, passed by them. */
  private withdrawOffer(agent: Agent, why: 'declined' | 'offer_expired'): RoutingEvent[] {
    const contactId = agent.offeredContactId;
    agent.offeredContactId = undefined;
    this.indexes.refreshFree(agent);
    this.touched.agents.add(agent.agentId);
    if (contactId) this.touched.contacts.add(contactId);
    this.markAgent(agent);
    const contact = contactId ? this.contacts.get(contactId) : undefined;
    if (!contact || contact.offer?.agentId !== agent.agentId) return [];
    contact.state = 'waiting';
    contact.offer = undefined;
    this.indexes.refile(contact);
    this.dirty.add(contact.queueId);
    if (!contact.passedBy.includes(agent.agentId)) contact.passedBy.push(agent.agentId);
    return [{ type: why, contactId: contact.contactId, agentId: agent.agentId }];
  }

  /** The queues the agent serves may have an offer for them now. */
  private markAgent(agent: Agent): void {
    this.freed.add(agent.agentId);
    for (const served of this.profiles.get(agent.profileId)?.queues ?? []) this.dirty.add(served.queueId);
  }

  private agent(agentId: string): Agent {
    const agent = this.agents.get(agentId);
    if (!agent) throw new RoutingRefusal('NOT_FOUND', 'no such agent');
    return agent;
  }

  private contact(contactId: string): Contact {
    const contact = this.contacts.get(contactId);
    if (!contact) throw new RoutingRefusal('NOT_FOUND', 'no such contact');
    return contact;
  }
}
