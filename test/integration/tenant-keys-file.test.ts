import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, DEMO_TENANT_KEK, openBucket } from '@gateway/common';
import { NatsServer, SecretVolume, startCrmSyncProcess, waitFor } from '@gateway/testing';
import { adminApi } from '../support/crmSync.js';
import { scrapeMetrics } from '../support/metrics.js';

/**
 * Tenant keys from a mounted Secret file, changed while crm-sync runs, the file swapped as the
 * kubelet swaps it: the new current key seals what comes next without a restart, and a broken
 * file is refused (counted, logged without its contents) while the keys in use stay.
 */
describe('tenant keys taken up from their file without a restart', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let volume: SecretVolume;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  const newKey = Buffer.alloc(32, 9).toString('base64');

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    volume = SecretVolume.create({ 'tenant-keys.json': JSON.stringify({ demo: DEMO_TENANT_KEK }) });
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: { GATEWAY_TENANT_KEYS_FILE: volume.file('tenant-keys.json') } });
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await crm?.stop();
    await nats?.stop();
    volume?.remove();
  });

  const putConnector = async (name: string) => {
    const body = { type: 'postgres', config: { host: '127.0.0.1', port: 1, database: 'crm', user: 'customer', ssl: 'disable' }, secrets: { password: 'customer-db-password-5521' } };
    const response = await adminApi(crm.url)(`/v1/connectors/${name}`, { method: 'PUT', body: JSON.stringify(body) });
    expect(response.status).toBe(200);
    const entry = await (await openBucket(nc, buckets.connectors)).get(`demo.${name}`);
    return (JSON.parse(Buffer.from(entry!.value).toString()) as { secrets: { wrapped: { kekId: string } } }).secrets.wrapped.kekId;
  };
  const reloads = async (outcome: string) =>
    (await scrapeMetrics(crm.opsPort)).samples.find((s) => s.name === 'gateway_config_reloads_total' && s.labels.source === 'tenant-keys' && s.labels.outcome === outcome)?.value ?? 0;

  it('seals with the new current key once the file names it, and keeps the keys when the file is broken', async () => {
    expect(await putConnector('before')).toBe('static:demo');

    volume.update({ 'tenant-keys.json': JSON.stringify({ demo: { current: 'k2', keys: { default: DEMO_TENANT_KEK, k2: newKey } } }) });
    await waitFor(async () => (await reloads('reloaded')) >= 1, 15_000, 'the new keys file taken up');
    expect(await putConnector('after')).toBe('static:demo:k2');
    // What was sealed before still opens: the old key is still listed.
    expect((await adminApi(crm.url)('/v1/connectors/before')).status).toBe(200);

    // A file cut short: refused, and the keys in use stay.
    volume.update({ 'tenant-keys.json': `{"demo": {"current": "k3", "keys": {"k3": "${newKey}"` });
    await waitFor(async () => (await reloads('rejected')) >= 1, 15_000, 'the broken keys file refused');
    expect(await putConnector('broken')).toBe('static:demo:k2');
    expect(crm.logs).not.toContain(newKey);
    expect(crm.running).toBe(true);
  });
});
