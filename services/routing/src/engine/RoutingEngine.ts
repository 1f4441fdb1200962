import { type Agent, type AgentStatus, type CapacityKind, type Contact, type ContactAbout, capacityKindOf, type Queue, type RoutingProfile } from './model.js';

/** What a decision changed, for the owner to store and announce. */
export type RoutingEvent =
  | { type: 'offered'; contactId: string; agentId: string; expiresAtMs: number }
  | { type: 'offer_expired'; contactId: string; agentId: string }
  | { type: 'declined'; contactId: string; agentId: string }
  | { type: 'connected'; contactId: string; agentId: string }
  | { type: 'agent_status'; agentId: string; status: AgentStatus; reason?: string }
  | { type: 'overflowed'; contactId: string; fromQueueId: string; toQueueId: string }
  | { type: 'callback_offered'; contactId: string }
  /** `contact` is the contact as it was when it ended (the offer out, for an abandon). */
  | { type: 'ended'; contactId: string; reason: 'completed' | 'abandoned'; contact: Readonly<Contact> }
  | { type: 'transferred'; contactId: string; fromAgentId: string; queueId: string; targetAgentId?: string; warm: boolean }
  /** An agent's part of a warm transfer is over: they left its room (or their app is gone, or the contact ended). `contact` as it was then. */
  | { type: 'handed_over'; contactId: string; agentId: string; contact: Readonly<Contact> };

export type RoutingErrorCode = 'NOT_FOUND' | 'OFFER_MOVED_ON' | 'INVALID_STATE' | 'NO_CAPACITY';

/** A refused operation; the code is what the caller maps to its error (an offer that moved on is not a failure of ours). */
export class RoutingRefusal extends Error {
  constructor(
    readonly code: RoutingErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface EngineOptions {
  /** An offer not answered within this goes to the next agent (default 15 s). */
  offerTimeoutMs: number;
  /** Offers in a row an agent lets time out before being set away (default 2). */
  missedOffersBeforeAway: number;
  /** Every pass looks at every queue (slower; the reference the incremental passes are checked against). */
  fullPasses: boolean;
}

/** Where a waiting contact stands: its place in its queue (1 is next) and a rough wait. */
export interface QueuePosition {
  contactId: string;
  queueId: string;
  position: number;
  estimatedWaitSeconds: number;
}

const DEFAULT_HANDLE_SECONDS = 300;

/** Where a contact is filed in the engine's indexes, to take it out of them when it changes. */
interface Filed {
  queueId: string;
  /** Waiting or offered: it has a place in its queue. */
  queued: boolean;
  priority: number;
  /** Connected to this agent. */
  agentId: string | undefined;
  /** Agents still in its room after a warm transfer (they hold it too). */
  handingOver: readonly string[];
  endUser: string | undefined;
}

/** A queue's waiting and offered contacts in the order of service, and each one's index in it. */
interface QueueOrder {
  contacts: Contact[];
  indexOf: Map<string, number>;
}

/**
 * The routing decisions of one tenant (docs/routing.md), over its state in memory: which waiting
 * contact is offered to which agent, offers that time out, overflow, callbacks, and the order of
 * service. Deterministic for a given state and clock, so a new owner that loads the stored state
 * decides as the old one would have.
 *
 * The order: contacts by their queue's priority (as the agents' profiles rank it), then by their
 * own priority, then by when they asked; for each, the longest-idle eligible agent. An agent is
 * eligible when available, holding no offer, with room for the channel, whose profile serves
 * the queue (and the contact has waited out the profile's delay for it), with every skill the
 * queue requires at the level it requires, and who has not passed on this contact (unless
 * everyone eligible has).
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
  /** Queued contacts transferred to a named agent (few): looked at when an agent is freed. */
  private readonly targeted = new Map<string, Contact>();
  private everything = true;
  private delayed = new Set<string>();
  /** Handle time per queue (seconds), a moving average, for the estimated wait. */
  private readonly handleSeconds = new Map<string, number>();
  /**
   * Indexes over the contacts, so nothing the owner does per command walks the whole tenant:
   * each queue's waiting and offered contacts, each agent's connected ones, each end user's.
   * Every change of a contact's state, queue or priority files it again (`refile`).
   */
  private readonly filed = new Map<string, Filed>();
  private readonly queued = new Map<string, Map<string, Contact>>();
  private readonly held = new Map<string, Map<string, Contact>>();
  private readonly byEndUser = new Map<string, Map<string, Contact>>();
  /** Each queue's order of service, sorted when first asked after its contacts changed. */
  private readonly orders = new Map<string, QueueOrder>();
  /** Agents present (not offline) serving each queue, for the estimated wait; counted again after a change. */
  private serving: Map<string, number> | undefined;
  /** Queues where a place, an estimated wait or a contact's phase may have changed since the owner last took them. */
  private moved = new Set<string>();
  /** Agents available and holding no offer: a pass looks only at these, not at every agent. */
  private readonly free = new Map<string, Agent>();
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
    // Who serves which queue may have changed: every estimate with it.
    this.serving = undefined;
    for (const queueId of this.queued.keys()) this.moved.add(queueId);
  }

  /**
   * Replaces the agents and contacts with stored ones (an owner taking a tenant over): the next
   * pass looks at everything.
   */
  restore(agents: Iterable<Agent>, contacts: Iterable<Contact>): void {
    this.agents.clear();
    this.contacts.clear();
    for (const filed of this.filed.values()) this.moved.add(filed.queueId);
    this.filed.clear();
    this.queued.clear();
    this.held.clear();
    this.byEndUser.clear();
    this.orders.clear();
    this.serving = undefined;
    this.free.clear();
    for (const agent of agents) {
      this.agents.set(agent.agentId, agent);
      this.refreshFree(agent);
    }
    for (const contact of contacts) {
      this.contacts.set(contact.contactId, contact);
      this.refile(contact);
    }
    this.everything = true;
  }

  /** Adds an agent (offline) or changes their profile and skills. */
  setAgent(agent: Pick<Agent, 'agentId' | 'profileId' | 'skills'>, nowMs: number): Agent {
    const existing = this.agents.get(agent.agentId);
    const next: Agent = existing ? { ...existing, profileId: agent.profileId, skills: agent.skills } : { ...agent, status: 'offline', load: { call: 0, chat: 0 }, idleSinceMs: nowMs, missedOffers: 0 };
    if (existing && existing.profileId !== next.profileId && existing.status !== 'offline') {
      this.servingChanged(existing);
      this.servingChanged(next);
    }
    this.agents.set(agent.agentId, next);
    this.refreshFree(next);
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
    if ((agent.status === 'offline') !== (status === 'offline')) this.servingChanged(agent);
    agent.status = status;
    this.refreshFree(agent);
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
    this.refile(added);
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
        this.refreshFree(agent);
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
    this.unfile(contactId);
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
    if (agent.load[kind] >= this.capacityOf(agent, kind)) throw new RoutingRefusal('NO_CAPACITY', 'no room for another contact of this kind');
    this.touched.agents.add(agentId);
    this.touched.contacts.add(contactId);
    agent.offeredContactId = undefined;
    this.refreshFree(agent);
    agent.load[kind]++;
    // Free for an offer again (a chat beside this call, say).
    this.markAgent(agent);
    agent.missedOffers = 0;
    contact.state = 'connected';
    contact.offer = undefined;
    contact.agentId = agentId;
    contact.targetAgentId = undefined;
    this.refile(contact);
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
        if (agent.status === 'offline') this.servingChanged(agent);
        agent.status = 'after_contact_work';
        this.refreshFree(agent);
        events.push({ type: 'agent_status', agentId: agent.agentId, status: 'after_contact_work' });
      }
    }
    for (const handing of contact.handingOver ?? []) events.push(...this.endPart(contact, handing));
    const seconds = Math.max(1, (nowMs - connectedAtMs) / 1000);
    const previous = this.handleSeconds.get(contact.queueId);
    this.handleSeconds.set(contact.queueId, previous === undefined ? seconds : previous * 0.8 + seconds * 0.2);
    // The queue's estimated waits change with its handle time.
    this.moved.add(contact.queueId);
    this.contacts.delete(contactId);
    this.unfile(contactId);
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
    this.refile(contact);
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
          this.refile(contact);
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
        this.refile(contact);
        continue;
      }
      if (!contact.callback && queue.maxWaitSeconds !== undefined && (nowMs - contact.requestedAtMs) / 1000 >= queue.maxWaitSeconds) {
        // The end user need not hold on: they keep their place and are called back into the app.
        contact.callback = true;
        this.touched.contacts.add(contact.contactId);
        this.moved.add(contact.queueId);
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
    let free = this.free.size;
    if (free === 0) return events;
    // Named for an agent now free, who may serve none of the queue's changes.
    for (const contact of this.targeted.values()) if (contact.state === 'waiting' && contact.targetAgentId && this.freed.has(contact.targetAgentId)) this.dirty.add(contact.queueId);
    this.freed.clear();
    const looked = this.everything || this.options.fullPasses ? this.queued.keys() : new Set([...this.dirty, ...this.delayed]);
    this.everything = false;
    this.dirty.clear();
    // Each queue's waiting and offered contacts in order (the offered ones are passed over below).
    const byQueue = new Map<string, readonly Contact[]>();
    for (const queueId of looked) if (this.queued.has(queueId)) byQueue.set(queueId, this.queuedIn(queueId));
    const queueOrder = [...byQueue.keys()].sort((a, b) => (this.queues.get(a)?.priority ?? 0) - (this.queues.get(b)?.priority ?? 0) || (a < b ? -1 : 1));
    const freeByQueue = this.freeAgentsByQueue();
    for (const queueId of queueOrder) {
      const queue = this.queues.get(queueId);
      if (!queue) continue;
      const servers = this.serversOf(queue, freeByQueue.get(queueId) ?? []);
      // Those with room for a call, and for a chat: a contact looks only at its kind's.
      const pools: Record<CapacityKind, Agent[]> = {
        call: servers.filter((a) => a.load.call < this.capacityOf(a, 'call')),
        chat: servers.filter((a) => a.load.chat < this.capacityOf(a, 'chat')),
      };
      const open = (kind: CapacityKind) => pools[kind].some((agent) => !agent.offeredContactId);
      const exhausted: Record<CapacityKind, boolean> = { call: !open('call'), chat: !open('chat') };
      for (const contact of byQueue.get(queueId)!) {
        if (exhausted.call && exhausted.chat) break;
        if (contact.state !== 'waiting') continue;
        const kind = capacityKindOf(contact.channel);
        if (exhausted[kind] && !contact.targetAgentId) continue;
        // Only a transfer to a named agent goes to someone outside the queue's servers.
        const pool = contact.targetAgentId ? this.targetPool(contact.targetAgentId) : pools[kind];
        let chosen: Agent | undefined;
        let passed: Agent | undefined;
        for (const agent of pool) {
          if (agent.offeredContactId || !this.eligible(agent, contact, queue, nowMs)) continue;
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
        this.refile(contact);
        chosen.offeredContactId = contact.contactId;
        this.refreshFree(chosen);
        this.touched.contacts.add(contact.contactId);
        this.touched.agents.add(chosen.agentId);
        events.push({ type: 'offered', contactId: contact.contactId, agentId: chosen.agentId, expiresAtMs });
        if (--free === 0) return events;
        if (!contact.targetAgentId) exhausted[kind] = !open(kind);
      }
    }
    return events;
  }

  /** The free agents by the queues their profiles serve, with their profile priority for each: one walk over the free agents. */
  private freeAgentsByQueue(): Map<string, Array<{ agent: Agent; rank: number }>> {
    const byQueue = new Map<string, Array<{ agent: Agent; rank: number }>>();
    for (const agent of this.free.values()) {
      for (const served of this.profiles.get(agent.profileId)?.queues ?? []) {
        const list = byQueue.get(served.queueId);
        if (list) list.push({ agent, rank: served.priority });
        else byQueue.set(served.queueId, [{ agent, rank: served.priority }]);
      }
    }
    return byQueue;
  }

  /** Of the queue's free agents, those skilled enough, best first: profile priority, then longest idle. */
  private serversOf(queue: Queue, free: Array<{ agent: Agent; rank: number }>): Agent[] {
    return free
      .filter(({ agent }) => this.skilled(agent, queue))
      .sort((a, b) => a.rank - b.rank || a.agent.idleSinceMs - b.agent.idleSinceMs || (a.agent.agentId < b.agent.agentId ? -1 : 1))
      .map(({ agent }) => agent);
  }

  private targetPool(agentId: string): Agent[] {
    const agent = this.agents.get(agentId);
    return agent && agent.status === 'available' && !agent.offeredContactId ? [agent] : [];
  }

  /** Where each waiting (or offered) contact stands in its queue, and a rough wait (see `placeOf`). */
  positions(): QueuePosition[] {
    const out: QueuePosition[] = [];
    for (const queueId of this.queued.keys()) {
      for (const contact of this.queuedIn(queueId)) out.push(this.placeOf(contact.contactId)!);
    }
    return out;
  }

  /**
   * Where a waiting (or offered) contact stands in its queue: its place in the order of service,
   * and a rough wait, its place times the queue's handle time, shared by the agents who serve it.
   */
  placeOf(contactId: string): QueuePosition | undefined {
    const contact = this.contacts.get(contactId);
    if (!contact || !isQueued(contact)) return undefined;
    const index = this.orderOf(contact.queueId).indexOf.get(contactId);
    if (index === undefined) return undefined;
    const servers = Math.max(1, this.servingCounts().get(contact.queueId) ?? 0);
    const handle = this.handleSeconds.get(contact.queueId) ?? DEFAULT_HANDLE_SECONDS;
    return { contactId, queueId: contact.queueId, position: index + 1, estimatedWaitSeconds: Math.round((index * handle) / servers) };
  }

  /** The queue's waiting and offered contacts, in the order of service (do not change the array). */
  queuedIn(queueId: string): readonly Contact[] {
    return this.queued.has(queueId) ? this.orderOf(queueId).contacts : [];
  }

  /** The agents available and holding no offer. */
  freeAgentIds(): string[] {
    return [...this.free.keys()];
  }

  /** The contacts the agent holds (connected to them, or handed over warm and not yet left), oldest request first. */
  heldBy(agentId: string): Contact[] {
    return [...(this.held.get(agentId)?.values() ?? [])].sort((a, b) => a.requestedAtMs - b.requestedAtMs || (a.contactId < b.contactId ? -1 : 1));
  }

  /** A contact the end user has (the first they asked for, when several). */
  contactOfEndUser(endUser: string): Contact | undefined {
    let first: Contact | undefined;
    for (const contact of this.byEndUser.get(endUser)?.values() ?? []) {
      if (!first || contact.requestedAtMs < first.requestedAtMs || (contact.requestedAtMs === first.requestedAtMs && contact.contactId < first.contactId)) first = contact;
    }
    return first;
  }

  /**
   * The queues where a place, an estimated wait or a phase may have changed since the last call:
   * the owner tells only their contacts.
   */
  takeMovedQueues(): Set<string> {
    const moved = this.moved;
    this.moved = new Set();
    return moved;
  }

  /**
   * The contact's state, queue or priority changed (or it is new): it is taken out of the indexes
   * where it was and filed where it is now; the order of a queue it left or joined is sorted again.
   */
  private refile(contact: Contact): void {
    const was = this.unfile(contact.contactId, false);
    const now: Filed = {
      queueId: contact.queueId,
      queued: isQueued(contact),
      priority: contact.priority,
      agentId: contact.state === 'connected' ? contact.agentId : undefined,
      handingOver: contact.handingOver ?? [],
      endUser: contact.about?.endUser,
    };
    this.filed.set(contact.contactId, now);
    this.moved.add(now.queueId);
    if (now.queued) {
      addTo(this.queued, now.queueId, contact);
      // Between waiting and offered a contact keeps its place: the order stands.
      if (!was?.queued || was.queueId !== now.queueId || was.priority !== now.priority) this.orders.delete(now.queueId);
    }
    if (now.agentId) addTo(this.held, now.agentId, contact);
    for (const agentId of now.handingOver) addTo(this.held, agentId, contact);
    if (now.endUser) addTo(this.byEndUser, now.endUser, contact);
    if (now.queued && contact.targetAgentId) this.targeted.set(contact.contactId, contact);
    if (was?.queued && (!now.queued || was.queueId !== now.queueId || was.priority !== now.priority)) this.orders.delete(was.queueId);
  }

  /** Takes a contact out of the indexes (it ended, or is filed again); returns where it was. */
  private unfile(contactId: string, ended = true): Filed | undefined {
    const was = this.filed.get(contactId);
    if (!was) return undefined;
    this.filed.delete(contactId);
    this.moved.add(was.queueId);
    if (was.queued) {
      removeFrom(this.queued, was.queueId, contactId);
      if (ended) this.orders.delete(was.queueId);
    }
    if (was.agentId) removeFrom(this.held, was.agentId, contactId);
    for (const agentId of was.handingOver) removeFrom(this.held, agentId, contactId);
    if (was.endUser) removeFrom(this.byEndUser, was.endUser, contactId);
    this.targeted.delete(contactId);
    return was;
  }

  private orderOf(queueId: string): QueueOrder {
    let order = this.orders.get(queueId);
    if (!order) {
      // Filed mostly in the order they asked: the sort finds the runs already in order.
      const contacts = [...(this.queued.get(queueId)?.values() ?? [])].sort(serviceOrder);
      order = { contacts, indexOf: new Map(contacts.map((contact, index) => [contact.contactId, index])) };
      this.orders.set(queueId, order);
    }
    return order;
  }

  private servingCounts(): Map<string, number> {
    if (this.serving) return this.serving;
    const serving = new Map<string, number>();
    for (const agent of this.agents.values()) {
      if (agent.status === 'offline') continue;
      for (const served of this.profiles.get(agent.profileId)?.queues ?? []) serving.set(served.queueId, (serving.get(served.queueId) ?? 0) + 1);
    }
    this.serving = serving;
    return serving;
  }

  /** Files the agent among the free ones (available, no offer held) or takes them out. */
  private refreshFree(agent: Agent): void {
    if (agent.status === 'available' && !agent.offeredContactId) this.free.set(agent.agentId, agent);
    else this.free.delete(agent.agentId);
  }

  /** The agent came or went (or changed profile): the estimated waits of the queues they serve change. */
  private servingChanged(agent: Agent): void {
    this.serving = undefined;
    for (const served of this.profiles.get(agent.profileId)?.queues ?? []) this.moved.add(served.queueId);
  }

  private eligible(agent: Agent, contact: Contact, queue: Queue, nowMs: number): boolean {
    if (contact.targetAgentId && contact.targetAgentId !== agent.agentId) return false;
    // Still in its room, handing it over: never offered it again.
    if (contact.handingOver?.includes(agent.agentId)) return false;
    const kind = capacityKindOf(contact.channel);
    if (agent.load[kind] >= this.capacityOf(agent, kind)) return false;
    const served = this.profiles.get(agent.profileId)?.queues.find((q) => q.queueId === queue.queueId);
    if (!served && !contact.targetAgentId) return false;
    if (served?.delaySeconds && (nowMs - contact.queuedAtMs) / 1000 < served.delaySeconds) return false;
    // A transfer to a named agent is the transferring agent's choice: their skills are not checked.
    return contact.targetAgentId !== undefined || this.skilled(agent, queue);
  }

  private skilled(agent: Agent, queue: Queue): boolean {
    for (const [skill, level] of Object.entries(queue.requiredSkills)) if ((agent.skills[skill] ?? 0) < level) return false;
    return true;
  }

  private capacityOf(agent: Agent, kind: CapacityKind): number {
    return this.profiles.get(agent.profileId)?.capacity[kind] ?? 0;
  }

  /** Ends an agent's part of a warm transfer: their capacity back, after-contact work when it was their last contact. */
  private endPart(contact: Contact, agentId: string): RoutingEvent[] {
    const asItWas = structuredClone(contact);
    const rest = (contact.handingOver ?? []).filter((id) => id !== agentId);
    contact.handingOver = rest.length > 0 ? rest : undefined;
    this.refile(contact);
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
      this.refreshFree(agent);
      events.push({ type: 'agent_status', agentId, status: 'after_contact_work' });
    }
    return events;
  }

  /** Takes an offer back from an agent: the contact waits again, passed by them. */
  private withdrawOffer(agent: Agent, why: 'declined' | 'offer_expired'): RoutingEvent[] {
    const contactId = agent.offeredContactId;
    agent.offeredContactId = undefined;
    this.refreshFree(agent);
    this.touched.agents.add(agent.agentId);
    if (contactId) this.touched.contacts.add(contactId);
    this.markAgent(agent);
    const contact = contactId ? this.contacts.get(contactId) : undefined;
    if (!contact || contact.offer?.agentId !== agent.agentId) return [];
    contact.state = 'waiting';
    contact.offer = undefined;
    this.refile(contact);
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

const isQueued = (contact: Contact) => contact.state === 'waiting' || contact.state === 'offered';

function addTo(index: Map<string, Map<string, Contact>>, key: string, contact: Contact): void {
  const contacts = index.get(key);
  if (contacts) contacts.set(contact.contactId, contact);
  else index.set(key, new Map([[contact.contactId, contact]]));
}

function removeFrom(index: Map<string, Map<string, Contact>>, key: string, contactId: string): void {
  const contacts = index.get(key);
  if (!contacts?.delete(contactId)) return;
  if (contacts.size === 0) index.delete(key);
}

/** Within a queue: higher priority first, then who asked first. */
function serviceOrder(a: Contact, b: Contact): number {
  return b.priority - a.priority || a.requestedAtMs - b.requestedAtMs || (a.contactId < b.contactId ? -1 : 1);
}
