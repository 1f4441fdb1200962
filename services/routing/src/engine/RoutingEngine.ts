import { AgentDecisions } from './AgentDecisions.js';
import { ContactDecisions } from './ContactDecisions.js';
import { type EngineOptions, EngineState } from './EngineState.js';
import type { RoutingEvent } from './events.js';
import type { Agent, AgentStatus, Contact, ContactAbout, Queue, RoutingProfile } from './model.js';
import type { QueuePosition } from './RoutingIndexes.js';

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
 *
 * This is the one entry the owner calls; the decisions are made on either side: the agents'
 * (`AgentDecisions.ts`: status, answers to offers, capacity) and the contacts'
 * (`ContactDecisions.ts`: arrival, end, transfer, waiting limits, and the pass that offers them),
 * over the state they share (`EngineState.ts`, with what the next pass looks at in `PassScope.ts`).
 */
export class RoutingEngine {
  readonly queues: Map<string, Queue>;
  readonly profiles: Map<string, RoutingProfile>;
  /** Read them freely; change agents' and contacts' routing fields only through the methods below, which keep the indexes. */
  readonly agents: Map<string, Agent>;
  readonly contacts: Map<string, Contact>;
  private readonly state: EngineState;
  private readonly agentSide: AgentDecisions;
  private readonly contactSide: ContactDecisions;

  constructor(options: Partial<EngineOptions> = {}) {
    this.state = new EngineState(options);
    ({ queues: this.queues, profiles: this.profiles, agents: this.agents, contacts: this.contacts } = this.state);
    this.agentSide = new AgentDecisions(this.state);
    this.contactSide = new ContactDecisions(this.state, this.agentSide);
  }

  /** What changed since the last call (ended contacts included: they are gone from `contacts`). */
  takeTouched(): { agents: Set<string>; contacts: Set<string> } {
    return this.state.takeTouched();
  }

  /** A change made to an agent or contact outside the engine's own operations (the service's fields). */
  touch(kind: 'agents' | 'contacts', id: string): void {
    this.state.touched[kind].add(id);
  }

  setQueue(queue: Queue): void {
    this.queues.set(queue.queueId, queue);
    this.state.scope.lookAtEverything();
  }

  setProfile(profile: RoutingProfile): void {
    this.profiles.set(profile.profileId, profile);
    this.state.scope.setDelayed([...this.profiles.values()].flatMap((p) => p.queues.filter((q) => q.delaySeconds).map((q) => q.queueId)));
    this.state.scope.lookAtEverything();
    this.state.indexes.profilesChanged();
  }

  /**
   * Replaces the agents and contacts with stored ones (an owner taking a tenant over): the next
   * pass looks at everything.
   */
  restore(agents: Iterable<Agent>, contacts: Iterable<Contact>): void {
    const { indexes } = this.state;
    this.agents.clear();
    this.contacts.clear();
    indexes.clear();
    for (const agent of agents) {
      this.agents.set(agent.agentId, agent);
      indexes.refreshFree(agent);
    }
    for (const contact of contacts) {
      this.contacts.set(contact.contactId, contact);
      indexes.refile(contact);
    }
    this.state.scope.lookAtEverything();
  }

  /** Adds an agent (offline) or changes their profile and skills. */
  setAgent(agent: Pick<Agent, 'agentId' | 'profileId' | 'skills'>, nowMs: number): Agent {
    return this.agentSide.setAgent(agent, nowMs);
  }

  /**
   * The agent's own choice of status. Going available from anything else starts their idle time
   * now; leaving available withdraws an offer they hold (it goes to the next agent at once).
   */
  setStatus(agentId: string, status: AgentStatus, nowMs: number, reason?: string): RoutingEvent[] {
    return this.agentSide.setStatus(agentId, status, nowMs, reason);
  }

  /** The agent's app went away without saying so (see AgentDecisions.disconnect). */
  disconnect(agentId: string, nowMs: number): RoutingEvent[] {
    return this.agentSide.disconnect(agentId, nowMs);
  }

  /** The agent's app is back within the grace period: the status it had before (a no-op if it never left). */
  reconnect(agentId: string, nowMs: number): RoutingEvent[] {
    return this.agentSide.reconnect(agentId, nowMs);
  }

  /** An end user asks for support (`about`: who, kept beside the decisions). */
  enqueue(contact: Pick<Contact, 'contactId' | 'queueId' | 'channel'> & { priority?: number; about?: ContactAbout }, nowMs: number): Contact {
    return this.contactSide.enqueue(contact, nowMs);
  }

  /** The end user left the queue (or hung up while it rang). */
  abandon(contactId: string): RoutingEvent[] {
    return this.contactSide.abandon(contactId);
  }

  /** The agent takes the contact offered to them. */
  accept(contactId: string, agentId: string): RoutingEvent[] {
    return this.agentSide.accept(contactId, agentId);
  }

  /** The agent turns the offer down: it goes to the next agent. */
  decline(contactId: string, agentId: string): RoutingEvent[] {
    return this.agentSide.decline(contactId, agentId);
  }

  /** The contact ends (either side hung up); see ContactDecisions.complete. */
  complete(contactId: string, nowMs: number, connectedAtMs: number): RoutingEvent[] {
    return this.contactSide.complete(contactId, nowMs, connectedAtMs);
  }

  /** A transfer, cold or warm, to a queue or one named agent; see ContactDecisions.transfer. */
  transfer(contactId: string, fromAgentId: string, to: { queueId: string; agentId?: string }, nowMs: number, options: { warm?: boolean } = {}): RoutingEvent[] {
    return this.contactSide.transfer(contactId, fromAgentId, to, nowMs, options);
  }

  /** The first agent of a warm transfer leaves the contact's room; see ContactDecisions.completeTransfer. */
  completeTransfer(contactId: string, agentId: string): RoutingEvent[] {
    return this.contactSide.completeTransfer(contactId, agentId);
  }

  /** After-contact work done: available again, or away by the agent's choice. */
  wrapUp(agentId: string, nowMs: number, next: 'available' | 'away' = 'available', reason?: string): RoutingEvent[] {
    return this.agentSide.wrapUp(agentId, nowMs, next, reason);
  }

  /**
   * Time passes: offers past their time go to the next agent (and an agent who let too many go
   * is set away), contacts overflow or are offered a callback, then every waiting contact that
   * has an eligible agent is offered.
   */
  tick(nowMs: number): RoutingEvent[] {
    const events = this.agentSide.expireOffers(nowMs);
    events.push(...this.contactSide.waitLimits(nowMs));
    events.push(...this.assign(nowMs));
    return events;
  }

  /** Offers waiting contacts to eligible agents, in the order of service (see the class). */
  assign(nowMs: number): RoutingEvent[] {
    return this.contactSide.assign(nowMs);
  }

  /** Where each waiting (or offered) contact stands in its queue, and a rough wait (see `placeOf`). */
  positions(): QueuePosition[] {
    return this.state.indexes.positions();
  }

  /**
   * Where a waiting (or offered) contact stands in its queue: its place in the order of service,
   * and a rough wait, its place times the queue's handle time, shared by the agents who serve it.
   */
  placeOf(contactId: string): QueuePosition | undefined {
    return this.state.indexes.placeOf(contactId);
  }

  /** The queue's waiting and offered contacts, in the order of service (do not change the array). */
  queuedIn(queueId: string): readonly Contact[] {
    return this.state.indexes.queuedIn(queueId);
  }

  /** The agents available and holding no offer. */
  freeAgentIds(): string[] {
    return [...this.state.indexes.free.keys()];
  }

  /** The contacts the agent holds (connected to them, or handed over warm and not yet left), oldest request first. */
  heldBy(agentId: string): Contact[] {
    return this.state.indexes.heldBy(agentId);
  }

  /** A contact the end user has (the first they asked for, when several). */
  contactOfEndUser(endUser: string): Contact | undefined {
    return this.state.indexes.contactOfEndUser(endUser);
  }

  /**
   * The queues where a place, an estimated wait or a phase may have changed since the last call:
   * the owner tells only their contacts.
   */
  takeMovedQueues(): Set<string> {
    return this.state.indexes.takeMovedQueues();
  }
}
