import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from '@gateway/testing';
import type { Agent, Contact } from '../../services/routing/src/engine/model.js';
import { RoutingRecords, StaleRecord } from '../../services/routing/src/state/RoutingRecords.js';

const agent = (agentId: string): Agent => ({ agentId, status: 'available', profileId: 'front', skills: { billing: 5 }, load: { call: 0, chat: 0 }, idleSinceMs: 1, missedOffers: 0 });
const contact = (contactId: string): Contact => ({ contactId, queueId: 'billing', channel: 'video', requestedAtMs: 1, queuedAtMs: 1, priority: 0, state: 'waiting', passedBy: [] });

/**
 * No double assignment (docs/routing.md), on a real nats-server: two owners deciding from the
 * same view at once (a replica that lost its lease without knowing yet, and the new holder) race
 * to store offers. Whatever the interleaving, a contact is offered to one agent and an agent
 * holds one offer; the loser's half-made reservation is undone. Records that do not read are
 * left out.
 */
describe('routing records with compare-and-set', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  const unreadable: string[] = [];
  let records: RoutingRecords;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    kv = await new Kvm(nc).create('test_routing_records', { history: 1 });
    records = new RoutingRecords(kv, (key) => unreadable.push(key));
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('offers one contact to one agent when two owners race, 40 times over', async () => {
    for (let round = 0; round < 40; round++) {
      const tenant = `race${round}`;
      await records.putContact(tenant, contact('c1'), 0);
      await records.putAgent(tenant, agent('ann'), 0);
      await records.putAgent(tenant, agent('bob'), 0);
      // Both owners read the same state, then each offers c1 to its own choice.
      const view = await records.load(tenant);
      const outcomes = await Promise.allSettled([
        records.offer(tenant, view.contacts.get('c1')!, view.agents.get('ann')!, 1_000),
        records.offer(tenant, view.contacts.get('c1')!, view.agents.get('bob')!, 1_000),
      ]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
      expect(refused.reason).toBeInstanceOf(StaleRecord);
      const after = await records.load(tenant);
      const offeredTo = after.contacts.get('c1')!.record.offer!.agentId;
      // The agent it went to holds it; the other holds nothing.
      expect(after.agents.get(offeredTo)!.record.offeredContactId).toBe('c1');
      expect(after.agents.get(offeredTo === 'ann' ? 'bob' : 'ann')!.record.offeredContactId).toBeUndefined();
    }
  });

  it('gives an agent one offer when two owners offer them different contacts at once', async () => {
    const tenant = 'one-agent';
    await records.putContact(tenant, contact('c1'), 0);
    await records.putContact(tenant, contact('c2'), 0);
    await records.putAgent(tenant, agent('ann'), 0);
    const view = await records.load(tenant);
    const outcomes = await Promise.allSettled([
      records.offer(tenant, view.contacts.get('c1')!, view.agents.get('ann')!, 1_000),
      records.offer(tenant, view.contacts.get('c2')!, view.agents.get('ann')!, 1_000),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const after = await records.load(tenant);
    const held = after.agents.get('ann')!.record.offeredContactId!;
    expect(after.contacts.get(held)!.record.state).toBe('offered');
    expect(after.contacts.get(held === 'c1' ? 'c2' : 'c1')!.record.state).toBe('waiting');
    // A stale owner's write over an old revision is refused, and an agent already holding an offer is not offered another.
    await expect(records.putAgent(tenant, agent('ann'), view.agents.get('ann')!.revision)).rejects.toBeInstanceOf(StaleRecord);
    await expect(records.offer(tenant, after.contacts.get(held === 'c1' ? 'c2' : 'c1')!, after.agents.get('ann')!, 1_000)).rejects.toBeInstanceOf(StaleRecord);
  });

  it('leaves out records that do not read, or that sit under another id, and says which', async () => {
    const tenant = 'hostile';
    await records.putAgent(tenant, agent('ann'), 0);
    await kv.put(`${tenant}.agent.bob`, 'not json');
    await kv.put(`${tenant}.agent.cid`, JSON.stringify({ ...agent('cid'), load: { call: -1, chat: 0 } }));
    await kv.put(`${tenant}.agent.dee`, JSON.stringify(agent('ann')));
    await kv.put(`${tenant}.contact.c9`, JSON.stringify({ ...contact('c9'), extra: true }));
    const view = await records.load(tenant);
    expect([...view.agents.keys()]).toEqual(['ann']);
    expect(view.contacts.size).toBe(0);
    expect(unreadable.sort()).toEqual([`${tenant}.agent.bob`, `${tenant}.agent.cid`, `${tenant}.agent.dee`, `${tenant}.contact.c9`]);
    // Nothing invalid is ever written either.
    await expect(records.putAgent(tenant, { ...agent('eve'), agentId: 'not an id' }, 0)).rejects.toThrow();
  });
});
