import type { AgentDecisions } from './AgentDecisions.js';
import { eligible, freeAgentsByQueue, serversOf, targetPool } from './eligibility.js';
import type { EngineState } from './EngineState.js';
import { type RoutingEvent, RoutingRefusal } from './events.js';
import { type Agent, type CapacityKind, type Contact, type ContactAbout, capacityKindOf, type Queue } from './model.js';

/**
 * The contact-side decisions (docs/routing.md): a contact arrives, leaves, ends or is
 * transferred; it overflows or is offered a callback as it waits; and the pass that offers each
 * waiting contact to an agent, in the order of service. What a contact's end or transfer does
 * to its agents (their capacity, after-contact work) is the agent side's.
 */
export class ContactDecisions {
  constructor(
    private readonly state: EngineState,
    private readonly agentSide: AgentDecisions,
  ) {}

  /** An end user asks for support (`about`: who, kept beside the decisions). */
  enqueue(contact: Pick<Contact, 'contactId' | 'queueId' | 'channel'> & { priority?: number; about?: ContactAbout }, nowMs: number): Contact {
    const { contacts } = this.state;
    if (!this.state.queues.has(contact.queueId)) throw new RoutingRefusal('NOT_FOUND', 'no such queue');
    if (contacts.has(contact.contactId)) return contacts.get(contact.contactId)!;
    const added: Contact = { ...contact, priority: contact.priority ?? 0, requestedAtMs: nowMs, queuedAtMs: nowMs, state: 'waiting', passedBy: [] };
    contacts.set(added.contactId, added);
    this.state.indexes.refile(added);
    this.state.touched.contacts.add(added.contactId);
    this.state.scope.queueChanged(added.queueId);
    return added;
  }

  /** The end user left the queue (or hung up while it rang). */
  abandon(contactId: string): RoutingEvent[] {
    const contact = this.state.contact(contactId);
    if (contact.state === 'connected' || contact.state === 'ended') throw new RoutingRefusal('INVALID_STATE', 'the contact is not waiting');
    const events: RoutingEvent[] = [];
    const asItWas = structuredClone(contact);
    if (contact.offer) {
      const agent = this.state.agents.get(contact.offer.agentId);
      if (agent) this.agentSide.offerGone(agent);
    }
    this.state.touched.contacts.add(contactId);
    contact.offer = undefined;
    contact.state = 'ended';
    events.push({ type: 'ended', contactId, reason: 'abandoned', contact: asItWas });
    for (const handing of contact.handingOver ?? []) events.push(...this.agentSide.endPart(contact, handing));
    this.state.contacts.delete(contactId);
    this.state.indexes.unfile(contactId);
    return events;
  }

  /**
   * The contact ends (either side hung up): the agent goes to after-contact work when it was
   * their last contact; `handleSeconds` feeds the queue's estimated wait.
   */
  complete(contactId: string, nowMs: number, connectedAtMs: number): RoutingEvent[] {
    const contact = this.state.contact(contactId);
    if (contact.state !== 'connected' || !contact.agentId) throw new RoutingRefusal('INVALID_STATE', 'the contact is not connected');
    const agent = this.state.agents.get(contact.agentId);
    const events: RoutingEvent[] = [{ type: 'ended', contactId, reason: 'completed', contact: structuredClone(contact) }];
    this.state.touched.contacts.add(contactId);
    if (agent) events.push(...this.agentSide.contactEnded(agent, contact));
    for (const handing of contact.handingOver ?? []) events.push(...this.agentSide.endPart(contact, handing));
    // The queue's estimated waits change with its handle time.
    this.state.indexes.handled(contact.queueId, Math.max(1, (nowMs - connectedAtMs) / 1000));
    this.state.contacts.delete(contactId);
    this.state.indexes.unfile(contactId);
    return events;
  }

  /**
   * A transfer: the contact waits again in `queueId` (ahead of others: it waited already), or
   * for one named agent only. Cold, the agent lets it go now; warm, they stay in its room and it
   * keeps counting against their capacity until they complete the hand-over (completeTransfer).
   */
  transfer(contactId: string, fromAgentId: string, to: { queueId: string; agentId?: string }, nowMs: number, options: { warm?: boolean } = {}): RoutingEvent[] {
    const { agents } = this.state;
    const contact = this.state.contact(contactId);
    const warm = options.warm ?? false;
    if (contact.state !== 'connected' || contact.agentId !== fromAgentId) throw new RoutingRefusal('INVALID_STATE', 'only the agent connected to the contact may transfer it');
    if (!this.state.queues.has(to.queueId)) throw new RoutingRefusal('NOT_FOUND', 'no such queue');
    if (to.agentId && !agents.has(to.agentId)) throw new RoutingRefusal('NOT_FOUND', 'no such agent');
    if (to.agentId && (to.agentId === fromAgentId || contact.handingOver?.includes(to.agentId)))
      throw new RoutingRefusal('INVALID_STATE', 'the contact is not transferred to an agent already in its room');
    const from = this.state.agent(fromAgentId);
    this.state.touched.agents.add(fromAgentId);
    this.state.touched.contacts.add(contactId);
    if (warm) contact.handingOver = [...(contact.handingOver ?? []), fromAgentId];
    else this.agentSide.releaseCapacity(from, capacityKindOf(contact.channel));
    this.state.scope.queueChanged(to.queueId);
    Object.assign(contact, { state: 'waiting', queueId: to.queueId, queuedAtMs: nowMs, priority: contact.priority + 1, agentId: undefined, passedBy: [fromAgentId], targetAgentId: to.agentId });
    this.state.indexes.refile(contact);
    return [{ type: 'transferred', contactId, fromAgentId, queueId: to.queueId, ...(to.agentId ? { targetAgentId: to.agentId } : {}), warm }];
  }

  /**
   * The first agent of a warm transfer leaves the contact's room: their part is over, it no
   * longer counts against their capacity, and when it was their last contact they go to
   * after-contact work (for their part). The contact goes on, waiting for or with the next agent.
   */
  completeTransfer(contactId: string, agentId: string): RoutingEvent[] {
    const contact = this.state.contact(contactId);
    if (!contact.handingOver?.includes(agentId)) throw new RoutingRefusal('INVALID_STATE', 'this agent is not handing the contact over');
    return this.agentSide.endPart(contact, agentId);
  }

  /** Contacts that waited too long overflow to their queue's overflow queue, or are offered a callback. */
  waitLimits(nowMs: number): RoutingEvent[] {
    const events: RoutingEvent[] = [];
    const { indexes, touched, scope } = this.state;
    for (const contact of this.state.contacts.values()) {
      if (contact.state !== 'waiting') continue;
      const queue = this.state.queues.get(contact.queueId);
      if (!queue) continue;
      const waited = (nowMs - contact.queuedAtMs) / 1000;
      if (queue.overflow && waited >= queue.overflow.afterSeconds && this.state.queues.has(queue.overflow.queueId)) {
        events.push({ type: 'overflowed', contactId: contact.contactId, fromQueueId: queue.queueId, toQueueId: queue.overflow.queueId });
        contact.queueId = queue.overflow.queueId;
        touched.contacts.add(contact.contactId);
        scope.queueChanged(contact.queueId);
        contact.queuedAtMs = nowMs;
        indexes.refile(contact);
        continue;
      }
      if (!contact.callback && queue.maxWaitSeconds !== undefined && (nowMs - contact.requestedAtMs) / 1000 >= queue.maxWaitSeconds) {
        // The end user need not hold on: they keep their place and are called back into the app.
        contact.callback = true;
        touched.contacts.add(contact.contactId);
        indexes.markMoved(contact.queueId);
        events.push({ type: 'callback_offered', contactId: contact.contactId });
      }
    }
    return events;
  }

  /**
   * Offers waiting contacts to eligible agents, in the order of service (see RoutingEngine). The
   * agents who could serve a queue at all (free, serving it, skilled enough) are found once per
   * queue and ranked; a queue nobody free can serve is skipped whole, so thousands of waiting
   * contacts cost nothing while every agent is busy.
   */
  assign(nowMs: number): RoutingEvent[] {
    const { indexes, queues, profiles } = this.state;
    const events: RoutingEvent[] = [];
    let free = indexes.free.size;
    if (free === 0) return events;
    const looked = this.state.scope.take(indexes, this.state.options.fullPasses);
    // Each queue's waiting and offered contacts in order (the offered ones are passed over below).
    const byQueue = new Map<string, readonly Contact[]>();
    for (const queueId of looked) if (indexes.queued.has(queueId)) byQueue.set(queueId, indexes.queuedIn(queueId));
    const queueOrder = [...byQueue.keys()].sort((a, b) => (queues.get(a)?.priority ?? 0) - (queues.get(b)?.priority ?? 0) || (a < b ? -1 : 1));
    const freeByQueue = freeAgentsByQueue(indexes.free, profiles);
    for (const queueId of queueOrder) {
      const queue = queues.get(queueId);
      if (!queue) continue;
      const pools = serversOf(queue, freeByQueue.get(queueId) ?? [], profiles);
      const open = (kind: CapacityKind) => pools[kind].some((agent) => !agent.offeredContactId);
      const exhausted: Record<CapacityKind, boolean> = { call: !open('call'), chat: !open('chat') };
      for (const contact of byQueue.get(queueId)!) {
        if (exhausted.call && exhausted.chat) break;
        if (contact.state !== 'waiting') continue;
        const kind = capacityKindOf(contact.channel);
        if (exhausted[kind] && !contact.targetAgentId) continue;
        // Only a transfer to a named agent goes to someone outside the queue's servers.
        const pool = contact.targetAgentId ? targetPool(this.state.agents, contact.targetAgentId) : pools[kind];
        const chosen = this.agentFor(contact, pool, queue, nowMs);
        if (!chosen) continue;
        const expiresAtMs = nowMs + (queue.offerTimeoutSeconds !== undefined ? queue.offerTimeoutSeconds * 1000 : this.state.options.offerTimeoutMs);
        contact.state = 'offered';
        contact.offer = { agentId: chosen.agentId, expiresAtMs };
        indexes.refile(contact);
        chosen.offeredContactId = contact.contactId;
        indexes.refreshFree(chosen);
        this.state.touched.contacts.add(contact.contactId);
        this.state.touched.agents.add(chosen.agentId);
        events.push({ type: 'offered', contactId: contact.contactId, agentId: chosen.agentId, expiresAtMs });
        if (--free === 0) return events;
        if (!contact.targetAgentId) exhausted[kind] = !open(kind);
      }
    }
    return events;
  }

  /** The first agent of the ranked pool who may be offered the contact and has not passed on it; if everyone eligible has, a new round. */
  private agentFor(contact: Contact, pool: Iterable<Agent>, queue: Queue, nowMs: number): Agent | undefined {
    let passed: Agent | undefined;
    for (const agent of pool) {
      if (agent.offeredContactId || !eligible(agent, contact, queue, nowMs, this.state.profiles)) continue;
      if (!contact.passedBy.includes(agent.agentId)) return agent;
      passed ??= agent;
    }
    if (passed) {
      // Everyone eligible passed on it once: round again.
      contact.passedBy = [];
    }
    return passed;
  }
}
