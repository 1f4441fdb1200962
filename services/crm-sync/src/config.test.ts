import { afterEach, describe, expect, it } from 'vitest';
import { ConfiguredTenants, createLogger } from '@gateway/common';
import { SecretVolume } from '@gateway/testing';
import { readCrmSyncConfig, tenantRetentionMs } from './config.js';

const DAY_MS = 86_400_000;
/** Not read while the configuration is: only its name is needed. */
const nats = { NATS_NKEY_SEED_FILE: '/nonexistent/crm-sync.nk' };
const tenant = (name: string, retentionDays?: number) => ({ name, apiKey: `${name}-key`, apiSecret: `${name}-secret-that-is-long-enough-012345`, ...(retentionDays ? { retentionDays } : {}) });

describe('crm-sync tenants', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const step of cleanup.splice(0)) step();
  });

  it("reads a tenant's retention from the tenants as they are now: a changed file applies, a removed tenant takes the deployment's", async () => {
    const volume = SecretVolume.create({ GATEWAY_TENANTS: JSON.stringify([tenant('acme', 3), tenant('globex')]) });
    const config = readCrmSyncConfig({ ...nats, GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS'), CRM_SYNC_RETENTION_DAYS: '7' });
    const tenants = ConfiguredTenants.start(config.tenants, createLogger('test', 'silent'));
    cleanup.push(
      () => tenants.close(),
      () => volume.remove(),
    );
    const retentionMs = tenantRetentionMs(config, tenants);
    expect([retentionMs('acme'), retentionMs('globex')]).toEqual([3 * DAY_MS, 7 * DAY_MS]);

    volume.update({ GATEWAY_TENANTS: JSON.stringify([tenant('globex', 30)]) });
    await tenants.check();
    expect([retentionMs('acme'), retentionMs('globex')]).toEqual([7 * DAY_MS, 30 * DAY_MS]);
  });

  it('refuses the variable and the file together', () => {
    const volume = SecretVolume.create({ GATEWAY_TENANTS: JSON.stringify([tenant('acme')]) });
    cleanup.push(() => volume.remove());
    expect(() => readCrmSyncConfig({ ...nats, GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS'), GATEWAY_TENANTS: JSON.stringify([tenant('acme')]) })).toThrow(/set one of them, not both/);
  });
});
