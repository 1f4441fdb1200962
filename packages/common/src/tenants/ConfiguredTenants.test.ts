import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { SecretVolume } from '@gateway/testing';
import { fileReloads } from '../runtime/watchedFiles.js';
import { ConfiguredTenants } from './ConfiguredTenants.js';
import { readTenantsSettings } from './config.js';
import { TenantAuth } from './TenantAuth.js';

const tenant = (name: string, retentionDays?: number) => ({ name, apiKey: `${name}-key`, apiSecret: `${name}-secret-that-is-long-enough-012345`, ...(retentionDays ? { retentionDays } : {}) });
const basic = (t: { apiKey: string; apiSecret: string }) => `Basic ${Buffer.from(`${t.apiKey}:${t.apiSecret}`).toString('base64')}`;

describe('ConfiguredTenants', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const step of cleanup.splice(0)) step();
  });

  /** Tenants from a file, as a service starts with them; what is logged and counted is kept. */
  const fromFile = (tenants: unknown[]) => {
    const volume = SecretVolume.create({ GATEWAY_TENANTS: JSON.stringify(tenants) });
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const configured = ConfiguredTenants.start(readTenantsSettings({ GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS') }), log);
    const outcomes: string[] = [];
    const reloaded = (source: string) => source === 'tenants' && outcomes.push('reloaded');
    const rejected = (source: string) => source === 'tenants' && outcomes.push('rejected');
    fileReloads.on('reloaded', reloaded);
    fileReloads.on('rejected', rejected);
    cleanup.push(
      () => configured.close(),
      () => volume.remove(),
      () => fileReloads.off('reloaded', reloaded),
      () => fileReloads.off('rejected', rejected),
    );
    return { volume, configured, lines, outcomes };
  };

  it('takes up a changed file: a new tenant accepted, a removed one refused, a changed policy read', async () => {
    const [acme, globex] = [tenant('acme', 3), tenant('globex')];
    const { volume, configured, outcomes } = fromFile([acme, globex]);
    const auth = new TenantAuth(() => configured.current);
    expect((await auth.fromBasicAuth(basic(globex)))?.name).toBe('globex');

    const initech = tenant('initech');
    volume.update({ GATEWAY_TENANTS: JSON.stringify([{ ...acme, retentionDays: 30 }, initech]) });
    await configured.check();
    expect(outcomes).toEqual(['reloaded']);
    expect((await auth.fromBasicAuth(basic(initech)))?.name).toBe('initech');
    expect(await auth.fromBasicAuth(basic(globex))).toBeUndefined();
    expect(configured.find('globex')).toBeUndefined();
    expect(configured.find('acme')?.retentionDays).toBe(30);
  });

  it('keeps the tenants in use when the new file does not parse or cannot be read, logging no secret', async () => {
    const acme = tenant('acme');
    const { volume, configured, lines, outcomes } = fromFile([acme]);
    const leaked = 'leaked-secret-that-is-long-enough-0123456789';
    volume.update({ GATEWAY_TENANTS: `[{"name":"acme","apiKey":"other","apiSecret":"${leaked}"` });
    await configured.check();
    volume.update({ GATEWAY_TENANTS: JSON.stringify([{ name: 'acme', apiKey: 'other', apiSecret: 'short-secret' }]) });
    await configured.check();
    volume.remove();
    await configured.check();
    expect(outcomes).toEqual(['rejected', 'rejected', 'rejected']);
    expect(configured.current).toEqual([acme]);
    expect(await new TenantAuth(() => configured.current).fromBasicAuth(basic(acme))).toMatchObject({ name: 'acme' });
    const logged = lines.join('');
    expect(logged).toContain('rejected');
    expect(logged).not.toContain(leaked);
    expect(logged).not.toContain('short-secret');
    expect(logged).not.toContain(acme.apiSecret);
  });

  it('watches nothing for tenants given as a variable', async () => {
    const acme = tenant('acme');
    const configured = ConfiguredTenants.start(readTenantsSettings({ GATEWAY_TENANTS: [acme] }), pino({ level: 'silent' }));
    await configured.check();
    expect(configured.current).toEqual([acme]);
    configured.close();
  });
});
