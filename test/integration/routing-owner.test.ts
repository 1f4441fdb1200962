import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from '@gateway/testing';
import { RoutingEngine } from '../../services/routing/src/engine/RoutingEngine.js';
import { TenantOwner } from '../../services/routing/src/ownership/TenantOwner.js';
import { RoutingRecords, StaleRecord } from '../../services/routing/src/state/RoutingRecords.js';

const T0 = 1_000_000;

/** An operation whose events the test does not look at. */
const quietly =
  (work: (engine: RoutingEngine) => unknown) =>
  (engine: RoutingEngine): [] => {
    work(engine);
    return [];
  };
/** An agent available since `sinceMs`. */
const agentIn = (agentId: string, sinceMs: number) =>
  quietly((e) => {
    e.setAgent({ agentId, profileId: 'front', skills: {} }, sinceMs);
    e.setStatus(agentId, 'available', sinceMs);
  });

/** An engine with the tenant's directory: one queue, one profile (what the directory will hold). */
function engine(): RoutingEngine {
  const routing = new RoutingEngine({ offerTimeoutMs: 15_000 });
  routing.setQueue({ queueId: 'billing', priority: 1, requiredSkills: {}, serviceLevelSeconds: 20 });
  routing.setProfile({ profileId: 'front', queues: [{ queueId: 'billing', priority: 1 }], capacity: { call: 1, chat: 3 } });
  return routing;
}

/**
 * Owners of a tenant on a real nats-server (docs/routing.md): decisions are stored before they
 * count; an owner deciding from a stale view (two at once, as when a lease was lost unknowingly)
 * is refused and reloads; an owner that dies leaves nothing lost or doubled: the next one loads
 * the tenant and goes on, the waiting contact keeping its place.
 */
describe('the owner of a tenant', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;
  let records: RoutingRecords;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    kv = await new Kvm(nc).create('test_routing_owner', { history: 1 });
    records = new RoutingRecords(kv);
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('stores each decision once: a second owner deciding the same from a stale view is refused and catches up', async () => {
    const tenant = 'acme';
    const a = new TenantOwner(tenant, records, engine());
    await a.load();
    await a.run(agentIn('ann', T0 - 10));
    await a.run(agentIn('bob', T0 - 20));
    await a.run(quietly((e) => e.enqueue({ contactId: 'c1', queueId: 'billing', channel: 'voice' }, T0)));
    const b = new TenantOwner(tenant, records, engine());
    await b.load();
    expect(b.engine.contacts.get('c1')?.state).toBe('waiting');

    // Both decide at once from the same view: the same offer, stored once.
    const [first, second] = await Promise.allSettled([a.run((e) => e.tick(T0 + 1)), b.run((e) => e.tick(T0 + 1))]);
    const outcomes = [first, second].map((o) => o.status);
    expect(outcomes.sort()).toEqual(['fulfilled', 'rejected']);
    const refused = [first, second].find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(StaleRecord);
    const stored = await records.load(tenant);
    expect(stored.contacts.get('c1')!.record.offer?.agentId).toBe('bob');
    expect(stored.agents.get('bob')!.record.offeredContactId).toBe('c1');
    expect(stored.agents.get('ann')!.record.offeredContactId).toBeUndefined();
    // The refused owner reloaded: it sees the offer as stored.
    const loser = first.status === 'rejected' ? a : b;
    expect(loser.engine.contacts.get('c1')?.offer?.agentId).toBe('bob');
  });

  it('goes on after an owner dies with an offer out: the next one offers it on at the timeout, the contact keeping its place', async () => {
    const tenant = 'acme';
    // (The owners of the last test are gone: a new replica takes the tenant.)
    const c = new TenantOwner(tenant, records, engine());
    await c.load();
    const requestedAtMs = c.engine.contacts.get('c1')!.requestedAtMs;
    expect(await c.run((e) => e.tick(T0 + 5_000))).toEqual([]);
    const moved = await c.run((e) => e.tick(T0 + 15_001));
    expect(moved).toContainEqual({ type: 'offer_expired', contactId: 'c1', agentId: 'bob' });
    expect(moved).toContainEqual(expect.objectContaining({ type: 'offered', contactId: 'c1', agentId: 'ann' }));
    const stored = await records.load(tenant);
    expect(stored.contacts.get('c1')!.record).toMatchObject({ state: 'offered', requestedAtMs, offer: { agentId: 'ann' }, passedBy: ['bob'] });
    expect(stored.agents.get('bob')!.record).toMatchObject({ missedOffers: 1 });
    expect(stored.agents.get('bob')!.record.offeredContactId).toBeUndefined();
    // Accepted, then ended: the contact's record goes.
    await c.run((e) => e.accept('c1', 'ann'));
    await c.run((e) => e.complete('c1', T0 + 60_000, T0 + 16_000));
    expect((await records.load(tenant)).contacts.has('c1')).toBe(false);
  });

  it("decides operations that come together in order and stores them at once; a refusal is its operation's alone, a stale write refuses them all", async () => {
    const tenant = 'initech';
    const owner = new TenantOwner(tenant, records, engine());
    await owner.load();
    // Sent at once, not awaited one by one: they are decided one after another and stored together.
    const sent = [
      owner.run(agentIn('ann', T0 - 20)),
      owner.run(agentIn('bob', T0 - 10)),
      ...[1, 2, 3].map((n) => owner.run(quietly((e) => e.enqueue({ contactId: `k${n}`, queueId: 'billing', channel: 'voice' }, T0 + n)))),
      owner.run((e) => e.accept('nobody-offered-this', 'ann')),
      owner.run((e) => e.tick(T0 + 10)),
    ];
    const outcomes = await Promise.allSettled(sent);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[5] as PromiseRejectedResult).reason).toMatchObject({ code: 'OFFER_MOVED_ON' });
    const ticked = (outcomes[6] as PromiseFulfilledResult<Awaited<(typeof sent)[number]>>).value;
    expect(ticked.filter((e) => e.type === 'offered').map((e) => `${e.contactId}->${'agentId' in e ? e.agentId : ''}`)).toEqual(['k1->ann', 'k2->bob']);
    const stored = await records.load(tenant);
    expect([...stored.contacts.values()].map((c) => `${c.record.contactId}:${c.record.state}:${c.record.offer?.agentId ?? ''}`).sort()).toEqual(['k1:offered:ann', 'k2:offered:bob', 'k3:waiting:']);
    expect(stored.agents.get('ann')!.record.offeredContactId).toBe('k1');

    // Another owner changes k3 meanwhile: every operation of the next batch is refused, and the owner reloads.
    const other = new TenantOwner(tenant, records, engine());
    await other.load();
    await other.run((e) => e.abandon('k3'));
    const stale = await Promise.allSettled([
      owner.run((e) => e.setStatus('bob', 'away', T0 + 20)),
      owner.run(quietly((e) => e.enqueue({ contactId: 'k4', queueId: 'billing', channel: 'voice' }, T0 + 20))),
      owner.run((e) => e.abandon('k3')),
    ]);
    expect(stale.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(stale.every((o) => (o as PromiseRejectedResult).reason instanceof StaleRecord)).toBe(true);
    // What it holds now is what the store holds (writes of the batch that landed before the refusal included).
    const truth = await records.load(tenant);
    expect(owner.engine.contacts.has('k3')).toBe(false);
    expect([...owner.engine.contacts.keys()].sort()).toEqual([...truth.contacts.keys()].sort());
    expect(owner.engine.agents.get('bob')!.status).toBe(truth.agents.get('bob')!.record.status);
  });

  it('undoes the half of an offer an owner stored before it died, and offers the contact again', async () => {
    const tenant = 'globex';
    const d = new TenantOwner(tenant, records, engine());
    await d.load();
    await d.run(agentIn('eve', T0));
    await d.run(quietly((e) => e.enqueue({ contactId: 'c2', queueId: 'billing', channel: 'voice' }, T0)));
    // The dying owner reserved Eve for c2 and never marked c2.
    const eve = (await records.getAgent(tenant, 'eve'))!;
    await records.putAgent(tenant, { ...eve.record, offeredContactId: 'c2' }, eve.revision);
    const next = new TenantOwner(tenant, records, engine());
    await next.load();
    expect((await records.getAgent(tenant, 'eve'))!.record.offeredContactId).toBeUndefined();
    expect(await next.run((e) => e.tick(T0 + 1))).toEqual([expect.objectContaining({ type: 'offered', contactId: 'c2', agentId: 'eve' })]);
  });

  it('decides from the store again after a write and the reload that followed it both failed (no leader for a while)', async () => {
    const tenant = 'leaderless';
    /** The store of the test, whose writes and loads fail (as with no leader) while told to. */
    class LeaderlessRecords extends RoutingRecords {
      down = false;
      private refuse(): void {
        if (this.down) throw Object.assign(new Error('jetstream is not enabled'), { name: 'JetStreamNotEnabled' });
      }
      override async putAgent(...args: Parameters<RoutingRecords['putAgent']>) {
        this.refuse();
        return super.putAgent(...args);
      }
      override async load(...args: Parameters<RoutingRecords['load']>) {
        this.refuse();
        return super.load(...args);
      }
    }
    const leaderless = new LeaderlessRecords(kv);
    const owner = new TenantOwner(tenant, leaderless, engine());
    await owner.load();
    await owner.run(agentIn('ann', T0 - 10));
    await owner.run(quietly((e) => e.enqueue({ contactId: 'c9', queueId: 'billing', channel: 'voice' }, T0 + 50_000)));
    // The offer is decided but not stored, and the reload fails too: it never happened.
    leaderless.down = true;
    await expect(owner.run((e) => e.tick(T0 + 50_001))).rejects.toThrow(/not enabled/);
    leaderless.down = false;
    // The next decision starts from the store, so the offer is made (and stored) again.
    const events = await owner.run((e) => e.tick(T0 + 50_002));
    expect(events).toContainEqual(expect.objectContaining({ type: 'offered', contactId: 'c9', agentId: 'ann' }));
    const stored = await records.load(tenant);
    expect(stored.contacts.get('c9')!.record.offer?.agentId).toBe('ann');
    expect(stored.agents.get('ann')!.record.offeredContactId).toBe('c9');
  });
});
