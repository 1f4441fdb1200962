import { describe, expect, it } from 'vitest';
import type { Agent, Contact } from '../engine/model.js';
import { repairOffers } from './repair.js';

const agent = (agentId: string, offeredContactId?: string): Agent => ({
  agentId,
  status: 'available',
  profileId: 'front',
  skills: {},
  load: { call: 0, chat: 0 },
  idleSinceMs: 1,
  missedOffers: 0,
  ...(offeredContactId ? { offeredContactId } : {}),
});
const contact = (contactId: string, offeredTo?: string): Contact => ({
  contactId,
  queueId: 'billing',
  channel: 'voice',
  requestedAtMs: 1,
  queuedAtMs: 1,
  priority: 0,
  state: offeredTo ? 'offered' : 'waiting',
  ...(offeredTo ? { offer: { agentId: offeredTo, expiresAtMs: 10 } } : {}),
  passedBy: [],
});

describe('repairOffers', () => {
  it('keeps whole offers, and undoes either half of one an owner left when it died between its two writes', () => {
    const agents = new Map([
      ['ann', agent('ann', 'c1')], // whole: c1 is offered to Ann
      ['bob', agent('bob', 'c2')], // reserved, but c2 was never marked (the owner died in between)
      ['cid', agent('cid', 'gone')], // reserved for a contact that ended
      ['dee', agent('dee')],
    ]);
    const contacts = new Map([
      ['c1', contact('c1', 'ann')],
      ['c2', contact('c2')],
      ['c3', contact('c3', 'dee')], // marked for Dee, whose record does not hold it
    ]);
    expect(repairOffers(agents, contacts)).toEqual({ agents: ['bob', 'cid'], contacts: ['c3'] });
    expect(agents.get('ann')!.offeredContactId).toBe('c1');
    expect(agents.get('bob')!.offeredContactId).toBeUndefined();
    expect(contacts.get('c3')).toMatchObject({ state: 'waiting', offer: undefined });
    expect(contacts.get('c1')!.state).toBe('offered');
    // Repaired records need nothing more.
    expect(repairOffers(agents, contacts)).toEqual({ agents: [], contacts: [] });
  });
});
