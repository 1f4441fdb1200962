import { type Agent, type CapacityKind, type Contact, capacityKindOf, type Queue, type RoutingProfile } from './model.js';

/**
 * Who may be offered a contact, and in which order (docs/routing.md): an agent is eligible when
 * available, holding no offer, with room for the channel, whose profile serves the queue (and the
 * contact has waited out the profile's delay for it), with every skill the queue requires at the
 * level it requires, and who has not passed on this contact (the engine looks at that: unless
 * everyone eligible has). Of a queue's free agents, those skilled enough rank by their profile's
 * priority for the queue, then the longest idle.
 */

/** A free agent, with their profile's priority for one queue. */
interface Ranked {
  agent: Agent;
  rank: number;
}

/** The free agents by the queues their profiles serve, with their profile priority for each: one walk over the free agents. */
export function freeAgentsByQueue(free: ReadonlyMap<string, Agent>, profiles: ReadonlyMap<string, RoutingProfile>): Map<string, Ranked[]> {
  const byQueue = new Map<string, Ranked[]>();
  for (const agent of free.values()) {
    for (const served of profiles.get(agent.profileId)?.queues ?? []) {
      const list = byQueue.get(served.queueId);
      if (list) list.push({ agent, rank: served.priority });
      else byQueue.set(served.queueId, [{ agent, rank: served.priority }]);
    }
  }
  return byQueue;
}

/**
 * Of the queue's free agents, those skilled enough, best first (profile priority, then longest
 * idle): those with room for a call, and those with room for a chat (a contact looks only at its kind's).
 */
export function serversOf(queue: Queue, free: Ranked[], profiles: ReadonlyMap<string, RoutingProfile>): Record<CapacityKind, Agent[]> {
  const servers = free
    .filter(({ agent }) => skilled(agent, queue))
    .sort((a, b) => a.rank - b.rank || a.agent.idleSinceMs - b.agent.idleSinceMs || (a.agent.agentId < b.agent.agentId ? -1 : 1))
    .map(({ agent }) => agent);
  return {
    call: servers.filter((a) => a.load.call < capacityOf(a, 'call', profiles)),
    chat: servers.filter((a) => a.load.chat < capacityOf(a, 'chat', profiles)),
  };
}

/** The one agent a contact transferred to them by name may go to, when they are free. */
export function targetPool(agents: ReadonlyMap<string, Agent>, agentId: string): Agent[] {
  const agent = agents.get(agentId);
  return agent && agent.status === 'available' && !agent.offeredContactId ? [agent] : [];
}

export function eligible(agent: Agent, contact: Contact, queue: Queue, nowMs: number, profiles: ReadonlyMap<string, RoutingProfile>): boolean {
  if (contact.targetAgentId && contact.targetAgentId !== agent.agentId) return false;
  // Still in its room, handing it over: never offered it again.
  if (contact.handingOver?.includes(agent.agentId)) return false;
  const kind = capacityKindOf(contact.channel);
  if (agent.load[kind] >= capacityOf(agent, kind, profiles)) return false;
  const served = profiles.get(agent.profileId)?.queues.find((q) => q.queueId === queue.queueId);
  if (!served && !contact.targetAgentId) return false;
  if (served?.delaySeconds && (nowMs - contact.queuedAtMs) / 1000 < served.delaySeconds) return false;
  // A transfer to a named agent is the transferring agent's choice: their skills are not checked.
  return contact.targetAgentId !== undefined || skilled(agent, queue);
}

function skilled(agent: Agent, queue: Queue): boolean {
  for (const [skill, level] of Object.entries(queue.requiredSkills)) if ((agent.skills[skill] ?? 0) < level) return false;
  return true;
}

/** How many contacts of a kind the agent's profile lets them hold at once. */
export function capacityOf(agent: Agent, kind: CapacityKind, profiles: ReadonlyMap<string, RoutingProfile>): number {
  return profiles.get(agent.profileId)?.capacity[kind] ?? 0;
}
