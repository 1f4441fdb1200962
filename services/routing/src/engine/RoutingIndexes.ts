import type { Agent, Contact, RoutingProfile } from './model.js';

/** Where a waiting contact stands: its place in its queue (1 is next) and a rough wait. */
export interface QueuePosition {
  contactId: string;
  queueId: string;
  position: number;
  estimatedWaitSeconds: number;
}

const DEFAULT_HANDLE_SECONDS = 300;

/** Where a contact is filed in the indexes, to take it out of them when it changes. */
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
 * The routing engine's indexes over a tenant's agents and contacts, so nothing the owner does
 * per command walks the whole tenant: each queue's waiting and offered contacts and their order
 * of service, each agent's connected ones, each end user's, the contacts transferred to a named
 * agent, the free agents, the agents serving each queue, and the queues where a place or an
 * estimate moved. The engine changes agents and contacts; every change of a contact's state,
 * queue or priority files it again here (`refile`), every change of whether an agent is free
 * too (`refreshFree`).
 */
export class RoutingIndexes {
  private readonly filed = new Map<string, Filed>();
  private readonly queuedBy = new Map<string, Map<string, Contact>>();
  private readonly held = new Map<string, Map<string, Contact>>();
  private readonly byEndUser = new Map<string, Map<string, Contact>>();
  /** Queued contacts transferred to a named agent (few): looked at when an agent is freed. */
  private readonly targetedContacts = new Map<string, Contact>();
  /** Each queue's order of service, sorted when first asked after its contacts changed. */
  private readonly orders = new Map<string, QueueOrder>();
  /** Agents available and holding no offer: a pass looks only at these, not at every agent. */
  private readonly freeAgents = new Map<string, Agent>();
  /** Agents present (not offline) serving each queue, for the estimated wait; counted again after a change. */
  private serving: Map<string, number> | undefined;
  /** Handle time per queue (seconds), a moving average, for the estimated wait. */
  private readonly handleSeconds = new Map<string, number>();
  /** Queues where a place, an estimated wait or a contact's phase may have changed since the owner last took them. */
  private moved = new Set<string>();

  /** Over the engine's own maps: the indexes read them, never change them. */
  constructor(
    private readonly agents: ReadonlyMap<string, Agent>,
    private readonly contacts: ReadonlyMap<string, Contact>,
    private readonly profiles: ReadonlyMap<string, RoutingProfile>,
  ) {}

  /** Each queue's waiting and offered contacts, in no order (see `queuedIn`). */
  get queued(): ReadonlyMap<string, ReadonlyMap<string, Contact>> {
    return this.queuedBy;
  }

  /** The agents available and holding no offer. */
  get free(): ReadonlyMap<string, Agent> {
    return this.freeAgents;
  }

  /** The queued contacts transferred to a named agent. */
  get targeted(): ReadonlyMap<string, Contact> {
    return this.targetedContacts;
  }

  /** Empties every index (an owner taking a tenant over): the queues that had contacts have moved. Handle times are kept. */
  clear(): void {
    for (const filed of this.filed.values()) this.moved.add(filed.queueId);
    this.filed.clear();
    this.queuedBy.clear();
    this.held.clear();
    this.byEndUser.clear();
    this.targetedContacts.clear();
    this.orders.clear();
    this.serving = undefined;
    this.freeAgents.clear();
  }

  /**
   * The contact's state, queue or priority changed (or it is new): it is taken out of the indexes
   * where it was and filed where it is now; the order of a queue it left or joined is sorted again.
   */
  refile(contact: Contact): void {
    const was = this.takeOut(contact.contactId, false);
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
      addTo(this.queuedBy, now.queueId, contact);
      // Between waiting and offered a contact keeps its place: the order stands.
      if (!was?.queued || was.queueId !== now.queueId || was.priority !== now.priority) this.orders.delete(now.queueId);
    }
    if (now.agentId) addTo(this.held, now.agentId, contact);
    for (const agentId of now.handingOver) addTo(this.held, agentId, contact);
    if (now.endUser) addTo(this.byEndUser, now.endUser, contact);
    if (now.queued && contact.targetAgentId) this.targetedContacts.set(contact.contactId, contact);
    if (was?.queued && (!now.queued || was.queueId !== now.queueId || was.priority !== now.priority)) this.orders.delete(was.queueId);
  }

  /** Takes an ended contact out of the indexes. */
  unfile(contactId: string): void {
    this.takeOut(contactId, true);
  }

  /** Takes a contact out of the indexes (it ended, or is filed again); returns where it was. */
  private takeOut(contactId: string, ended: boolean): Filed | undefined {
    const was = this.filed.get(contactId);
    if (!was) return undefined;
    this.filed.delete(contactId);
    this.moved.add(was.queueId);
    if (was.queued) {
      removeFrom(this.queuedBy, was.queueId, contactId);
      if (ended) this.orders.delete(was.queueId);
    }
    if (was.agentId) removeFrom(this.held, was.agentId, contactId);
    for (const agentId of was.handingOver) removeFrom(this.held, agentId, contactId);
    if (was.endUser) removeFrom(this.byEndUser, was.endUser, contactId);
    this.targetedContacts.delete(contactId);
    return was;
  }

  /** Files the agent among the free ones (available, no offer held) or takes them out. */
  refreshFree(agent: Agent): void {
    if (agent.status === 'available' && !agent.offeredContactId) this.freeAgents.set(agent.agentId, agent);
    else this.freeAgents.delete(agent.agentId);
  }

  /** The agent came or went (or changed profile): the estimated waits of the queues they serve change. */
  servingChanged(agent: Agent): void {
    this.serving = undefined;
    for (const served of this.profiles.get(agent.profileId)?.queues ?? []) this.moved.add(served.queueId);
  }

  /** A profile changed: who serves which queue may have changed, every estimate with it. */
  profilesChanged(): void {
    this.serving = undefined;
    for (const queueId of this.queuedBy.keys()) this.moved.add(queueId);
  }

  /** A contact of the queue was handled in this many seconds: its handle time, and the queue's estimated waits with it, change. */
  handled(queueId: string, seconds: number): void {
    const previous = this.handleSeconds.get(queueId);
    this.handleSeconds.set(queueId, previous === undefined ? seconds : previous * 0.8 + seconds * 0.2);
    this.moved.add(queueId);
  }

  /** A place, an estimate or a phase changed in the queue otherwise (a callback offered). */
  markMoved(queueId: string): void {
    this.moved.add(queueId);
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

  /** Where each waiting (or offered) contact stands in its queue, and a rough wait (see `placeOf`). */
  positions(): QueuePosition[] {
    const out: QueuePosition[] = [];
    for (const queueId of this.queuedBy.keys()) {
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
    return this.queuedBy.has(queueId) ? this.orderOf(queueId).contacts : [];
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

  private orderOf(queueId: string): QueueOrder {
    let order = this.orders.get(queueId);
    if (!order) {
      // Filed mostly in the order they asked: the sort finds the runs already in order.
      const contacts = [...(this.queuedBy.get(queueId)?.values() ?? [])].sort(serviceOrder);
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
