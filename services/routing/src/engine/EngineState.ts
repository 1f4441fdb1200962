import type { Agent, Contact, Queue, RoutingProfile } from './model.js';
import { RoutingRefusal } from './events.js';
import { PassScope } from './PassScope.js';
import { RoutingIndexes } from './RoutingIndexes.js';

export interface EngineOptions {
  /** An offer not answered within this goes to the next agent (default 15 s). */
  offerTimeoutMs: number;
  /** Offers in a row an agent lets time out before being set away (default 2). */
  missedOffersBeforeAway: number;
  /** Every pass looks at every queue (slower; the reference the incremental passes are checked against). */
  fullPasses: boolean;
}

/**
 * One tenant's routing state in memory, shared by the agent-side and the contact-side decisions:
 * the queues, profiles, agents and contacts, their indexes, what the next pass looks at, and
 * what changed since the owner last stored it.
 */
export class EngineState {
  readonly queues = new Map<string, Queue>();
  readonly profiles = new Map<string, RoutingProfile>();
  readonly agents = new Map<string, Agent>();
  readonly contacts = new Map<string, Contact>();
  /** Where every contact and agent is filed, so nothing the owner does per command walks the whole tenant. */
  readonly indexes = new RoutingIndexes(this.agents, this.contacts, this.profiles);
  /** The queues the next pass looks at. */
  readonly scope = new PassScope();
  /**
   * The agents and contacts changed since the owner last took them (takeTouched): the owner
   * stores only these, so a command costs what it changed, not the size of the tenant.
   */
  touched = { agents: new Set<string>(), contacts: new Set<string>() };
  readonly options: EngineOptions;

  constructor(options: Partial<EngineOptions> = {}) {
    this.options = { offerTimeoutMs: options.offerTimeoutMs ?? 15_000, missedOffersBeforeAway: options.missedOffersBeforeAway ?? 2, fullPasses: options.fullPasses ?? false };
  }

  /** What changed since the last call (ended contacts included: they are gone from `contacts`). */
  takeTouched(): { agents: Set<string>; contacts: Set<string> } {
    const taken = this.touched;
    this.touched = { agents: new Set(), contacts: new Set() };
    return taken;
  }

  /** The queues the agent serves may have an offer for them now. */
  markAgent(agent: Agent): void {
    this.scope.agentFreed(agent.agentId, this.profiles.get(agent.profileId)?.queues ?? []);
  }

  agent(agentId: string): Agent {
    const agent = this.agents.get(agentId);
    if (!agent) throw new RoutingRefusal('NOT_FOUND', 'no such agent');
    return agent;
  }

  contact(contactId: string): Contact {
    const contact = this.contacts.get(contactId);
    if (!contact) throw new RoutingRefusal('NOT_FOUND', 'no such contact');
    return contact;
  }
}
