import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsServer, waitFor } from '@gateway/testing';
import { TenantLease } from '../../services/routing/src/ownership/TenantLease.js';

/**
 * One writer per tenant (docs/routing.md) on a real nats-server: of replicas racing for a
 * tenant's lease one wins; a holder that stops refreshing (a dead replica) loses it to another
 * once the bucket's age limit passes, and finds out at its next refresh; a release hands it
 * over at once. The bucket here has an age limit of 1.5 s so the test need not wait out the real one.
 */
describe('the tenant lease of the routing replicas', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let kv: KV;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    kv = await new Kvm(nc).create('test_routing_leases', { ttl: 1_500, history: 1 });
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('goes to exactly one of replicas racing for it, and to another once released', async () => {
    const leases = Array.from({ length: 5 }, (_, i) => new TenantLease(kv, 'acme', `replica-${i}`, { refreshMs: 400 }));
    const won = await Promise.all(leases.map((lease) => lease.acquire()));
    expect(won.filter(Boolean)).toHaveLength(1);
    const winner = leases[won.indexOf(true)]!;
    expect((await winner.holder())?.replicaId).toBe(winner.replicaId);
    // Kept past the age limit by its refreshes.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(winner.held).toBe(true);
    expect(await Promise.all(leases.filter((l) => l !== winner).map((l) => l.acquire()))).toEqual([false, false, false, false]);
    await winner.release();
    const next = leases.find((l) => l !== winner)!;
    expect(await next.acquire()).toBe(true);
    await next.release();
  });

  it('passes from a holder that stopped refreshing to another after the age limit; the old holder learns it lost', async () => {
    const dead = new TenantLease(kv, 'globex', 'replica-dead', { refreshMs: 60_000 });
    const alive = new TenantLease(kv, 'globex', 'replica-alive', { refreshMs: 400 });
    expect(await dead.acquire()).toBe(true);
    expect(await alive.acquire()).toBe(false);
    const lost = new Promise<void>((resolve) => dead.once('lost', resolve));
    // The dead one's refresh is a minute away: its lease ends with the bucket's age limit.
    await waitFor(() => alive.acquire().then((ok) => ok || undefined), 5_000, 'the lease taken over');
    expect((await alive.holder())?.replicaId).toBe('replica-alive');
    // Its next refresh (forced here) fails: it must stop deciding.
    await (dead as unknown as { refresh(): Promise<void> }).refresh();
    await lost;
    expect(dead.held).toBe(false);
    // Its release does not take the new holder's lease away.
    await dead.release();
    expect((await alive.holder())?.replicaId).toBe('replica-alive');
    await alive.release();
  });
});
