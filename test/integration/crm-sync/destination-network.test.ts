import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, startCrmSyncProcess } from '@gateway/testing';
import { adminApi } from '../../support/crmSync.js';

/**
 * As deployed (CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS off), a tenant cannot aim crm-sync at the
 * platform's own network: a destination on a loopback, private or link-local address (a cloud
 * metadata service) is refused when it is set, with a clear error, and nothing is stored.
 */
describe('crm-sync destinations on the public internet only', () => {
  let nats: NatsServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;

  beforeAll(async () => {
    nats = await NatsServer.start();
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: { CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS: 'false' } });
  }, 60_000);

  afterAll(async () => {
    await crm?.stop();
    await nats?.stop();
  });

  it('refuses destinations on addresses that are not public', async () => {
    const admin = adminApi(crm.url);
    const attempts = [
      { type: 'postgres', config: { host: '127.0.0.1', port: 4222, database: 'x', user: 'x', ssl: 'disable' }, secrets: { password: 'x' } },
      { type: 'postgres', config: { host: 'localhost', port: 5432, database: 'x', user: 'x', ssl: 'disable' }, secrets: { password: 'x' } },
      { type: 's3', config: { bucket: 'recordings', region: 'us-east-1', endpoint: 'https://169.254.169.254' }, secrets: { accessKeyId: 'a', secretAccessKey: 's' } },
      { type: 'zendesk', config: { subdomainUrl: 'https://10.0.0.7', email: 'a@example.com' }, secrets: { apiToken: 't' } },
    ];
    for (const [i, body] of attempts.entries()) {
      const response = await admin(`/v1/connectors/probe${i}`, { method: 'PUT', body: JSON.stringify(body) });
      expect(response.status, JSON.stringify(body.config)).toBe(403);
      const { error } = (await response.json()) as { error: { code: string; message: string } };
      expect(error.code).toBe('PERMISSION_DENIED');
      expect(error.message).toMatch(/destinations must be reachable on the public internet/);
    }
    const list = (await (await admin('/v1/connectors')).json()) as { connectors: unknown[] };
    expect(list.connectors).toEqual([]);
  });
});
