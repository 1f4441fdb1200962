import type { Agent, Contact } from '../engine/model.js';

/**
 * Makes a tenant's loaded records agree before an owner decides from them. An offer is two
 * writes (the agent reserved, then the contact marked: RoutingRecords.offer), and an owner that
 * dies between them leaves an agent reserved for a contact that was never offered to them; an
 * agent record lost or rewritten can leave a contact offered to someone who does not hold it.
 * Either half alone is undone: the agent is free again, the contact waits again (keeping its
 * place). Returns the ids of the records changed, to be written back.
 */
export function repairOffers(agents: Map<string, Agent>, contacts: Map<string, Contact>): { agents: string[]; contacts: string[] } {
  const changed = { agents: [] as string[], contacts: [] as string[] };
  for (const agent of agents.values()) {
    if (!agent.offeredContactId) continue;
    const contact = contacts.get(agent.offeredContactId);
    if (contact?.state === 'offered' && contact.offer?.agentId === agent.agentId) continue;
    agent.offeredContactId = undefined;
    changed.agents.push(agent.agentId);
  }
  for (const contact of contacts.values()) {
    if (contact.state !== 'offered') continue;
    if (contact.offer && agents.get(contact.offer.agentId)?.offeredContactId === contact.contactId) continue;
    contact.state = 'waiting';
    contact.offer = undefined;
    changed.contacts.push(contact.contactId);
  }
  return changed;
}
