import { describe, expect, it } from 'vitest';
import type { Contact } from './model.js';
import { RoutingRefusal } from './events.js';
import { RoutingEngine } from './RoutingEngine.js';

const T0 = 1_000_000;

/** Billing (needs billing ≥ 3) overflowing to general after 60 s; three agents on one profile, one on general only. */
function tenant(options: { offerTimeoutMs?: number } = {}) {
  const engine = new RoutingEngine(options);
  engine.setQueue({ queueId: 'billing', priority: 1, requiredSkills: { billing: 3 }, serviceLevelSeconds: 20, overflow: { queueId: 'general', afterSeconds: 60 }, maxWaitSeconds: 300 });
  engine.setQueue({ queueId: 'general', priority: 2, requiredSkills: {}, serviceLevelSeconds: 60 });
  engine.setProfile({
    profileId: 'front',
    queues: [
      { queueId: 'billing', priority: 1 },
      { queueId: 'general', priority: 2 },
    ],
    capacity: { call: 1, chat: 3 },
  });
  engine.setProfile({ profileId: 'general-only', queues: [{ queueId: 'general', priority: 1 }], capacity: { call: 1, chat: 2 } });
  const agent = (agentId: string, profileId: string, skills: Record<string, number>, idleSinceMs: number) => {
    engine.setAgent({ agentId, profileId, skills }, idleSinceMs);
    engine.setStatus(agentId, 'available', idleSinceMs);
  };
  agent('ann', 'front', { billing: 5 }, T0 - 30_000);
  agent('bob', 'front', { billing: 3 }, T0 - 60_000);
  agent('cid', 'front', { billing: 1 }, T0 - 90_000);
  agent('dee', 'general-only', {}, T0 - 120_000);
  return engine;
}
const offers = (events: ReturnType<RoutingEngine['tick']>) => events.filter((e) => e.type === 'offered').map((e) => `${e.contactId}->${(e as { agentId: string }).agentId}`);

describe('RoutingEngine', () => {
  it('offers a contact to the longest-idle agent with the skills its queue needs', () => {
    const engine = tenant();
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    // Cid and Dee were idle longer, but Cid's billing is 1 (3 needed) and Dee does not serve billing.
    expect(offers(engine.tick(T0))).toEqual(['c1->bob']);
    // One offer at a time: a second contact goes to the next one.
    engine.enqueue({ contactId: 'c2', queueId: 'billing', channel: 'voice' }, T0 + 1);
    expect(offers(engine.tick(T0 + 1))).toEqual(['c2->ann']);
  });

  it('moves a declined offer on, and the decliner is asked again only when everyone eligible passed', () => {
    const engine = tenant();
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    engine.tick(T0);
    expect(engine.decline('c1', 'bob')).toEqual([{ type: 'declined', contactId: 'c1', agentId: 'bob' }]);
    expect(offers(engine.tick(T0 + 100))).toEqual(['c1->ann']);
    engine.decline('c1', 'ann');
    expect(offers(engine.tick(T0 + 200))).toEqual(['c1->bob']);
  });

  it('times an offer out to the next agent, and sets an agent who let two go away', () => {
    const engine = tenant({ offerTimeoutMs: 15_000 });
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    engine.tick(T0);
    expect(offers(engine.tick(T0 + 14_999))).toEqual([]);
    const expired = engine.tick(T0 + 15_000);
    expect(expired).toContainEqual({ type: 'offer_expired', contactId: 'c1', agentId: 'bob' });
    expect(offers(expired)).toEqual(['c1->ann']);
    // Bob misses another one.
    engine.enqueue({ contactId: 'c2', queueId: 'billing', channel: 'voice' }, T0 + 15_001);
    expect(offers(engine.tick(T0 + 15_001))).toEqual(['c2->bob']);
    const second = engine.tick(T0 + 30_001);
    expect(second).toContainEqual({ type: 'agent_status', agentId: 'bob', status: 'away', reason: 'missed_offers' });
    expect(engine.agents.get('bob')!.status).toBe('away');
  });

  it('refuses an accept of an offer that moved on; the new agent keeps it', () => {
    const engine = tenant();
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    engine.tick(T0);
    engine.tick(T0 + 15_000); // to Ann
    expect(() => engine.accept('c1', 'bob')).toThrow(expect.objectContaining({ code: 'OFFER_MOVED_ON' }));
    expect(engine.accept('c1', 'ann')).toEqual([{ type: 'connected', contactId: 'c1', agentId: 'ann' }]);
    // Accepting twice, or once more by anyone, is refused the same way.
    expect(() => engine.accept('c1', 'ann')).toThrow(RoutingRefusal);
    expect(engine.contacts.get('c1')).toMatchObject({ state: 'connected', agentId: 'ann' });
  });

  it('keeps an agent within their capacity per kind: one call, three chats', () => {
    const engine = tenant();
    for (const id of ['v1', 'v2']) engine.enqueue({ contactId: id, queueId: 'general', channel: 'voice' }, T0);
    for (const id of ['t1', 't2', 't3', 't4']) engine.enqueue({ contactId: id, queueId: 'general', channel: 'chat' }, T0 + 1);
    // Only Dee and the front agents; accept whatever comes, round after round.
    for (let round = 0; round < 10; round++) {
      for (const event of engine.tick(T0 + 10 + round)) if (event.type === 'offered') engine.accept(event.contactId, event.agentId);
    }
    for (const agent of engine.agents.values()) {
      expect(agent.load.call, agent.agentId).toBeLessThanOrEqual(1);
      expect(agent.load.chat, agent.agentId).toBeLessThanOrEqual(agent.profileId === 'front' ? 3 : 2);
    }
    expect([...engine.contacts.values()].every((c) => c.state === 'connected')).toBe(true);
  });

  it('overflows a contact to its overflow queue after its timeout, and offers a callback past the maximum wait', () => {
    const engine = tenant();
    for (const id of ['ann', 'bob', 'cid', 'dee']) engine.setStatus(id, 'away', T0, 'meeting');
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'voice' }, T0);
    expect(engine.tick(T0 + 59_000)).toEqual([]);
    expect(engine.tick(T0 + 60_000)).toEqual([{ type: 'overflowed', contactId: 'c1', fromQueueId: 'billing', toQueueId: 'general' }]);
    // Dee (general only) comes back: she can take it now.
    engine.setStatus('dee', 'available', T0 + 61_000);
    expect(offers(engine.tick(T0 + 61_000))).toEqual(['c1->dee']);
    // A billing contact nobody takes for 300 s gets a callback offer, once, and keeps its place.
    engine.setStatus('dee', 'away', T0 + 61_001);
    engine.enqueue({ contactId: 'c2', queueId: 'general', channel: 'voice' }, T0);
    engine.setQueue({ queueId: 'general', priority: 2, requiredSkills: {}, serviceLevelSeconds: 60, maxWaitSeconds: 120 });
    const due = engine.tick(T0 + 120_000);
    expect(
      due
        .filter((e) => e.type === 'callback_offered')
        .map((e) => e.contactId)
        .sort(),
    ).toEqual(['c1', 'c2']);
    expect(engine.tick(T0 + 130_000).filter((e) => e.type === 'callback_offered')).toEqual([]);
    expect(engine.positions().find((p) => p.contactId === 'c2')).toMatchObject({ position: 2 });
  });

  it('serves queues by profile priority, contacts by priority then by when they asked, and holds delayed queues back', () => {
    const engine = tenant();
    engine.setProfile({
      profileId: 'front',
      queues: [
        { queueId: 'billing', priority: 1 },
        { queueId: 'general', priority: 2, delaySeconds: 30 },
      ],
      capacity: { call: 1, chat: 3 },
    });
    engine.setStatus('dee', 'away', T0);
    engine.enqueue({ contactId: 'g1', queueId: 'general', channel: 'voice' }, T0 - 5_000);
    engine.enqueue({ contactId: 'b1', queueId: 'billing', channel: 'voice' }, T0);
    engine.enqueue({ contactId: 'b2', queueId: 'billing', channel: 'voice', priority: 1 }, T0 + 1);
    // Billing first; b2's priority puts it ahead of b1; general waits out its 30 s delay for the front profile.
    expect(offers(engine.tick(T0 + 2))).toEqual(['b2->bob', 'b1->ann']);
    engine.accept('b2', 'bob');
    engine.accept('b1', 'ann');
    expect(offers(engine.tick(T0 + 20_000))).toEqual([]);
    expect(offers(engine.tick(T0 + 25_000))).toEqual(['g1->cid']);
  });

  it('transfers cold to a queue (ahead of the others) or to one named agent, and wraps up', () => {
    const engine = tenant();
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    engine.tick(T0);
    engine.accept('c1', 'bob');
    expect(() => engine.transfer('c1', 'ann', { queueId: 'general' }, T0 + 1)).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
    engine.transfer('c1', 'bob', { queueId: 'general', agentId: 'dee' }, T0 + 2);
    // Only Dee is offered it, though Ann was free longer in general's profile order.
    expect(offers(engine.tick(T0 + 3))).toEqual(['c1->dee']);
    engine.accept('c1', 'dee');
    const ended = engine.complete('c1', T0 + 100_000, T0 + 3);
    expect(ended).toEqual([
      { type: 'ended', contactId: 'c1', reason: 'completed', contact: expect.objectContaining({ contactId: 'c1', state: 'connected' }) },
      { type: 'agent_status', agentId: 'dee', status: 'after_contact_work' },
    ]);
    expect(() => engine.wrapUp('bob', T0)).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
    engine.wrapUp('dee', T0 + 110_000);
    expect(engine.agents.get('dee')).toMatchObject({ status: 'available', idleSinceMs: T0 + 110_000 });
  });

  it('keeps a warm transfer on the first agent (busy, their capacity held) until they complete the hand-over, then after-contact work', () => {
    const engine = tenant();
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    engine.tick(T0);
    engine.accept('c1', 'bob');
    engine.setStatus('dee', 'away', T0);
    expect(engine.transfer('c1', 'bob', { queueId: 'billing', agentId: 'dee' }, T0 + 1, { warm: true })).toEqual([
      { type: 'transferred', contactId: 'c1', fromAgentId: 'bob', queueId: 'billing', targetAgentId: 'dee', warm: true },
    ]);
    expect(engine.agents.get('bob')).toMatchObject({ status: 'available', load: { call: 1, chat: 0 } });
    expect(engine.contacts.get('c1')).toMatchObject({ state: 'waiting', handingOver: ['bob'] });
    // Bob's call capacity is in use: a new call goes to Ann, never to him.
    engine.enqueue({ contactId: 'c2', queueId: 'billing', channel: 'voice' }, T0 + 2);
    expect(offers(engine.tick(T0 + 3))).toEqual(['c2->ann']);
    // Dee, named, comes back: offered it, though she does not serve billing.
    engine.setStatus('dee', 'available', T0 + 3);
    expect(offers(engine.tick(T0 + 3))).toEqual(['c1->dee']);
    engine.accept('c1', 'dee');
    expect(engine.agents.get('bob')!.load.call).toBe(1);
    expect(engine.agents.get('dee')!.load.call).toBe(1);
    // Nobody else may complete Bob's hand-over, nor may he end a contact that is Dee's.
    expect(() => engine.completeTransfer('c1', 'dee')).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
    expect(engine.completeTransfer('c1', 'bob')).toEqual([
      { type: 'handed_over', contactId: 'c1', agentId: 'bob', contact: expect.objectContaining({ contactId: 'c1', agentId: 'dee', handingOver: ['bob'] }) },
      { type: 'agent_status', agentId: 'bob', status: 'after_contact_work' },
    ]);
    expect(engine.agents.get('bob')).toMatchObject({ status: 'after_contact_work', load: { call: 0, chat: 0 } });
    expect(engine.contacts.get('c1')).toMatchObject({ state: 'connected', agentId: 'dee' });
    expect(engine.contacts.get('c1')!.handingOver).toBeUndefined();
    expect(() => engine.completeTransfer('c1', 'bob')).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
    // While in after-contact work nothing is offered to him; the wrap-up frees him.
    engine.enqueue({ contactId: 'c3', queueId: 'billing', channel: 'voice' }, T0 + 4);
    expect(offers(engine.tick(T0 + 5))).toEqual([]);
    engine.wrapUp('bob', T0 + 6);
    expect(offers(engine.tick(T0 + 7))).toEqual(['c3->bob']);
    // Dee's end of the contact is hers alone: Bob's part was over.
    expect(engine.complete('c1', T0 + 8, T0 + 3).map((e) => e.type)).toEqual(['ended', 'agent_status']);
  });

  it('never offers a contact back to the agent handing it over, and ends their part when the contact ends or they go offline', () => {
    const engine = tenant();
    // Room for two calls each: only the hand-over itself keeps Bob from being offered his own contact.
    engine.setProfile({ profileId: 'front', queues: [{ queueId: 'billing', priority: 1 }], capacity: { call: 2, chat: 3 } });
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    expect(offers(engine.tick(T0))).toEqual(['c1->bob']);
    engine.accept('c1', 'bob');
    expect(() => engine.transfer('c1', 'bob', { queueId: 'billing', agentId: 'bob' }, T0 + 1, { warm: true })).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
    engine.transfer('c1', 'bob', { queueId: 'billing' }, T0 + 1, { warm: true });
    expect(offers(engine.tick(T0 + 2))).toEqual(['c1->ann']);
    // Ann declines: everyone eligible passed, and the round starts again, still without Bob (Cid lacks the skill).
    engine.decline('c1', 'ann');
    expect(offers(engine.tick(T0 + 3))).toEqual(['c1->ann']);
    engine.accept('c1', 'ann');
    // Ann cannot hand it back warm to Bob while he is still in its room.
    expect(() => engine.transfer('c1', 'ann', { queueId: 'billing', agentId: 'bob' }, T0 + 4, { warm: true })).toThrow(expect.objectContaining({ code: 'INVALID_STATE' }));
    // The contact ends before Bob left: his part ends with it.
    const ended = engine.complete('c1', T0 + 10_000, T0 + 3);
    expect(ended.map((e) => `${e.type}:${'agentId' in e ? e.agentId : ''}`)).toEqual(['ended:', 'agent_status:ann', 'handed_over:bob', 'agent_status:bob']);
    expect(engine.agents.get('bob')).toMatchObject({ status: 'after_contact_work', load: { call: 0, chat: 0 } });
    engine.wrapUp('bob', T0 + 10_001);
    engine.wrapUp('ann', T0 + 10_002);

    // Bob's app gone for good (offline) while handing one over: his part ends, the contact goes on.
    engine.enqueue({ contactId: 'c2', queueId: 'billing', channel: 'voice' }, T0 + 20_000);
    expect(offers(engine.tick(T0 + 20_000))).toEqual(['c2->bob']);
    engine.accept('c2', 'bob');
    engine.transfer('c2', 'bob', { queueId: 'general', agentId: 'dee' }, T0 + 20_001, { warm: true });
    const offline = engine.setStatus('bob', 'offline', T0 + 20_002);
    expect(offline.map((e) => e.type)).toEqual(['handed_over', 'agent_status', 'agent_status']);
    expect(engine.agents.get('bob')).toMatchObject({ status: 'offline', load: { call: 0, chat: 0 } });
    expect(offers(engine.tick(T0 + 20_003))).toEqual(['c2->dee']);
    // And an end user who hangs up while the next agent rings ends the first one's part too.
    engine.setStatus('bob', 'available', T0 + 20_004);
    engine.enqueue({ contactId: 'c3', queueId: 'billing', channel: 'voice' }, T0 + 20_005);
    expect(offers(engine.tick(T0 + 20_005))).toEqual(['c3->ann']);
    engine.accept('c3', 'ann');
    engine.transfer('c3', 'ann', { queueId: 'billing' }, T0 + 20_006, { warm: true });
    expect(offers(engine.tick(T0 + 20_007))).toEqual(['c3->bob']);
    expect(engine.abandon('c3').map((e) => e.type)).toEqual(['ended', 'handed_over', 'agent_status']);
    expect(engine.agents.get('ann')).toMatchObject({ status: 'after_contact_work', load: { call: 0, chat: 0 } });
    expect(engine.agents.get('bob')!.offeredContactId).toBeUndefined();
  });

  it('takes an offer back at once from an agent whose app went away, and gives the status back when it returns', () => {
    const engine = tenant();
    engine.setStatus('ann', 'away', T0, 'lunch');
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    expect(offers(engine.tick(T0))).toEqual(['c1->bob']);
    const gone = engine.disconnect('bob', T0 + 1);
    expect(gone).toContainEqual({ type: 'offer_expired', contactId: 'c1', agentId: 'bob' });
    expect(engine.agents.get('bob')).toMatchObject({ status: 'away', awayReason: 'disconnected', beforeDisconnect: 'available' });
    // Not offered again while away, and a second disconnect changes nothing.
    expect(offers(engine.tick(T0 + 2))).toEqual([]);
    expect(engine.disconnect('bob', T0 + 3)).toEqual([]);
    expect(engine.reconnect('bob', T0 + 4)).toContainEqual({ type: 'agent_status', agentId: 'bob', status: 'available' });
    expect(engine.agents.get('bob')!.beforeDisconnect).toBeUndefined();
    // It passed on c1 once, but it is the only one eligible: offered again.
    expect(offers(engine.tick(T0 + 5))).toEqual(['c1->bob']);
    // An agent who was never away stays as it is.
    expect(engine.reconnect('ann', T0 + 6)).toEqual([]);
    expect(engine.agents.get('ann')!.status).toBe('away');
  });

  it('withdraws an offer at once when its agent leaves (an app killed while ringing), and an abandon frees the agent', () => {
    const engine = tenant();
    engine.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'video' }, T0);
    engine.tick(T0);
    expect(engine.setStatus('bob', 'offline', T0 + 1)).toContainEqual({ type: 'offer_expired', contactId: 'c1', agentId: 'bob' });
    expect(offers(engine.tick(T0 + 1))).toEqual(['c1->ann']);
    expect(engine.abandon('c1')).toEqual([
      { type: 'ended', contactId: 'c1', reason: 'abandoned', contact: expect.objectContaining({ contactId: 'c1', offer: expect.objectContaining({ agentId: 'ann' }) }) },
    ]);
    expect(engine.agents.get('ann')!.offeredContactId).toBeUndefined();
    expect(() => engine.accept('c1', 'ann')).toThrow(expect.objectContaining({ code: 'OFFER_MOVED_ON' }));
  });

  it('decides with incremental passes exactly as with full ones, over 3,000 random operations (seeded)', () => {
    for (const seed of [1, 2, 3]) {
      let state = seed;
      const rand = () => {
        state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
        return state / 2_147_483_648;
      };
      const engines = [tenant(), tenant()];
      engines[1] = (() => {
        const full = new RoutingEngine({ fullPasses: true });
        for (const q of engines[0]!.queues.values()) full.setQueue(q);
        for (const p of engines[0]!.profiles.values()) full.setProfile(p);
        for (const a of engines[0]!.agents.values()) {
          full.setAgent(a, a.idleSinceMs);
          full.setStatus(a.agentId, 'available', a.idleSinceMs);
        }
        return full;
      })();
      const agents = ['ann', 'bob', 'cid', 'dee'];
      const logs: string[][] = [[], []];
      let now = T0;
      for (let step = 0; step < 1_000; step++) {
        now += Math.floor(rand() * 4_000);
        const roll = rand();
        const pick = <T>(items: T[]) => items[Math.floor(rand() * items.length)]!;
        // Every choice is drawn once, for both engines.
        const agentId = pick(agents);
        const queueId = pick(['billing', 'general']);
        const channel = pick(['voice', 'video', 'chat'] as const);
        const status = pick(['available', 'away', 'offline'] as const);
        engines.forEach((engine, i) => {
          const apply = (operation: () => unknown) => {
            try {
              const events = operation();
              logs[i]!.push(JSON.stringify(events ?? null));
            } catch (error) {
              logs[i]!.push(`refused ${(error as RoutingRefusal).code}`);
            }
          };
          const offered = [...engine.contacts.values()].filter((c) => c.state === 'offered');
          const connected = [...engine.contacts.values()].filter((c) => c.state === 'connected');
          const handing = [...engine.contacts.values()].filter((c) => c.handingOver);
          if (roll < 0.3) apply(() => engine.enqueue({ contactId: `c${step}`, queueId, channel }, now));
          else if (roll < 0.45 && offered.length > 0) apply(() => engine.accept(offered[0]!.contactId, offered[0]!.offer!.agentId));
          else if (roll < 0.5 && offered.length > 0) apply(() => engine.decline(offered[0]!.contactId, offered[0]!.offer!.agentId));
          else if (roll < 0.6 && connected.length > 0) apply(() => engine.complete(connected[0]!.contactId, now, now - 1_000));
          else if (roll < 0.65 && connected.length > 0)
            apply(() => engine.transfer(connected[0]!.contactId, connected[0]!.agentId!, { queueId, ...(roll < 0.64 ? { agentId } : {}) }, now, { warm: roll < 0.625 }));
          else if (roll < 0.68 && handing.length > 0) apply(() => engine.completeTransfer(handing[0]!.contactId, handing[0]!.handingOver![0]!));
          else if (roll < 0.75) apply(() => engine.setStatus(agentId, status, now));
          else if (roll < 0.8) apply(() => engine.wrapUp(agentId, now));
          else if (roll < 0.83 && engine.contacts.size > 0) apply(() => engine.abandon([...engine.contacts.keys()][0]!));
          apply(() => engine.tick(now));
        });
      }
      expect(logs[0]!.length).toBeGreaterThan(1_000);
      const first = logs[0]!.findIndex((entry, i) => entry !== logs[1]![i]);
      expect(first === -1 ? 'same' : `seed ${seed}, entry ${first}: ${logs[0]![first - 1]} | ${logs[0]![first]} vs ${logs[1]![first]}`).toBe('same');
      expect(logs[0]!.join('').includes('"offered"')).toBe(true);
    }
  });

  it('tells each waiting contact its place and a wait that shrinks as the queue moves', () => {
    const engine = tenant();
    for (const id of ['ann', 'bob', 'cid', 'dee']) engine.setStatus(id, 'away', T0);
    for (let i = 1; i <= 3; i++) engine.enqueue({ contactId: `c${i}`, queueId: 'general', channel: 'voice' }, T0 + i);
    const before = engine.positions().sort((a, b) => a.position - b.position);
    expect(before.map((p) => [p.contactId, p.position])).toEqual([
      ['c1', 1],
      ['c2', 2],
      ['c3', 3],
    ]);
    expect(before[2]!.estimatedWaitSeconds).toBeGreaterThan(before[1]!.estimatedWaitSeconds);
    engine.setStatus('dee', 'available', T0 + 10);
    engine.tick(T0 + 10);
    engine.accept('c1', 'dee');
    expect(engine.positions().find((p) => p.contactId === 'c3')).toMatchObject({ position: 2 });
  });
});

describe('RoutingEngine indexes', () => {
  /** Within a queue: higher priority first, then who asked first (the engine's order of service, written out again). */
  const inOrder = (a: Contact, b: Contact) => b.priority - a.priority || a.requestedAtMs - b.requestedAtMs || (a.contactId < b.contactId ? -1 : 1);

  it('renumbers both queues when a contact moves between them (overflow, transfer)', () => {
    const engine = tenant();
    for (const id of ['ann', 'bob', 'cid', 'dee']) engine.setStatus(id, 'away', T0);
    engine.enqueue({ contactId: 'b1', queueId: 'billing', channel: 'voice' }, T0);
    engine.enqueue({ contactId: 'g1', queueId: 'general', channel: 'voice' }, T0 + 1_000);
    engine.enqueue({ contactId: 'b2', queueId: 'billing', channel: 'voice' }, T0 + 30_000);
    engine.enqueue({ contactId: 'g2', queueId: 'general', channel: 'voice' }, T0 + 40_000);
    expect(engine.placeOf('b2')).toMatchObject({ queueId: 'billing', position: 2 });
    engine.takeMovedQueues();
    // b1 overflows to general at 60 s and keeps its place by when it asked: first there.
    engine.tick(T0 + 60_000);
    expect(engine.takeMovedQueues()).toEqual(new Set(['billing', 'general']));
    expect(engine.queuedIn('general').map((c) => c.contactId)).toEqual(['b1', 'g1', 'g2']);
    expect(engine.placeOf('b2')).toMatchObject({ queueId: 'billing', position: 1 });
    expect(engine.placeOf('g2')).toMatchObject({ queueId: 'general', position: 3 });
    // g1 is connected, then transferred back to billing: ahead of b2 there (a transfer's priority), gone from general.
    engine.setStatus('dee', 'available', T0 + 61_000);
    engine.tick(T0 + 61_000);
    expect(engine.contacts.get('b1')).toMatchObject({ state: 'offered' });
    engine.accept('b1', 'dee');
    expect(engine.heldBy('dee').map((c) => c.contactId)).toEqual(['b1']);
    expect(engine.placeOf('b1')).toBeUndefined();
    expect(engine.placeOf('g2')).toMatchObject({ position: 2 });
    engine.setStatus('dee', 'away', T0 + 62_000);
    engine.transfer('b1', 'dee', { queueId: 'billing' }, T0 + 62_000);
    expect(engine.heldBy('dee')).toEqual([]);
    expect(engine.queuedIn('billing').map((c) => c.contactId)).toEqual(['b1', 'b2']);
    expect(engine.queuedIn('general').map((c) => c.contactId)).toEqual(['g1', 'g2']);
    expect(
      engine
        .positions()
        .map((p) => `${p.contactId}@${p.queueId}#${p.position}`)
        .sort(),
    ).toEqual(['b1@billing#1', 'b2@billing#2', 'g1@general#1', 'g2@general#2']);
  });

  it('agrees with a walk over every contact and agent after each of 3,000 random operations (seeded), and names every queue where a place changed', () => {
    for (const seed of [7, 8, 9]) {
      let state = seed;
      const rand = () => {
        state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
        return state / 2_147_483_648;
      };
      const pick = <T>(items: readonly T[]) => items[Math.floor(rand() * items.length)]!;
      let engine = tenant();
      const agents = ['ann', 'bob', 'cid', 'dee'];
      const endUsers = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
      // The handle time the engine should have, kept here the same way (a moving average per queue).
      const handle = new Map<string, number>();
      const told = new Map<string, string>();
      let now = T0;
      for (let step = 0; step < 1_000; step++) {
        now += Math.floor(rand() * 8_000);
        const roll = rand();
        const contacts = [...engine.contacts.values()];
        const offered = contacts.filter((c) => c.state === 'offered');
        const connected = contacts.filter((c) => c.state === 'connected');
        try {
          if (roll < 0.3) engine.enqueue({ contactId: `c${step}`, queueId: pick(['billing', 'general']), channel: pick(['voice', 'video', 'chat'] as const), about: { endUser: pick(endUsers) } }, now);
          else if (roll < 0.42 && offered.length > 0) {
            const c = pick(offered);
            engine.accept(c.contactId, c.offer!.agentId);
          } else if (roll < 0.47 && offered.length > 0) {
            const c = pick(offered);
            engine.decline(c.contactId, c.offer!.agentId);
          } else if (roll < 0.55 && connected.length > 0) {
            const c = pick(connected);
            engine.complete(c.contactId, now, now - 90_000);
            const previous = handle.get(c.queueId);
            handle.set(c.queueId, previous === undefined ? 90 : previous * 0.8 + 90 * 0.2);
          } else if (roll < 0.62 && connected.length > 0) {
            const c = pick(connected);
            const toAgent = rand() < 0.3 ? pick(agents.filter((a) => a !== c.agentId)) : undefined;
            engine.transfer(c.contactId, c.agentId!, { queueId: pick(['billing', 'general']), ...(toAgent ? { agentId: toAgent } : {}) }, now, { warm: rand() < 0.5 });
          } else if (roll < 0.65 && contacts.some((c) => c.handingOver)) {
            const c = pick(contacts.filter((x) => x.handingOver));
            engine.completeTransfer(c.contactId, pick(c.handingOver!));
          } else if (roll < 0.74) engine.setStatus(pick(agents), pick(['available', 'away', 'offline'] as const), now);
          else if (roll < 0.78) engine.wrapUp(pick(agents), now);
          else if (roll < 0.84 && contacts.length > 0) engine.abandon(pick(contacts).contactId);
          else if (roll < 0.85) engine.setAgent({ agentId: pick(agents), profileId: pick(['front', 'general-only']), skills: { billing: pick([1, 3, 5]) } }, now);
          else if (roll < 0.87) {
            // A new owner: the same records, indexes built afresh (handle times start over).
            const restored = tenant();
            restored.restore(structuredClone([...engine.agents.values()]), structuredClone([...engine.contacts.values()]));
            engine = restored;
            handle.clear();
          }
        } catch (error) {
          if (!(error instanceof RoutingRefusal)) throw error;
        }
        engine.tick(now);

        const all = [...engine.contacts.values()];
        const where = `seed ${seed}, step ${step}`;
        for (const queueId of ['billing', 'general']) {
          const expected = all.filter((c) => c.queueId === queueId && (c.state === 'waiting' || c.state === 'offered')).sort(inOrder);
          expect(
            engine.queuedIn(queueId).map((c) => c.contactId),
            where,
          ).toEqual(expected.map((c) => c.contactId));
          const servers = Math.max(1, [...engine.agents.values()].filter((a) => a.status !== 'offline' && engine.profiles.get(a.profileId)?.queues.some((q) => q.queueId === queueId)).length);
          const places = expected.map((c, index) => ({ contactId: c.contactId, queueId, position: index + 1, estimatedWaitSeconds: Math.round((index * (handle.get(queueId) ?? 300)) / servers) }));
          expect(
            expected.map((c) => engine.placeOf(c.contactId)),
            where,
          ).toEqual(places);
        }
        for (const agentId of agents) {
          // Held: connected to them, or handed over warm and not yet left.
          const expected = all
            .filter((c) => (c.state === 'connected' && c.agentId === agentId) || c.handingOver?.includes(agentId))
            .sort((a, b) => a.requestedAtMs - b.requestedAtMs || (a.contactId < b.contactId ? -1 : 1));
          expect(
            engine.heldBy(agentId).map((c) => c.contactId),
            where,
          ).toEqual(expected.map((c) => c.contactId));
        }
        const free = [...engine.agents.values()].filter((a) => a.status === 'available' && !a.offeredContactId).map((a) => a.agentId);
        expect(engine.freeAgentIds().sort(), where).toEqual(free.sort());
        for (const endUser of endUsers) {
          const expected = all.filter((c) => c.about?.endUser === endUser).sort((a, b) => a.requestedAtMs - b.requestedAtMs || (a.contactId < b.contactId ? -1 : 1))[0];
          expect(engine.contactOfEndUser(endUser)?.contactId, where).toBe(expected?.contactId);
        }
        // What the owner tells: a contact whose place, wait, queue or phase changed is in a queue named as moved.
        const moved = engine.takeMovedQueues();
        const untold: string[] = [];
        for (const c of all) {
          const place = engine.placeOf(c.contactId);
          if (!place) continue;
          const summary = `${c.state}:${c.callback}:${c.queueId}:${place.position}:${place.estimatedWaitSeconds}`;
          if (told.get(c.contactId) !== summary && !moved.has(c.queueId)) untold.push(`${c.contactId} ${told.get(c.contactId)} -> ${summary}`);
          told.set(c.contactId, summary);
        }
        expect(untold, where).toEqual([]);
      }
    }
  });
});
