import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, DEMO_TENANT, DEMO_TENANT_KEK, openBucket } from '@gateway/common';
import { NatsServer, SecretVolume, startCrmSyncProcess, startRoutingProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { adminApi, basicAuth } from '../support/crmSync.js';
import { scrapeMetrics } from '../support/metrics.js';

const GLOBEX = { name: 'globex', apiKey: 'globex-key', apiSecret: 'globex-secret-for-this-test-only-0123456789' };
const INITECH = { name: 'initech', apiKey: 'initech-key', apiSecret: 'initech-secret-for-this-test-only-0123456789' };
const key = (fill: number) => Buffer.alloc(32, fill).toString('base64');

/**
 * Tenants from a mounted Secret file, changed while signaling, routing and crm-sync run, the file swapped
 * as the kubelet swaps it: a tenant added is accepted and a tenant removed refused by the same
 * processes, and a broken file is refused (counted, logged without its contents) while the
 * tenants in use stay.
 */
describe('tenants taken up from their file without a restart', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let volume: SecretVolume;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let routing: Awaited<ReturnType<typeof startRoutingProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    // The keys of every tenant the test names, initech's ahead of it (signaling seals with them).
    volume = SecretVolume.create({
      GATEWAY_TENANTS: JSON.stringify([DEMO_TENANT, GLOBEX]),
      GATEWAY_TENANT_KEYS: JSON.stringify({ demo: DEMO_TENANT_KEK, globex: key(7), initech: key(8) }),
    });
    const env = { GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS'), GATEWAY_TENANT_KEYS_FILE: volume.file('GATEWAY_TENANT_KEYS') };
    [signaling, routing, crm] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env }),
      startRoutingProcess({ natsUrl: nats.url, env: { ...env, ROUTING_LEASE_POLL_MS: '200' } }),
      startCrmSyncProcess({ natsUrl: nats.url, env }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await Promise.all([signaling?.stop(), routing?.stop(), crm?.stop()]);
    await nats?.stop();
    volume?.remove();
  });

  /** POST /v1/tokens on signaling as the tenant: its status. */
  const mint = async (tenant: { apiKey: string; apiSecret: string }) =>
    (
      await fetch(`${signaling.url}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: basicAuth(tenant), 'content-type': 'application/json' },
        body: JSON.stringify({ room: 'r1', identity: 'ext-1', role: 'end_user', ttlSeconds: 60 }),
      })
    ).status;
  /** GET /v1/directory on routing as the tenant: its status. */
  const directory = async (tenant: { apiKey: string; apiSecret: string }) => (await fetch(`${routing.url}/v1/directory`, { headers: { authorization: basicAuth(tenant) } })).status;
  /** GET /v1/connectors on crm-sync's admin API as the tenant: its status. */
  const connectors = async (tenant: { apiKey: string; apiSecret: string }) => (await adminApi(crm.url)('/v1/connectors', { as: tenant })).status;
  const reloads = async (opsPort: number, outcome: string) =>
    (await scrapeMetrics(opsPort)).samples.find((s) => s.name === 'gateway_config_reloads_total' && s.labels.source === 'tenants' && s.labels.outcome === outcome)?.value ?? 0;
  const leaseHolder = async (tenant: string) => {
    const entry = await (await openBucket(nc, buckets.routingLeases)).get(tenant);
    return entry && entry.operation === 'PUT' ? (JSON.parse(Buffer.from(entry.value).toString()) as Record<string, unknown>) : undefined;
  };

  it('accepts a tenant added to the file and refuses one removed from it, in the same processes; keeps them when the file is broken', async () => {
    const processes = [signaling, routing, crm];
    const pids = processes.map((p) => p.pid);
    expect(await mint(GLOBEX)).toBe(200);
    expect(await mint(INITECH)).toBe(401);
    expect(await directory(GLOBEX)).toBe(200);
    expect(await directory(INITECH)).toBe(401);
    expect(await connectors(GLOBEX)).toBe(200);
    expect(await connectors(INITECH)).toBe(401);
    await waitFor(async () => (await leaseHolder('globex')) !== undefined, 15_000, "routing holding globex's lease");

    // initech added, globex removed.
    volume.update({ GATEWAY_TENANTS: JSON.stringify([DEMO_TENANT, INITECH]) });
    const everyProcess = async (outcome: string) => (await Promise.all(processes.map((p) => reloads(p.opsPort, outcome)))).every((n) => n >= 1);
    await waitFor(() => everyProcess('reloaded'), 15_000, 'the new tenants file taken up');
    expect(await mint(INITECH)).toBe(200);
    expect(await mint(GLOBEX)).toBe(401);
    expect(await mint(DEMO_TENANT)).toBe(200);
    expect(await directory(INITECH)).toBe(200);
    expect(await directory(GLOBEX)).toBe(401);
    expect(await connectors(INITECH)).toBe(200);
    expect(await connectors(GLOBEX)).toBe(401);
    // Routing decides for the new tenant, and hands the removed one's lease back.
    await waitFor(async () => (await leaseHolder('initech')) !== undefined && (await leaseHolder('globex')) === undefined, 15_000, "initech's lease taken, globex's released");

    // A file cut short, holding a secret: refused, and the tenants in use stay.
    const leaked = 'leaked-secret-of-a-broken-file-0123456789';
    volume.update({ GATEWAY_TENANTS: `[{"name":"globex","apiKey":"globex-key","apiSecret":"${leaked}"` });
    await waitFor(() => everyProcess('rejected'), 15_000, 'the broken tenants file refused');
    expect(await mint(INITECH)).toBe(200);
    expect(await mint(GLOBEX)).toBe(401);
    expect(await directory(INITECH)).toBe(200);
    expect(await connectors(INITECH)).toBe(200);
    expect(await connectors(GLOBEX)).toBe(401);

    expect(processes.map((p) => p.pid)).toEqual(pids);
    expect(processes.every((p) => p.running)).toBe(true);
    for (const { logs } of processes) {
      expect(logs).toContain('"source":"tenants"');
      for (const secret of [leaked, GLOBEX.apiSecret, INITECH.apiSecret, DEMO_TENANT.apiSecret]) expect(logs).not.toContain(secret);
    }
  });
});
