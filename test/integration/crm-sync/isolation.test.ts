import http from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore, StaticKeyring, ensureStream, streams } from '@gateway/common';
import { waitFor } from '@gateway/testing';
import { S3ContractServer, faults } from '../../contracts/s3/server.js';
import { adminApi, publishTranscript, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';
import { metricValue } from '../../support/metrics.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';

const BUCKET = 'globex-calls';
const TENANT_CONCURRENCY = 2;

/**
 * One tenant's destination hangs (a Salesforce login URL that takes requests and never answers,
 * with the longest timeout a tenant may set), and it has a backlog. Another tenant's deliveries
 * must go through as if nothing were wrong: each within a few seconds of its event.
 */
describe('crm-sync keeps tenants apart', () => {
  let stack: CrmSyncStack;
  let s3: S3ContractServer;
  let hanging: http.Server;
  const sockets = new Set<Socket>();
  let open = 0;
  let mostOpen = 0;

  beforeAll(async () => {
    hanging = http.createServer((req) => {
      // Taken, never answered.
      open++;
      mostOpen = Math.max(mostOpen, open);
      req.socket.once('close', () => open--);
    });
    hanging.on('connection', (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    [stack, s3] = await Promise.all([
      // A stop grace of 2 s: the last test waits it out behind a delivery that never ends (20 s by default).
      startCrmSyncStack({ CRM_SYNC_CONCURRENCY: '8', CRM_SYNC_TENANT_CONCURRENCY: String(TENANT_CONCURRENCY), CRM_SYNC_ACK_WAIT_SECONDS: '5', CRM_SYNC_STOP_GRACE_SECONDS: '2' }),
      S3ContractServer.start({ buckets: [BUCKET] }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await s3?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => hanging?.close(() => resolve()));
  });

  it("delivers a healthy tenant's events within seconds while another tenant's destination hangs", async () => {
    const admin = adminApi(stack.crm.url);
    const hangingPort = (hanging.address() as { port: number }).port;
    const stuck = {
      type: 'salesforce',
      config: { loginUrl: `http://127.0.0.1:${hangingPort}`, authFlow: 'client_credentials', clientId: 'stuck', requestTimeoutMs: 600_000 },
      secrets: { clientSecret: 'stuck-secret' },
    };
    expect((await admin('/v1/connectors/crm', { method: 'PUT', body: JSON.stringify(stuck) })).status).toBe(200);
    const bucket = { type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url }, secrets: S3ContractServer.defaultCredential };
    expect((await admin('/v1/connectors/bucket', { method: 'PUT', body: JSON.stringify(bucket), as: GLOBEX_TENANT })).status).toBe(200);

    const store = await ArtifactStore.open(stack.nc, new StaticKeyring(JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>));
    await ensureStream(stack.nc, streams.transcripts);
    // The stuck tenant's backlog first: more events than crm-sync runs at once.
    for (let i = 0; i < 24; i++) {
      await publishTranscript(stack.nc, store, { conversationId: `CV_stuck${i}`, files: [{ contentType: 'text/plain', bytes: Buffer.from(`stuck ${i}`) }] });
    }
    // (Its deliveries share one token request, which is what hangs.)
    await waitFor(() => open >= 1, 10_000, 'the stuck deliveries waiting on their destination');

    // Then the healthy tenant's events, one every 300 ms; each one is delivered within 3 s of its event.
    for (let i = 0; i < 6; i++) {
      const conversationId = `CV_healthy${i}`;
      await publishTranscript(stack.nc, store, { tenant: 'globex', conversationId, files: [{ contentType: 'text/plain', bytes: Buffer.from(`healthy ${i}`) }] });
      await waitFor(() => s3.object(BUCKET, `gateway/globex/transcript/${conversationId}/manifest.json`), 3_000, `the healthy delivery ${i}, within 3 s of its event`);
      await new Promise((r) => setTimeout(r, 300));
    }
    // The stuck tenant holds no more than its own slots, and its deliveries are still going on.
    expect(mostOpen).toBeLessThanOrEqual(TENANT_CONCURRENCY);
    expect(open).toBeGreaterThan(0);
    // Its own slots, all taken, and nothing else.
    expect(await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_in_progress', { state: 'running' })).toBe(TENANT_CONCURRENCY);
    // Its backlog is held in the replica (marked in progress), not handed back to JetStream over and over.
    expect(await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_in_progress', { state: 'waiting' })).toBe(24 - TENANT_CONCURRENCY);
    expect(await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deferred_total')).toBe(0);
  }, 60_000);

  it("drains a busy tenant's backlog without handing any of it back, while the other tenant's backlog waits on its hanging destination", async () => {
    expect(open).toBeGreaterThan(0);
    const store = await ArtifactStore.open(stack.nc, new StaticKeyring(JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>));
    const ids = Array.from({ length: 40 }, (_, i) => `CV_backlog${Date.now()}x${i}`);
    // Published at once: far more than the tenant's slots.
    await Promise.all(
      ids.map((conversationId, i) => publishTranscript(stack.nc, store, { tenant: 'globex', conversationId, files: [{ contentType: 'text/plain', bytes: Buffer.from(`backlog ${i}`) }] })),
    );
    for (const id of ids) await waitFor(() => s3.object(BUCKET, `gateway/globex/transcript/${id}/manifest.json`), 30_000, `backlog delivery ${id}`);
    expect(await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deferred_total')).toBe(0);
    // The hanging tenant's deliveries still hold its slots, and its backlog still waits.
    expect(await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_in_progress', { state: 'waiting' })).toBe(24 - TENANT_CONCURRENCY);
  }, 60_000);

  it("starts a tenant's deliveries in the order published, at most its concurrency at once, and a failing one holds back none after it", async () => {
    // The stuck tenant's deliveries from above still hold its slots: the tenants run side by side.
    expect(open).toBeGreaterThan(0);
    const store = await ArtifactStore.open(stack.nc, new StaticKeyring(JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>));
    const ids = Array.from({ length: 6 }, (_, i) => `CV_order${Date.now()}x${i}`);
    const manifest = (id: string) => `gateway/globex/transcript/${id}/manifest.json`;
    // The first one's destination fails until told otherwise.
    s3.inject({ operation: 'PutObject', key: new RegExp(`/${ids[0]}/`), fault: faults.internalError });
    const before = s3.requests.length;
    const publish = (i: number) => publishTranscript(stack.nc, store, { tenant: 'globex', conversationId: ids[i]!, files: [{ contentType: 'text/plain', bytes: Buffer.from(`in order ${i}`) }] });
    await publish(0);
    await waitFor(() => stack.crm.logs.split('\n').some((line) => line.includes(ids[0]!) && line.includes('will retry')), 10_000, 'the first delivery to have failed');
    for (let i = 1; i < ids.length; i++) await publish(i);
    // Everything after the failing one is delivered meanwhile.
    for (const id of ids.slice(1)) await waitFor(() => s3.object(BUCKET, manifest(id)), 15_000, `delivery ${id}`);
    expect(s3.object(BUCKET, manifest(ids[0]!))).toBeUndefined();
    s3.clearFaults();
    await waitFor(() => s3.object(BUCKET, manifest(ids[0]!)), 15_000, 'the failed delivery, once its destination is back');

    // Deliveries began in the order their events were published: with the tenant's slots all
    // taken, a later one starts only once an earlier one has ended, so each begins before every
    // event published TENANT_CONCURRENCY or more places after it.
    const requests = s3.requests.slice(before);
    const firstRequest = ids.map((id) => requests.findIndex((r) => r.key?.includes(`/${id}/`)));
    for (const [i, first] of firstRequest.entries()) {
      expect(first, ids[i]).toBeGreaterThanOrEqual(0);
      for (const later of firstRequest.slice(i + TENANT_CONCURRENCY)) expect(first, `${ids[i]} began before the events published ${TENANT_CONCURRENCY} or more after it`).toBeLessThan(later);
    }
    // And no more than TENANT_CONCURRENCY of them were under way at any moment (from a delivery's
    // first request to its manifest, written last).
    const spans = ids.slice(1).map((id) => [requests.findIndex((r) => r.key?.includes(`/${id}/`)), requests.findIndex((r) => r.key === manifest(id) && r.status === 200)] as const);
    for (let at = 0; at < requests.length; at++) expect(spans.filter(([from, to]) => from <= at && at <= to).length).toBeLessThanOrEqual(TENANT_CONCURRENCY);
  }, 60_000);

  it('stops on SIGTERM within its grace while a delivery is stuck and NATS is gone', async () => {
    // The stuck tenant's deliveries from above are still waiting on their destination.
    expect(open).toBeGreaterThan(0);
    await stack.nats.stop();
    // Exit code 0 within 35 s: past that the helper kills it (SIGKILL), and there is no exit code.
    expect(await stack.crm.stop('SIGTERM', 35_000)).toBe(0);
  }, 70_000);
});
