import { describe, expect, it } from 'vitest';
import { SecretVolume } from '@gateway/testing';
import { ErrorCode, GatewayError } from '../errors.js';
import { loadConfig } from '../runtime/config.js';
import { DEMO_TENANT, parseTenants, readTenantsSettings, tenantsShape } from './config.js';

const SECRET = 'acme-secret-that-is-long-enough-0123456789';
const acme = { name: 'acme', apiKey: 'acme-key', apiSecret: SECRET, retentionDays: 3 };

/** The settings as a service reads them, or the error it stops with. */
const read = (env: Record<string, string | undefined>) => {
  try {
    return readTenantsSettings(loadConfig(tenantsShape, env));
  } catch (error) {
    return error as GatewayError;
  }
};

describe('parseTenants', () => {
  it('takes a JSON array of tenants, with their policies', () => {
    expect(parseTenants(JSON.stringify([acme]))).toEqual({ ok: true, value: [acme] });
  });

  it('refuses what is not a non-empty list of valid tenants with unique keys, never quoting it', () => {
    const cases: Array<[string, RegExp]> = [
      [`[{"name":"acme","apiKey":"acme-key","apiSecret":"${SECRET}"`, /must be a JSON array/],
      ['[]', /\[\] Too small/],
      [JSON.stringify({ acme }), /expected array/],
      [JSON.stringify([{ ...acme, apiSecret: 'short-secret' }]), /\[0\.apiSecret\] apiSecret must be at least 32 characters/],
      [JSON.stringify([acme, { ...acme, name: 'other' }]), /apiKey values must be unique/],
      [JSON.stringify([{ ...acme, retentionDays: 400 }]), /\[0\.retentionDays\]/],
      [JSON.stringify([{ ...acme, name: 'a.b' }]), /tenant name must be letters/],
    ];
    for (const [raw, problem] of cases) {
      const parsed = parseTenants(raw);
      expect(parsed.ok, raw).toBe(false);
      if (parsed.ok) continue;
      expect(parsed.problem, raw).toMatch(problem);
      expect(parsed.problem).not.toContain(SECRET);
      expect(parsed.problem).not.toContain('short-secret');
    }
  });
});

describe('readTenantsSettings', () => {
  it('is the demo tenant when neither the variable nor the file is set', () => {
    expect(read({})).toEqual({ tenants: [DEMO_TENANT], demo: true });
    expect(read({ GATEWAY_TENANTS: '' })).toEqual({ tenants: [DEMO_TENANT], demo: true });
  });

  it('reads the variable, with no file to watch', () => {
    expect(read({ GATEWAY_TENANTS: JSON.stringify([acme]) })).toEqual({ tenants: [acme], demo: false });
  });

  it('reads the file, and keeps what it held to tell a change from it', () => {
    const volume = SecretVolume.create({ GATEWAY_TENANTS: JSON.stringify([acme]) });
    try {
      const settings = read({ GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS') });
      expect(settings).toMatchObject({ tenants: [acme], demo: false, file: { path: volume.file('GATEWAY_TENANTS') } });
      expect((settings as { file: { contents: Buffer } }).file.contents.toString()).toBe(JSON.stringify([acme]));
    } finally {
      volume.remove();
    }
  });

  it('stops the service on both, an unreadable file or a bad one, naming the variable and never the contents', () => {
    const volume = SecretVolume.create({ GATEWAY_TENANTS: JSON.stringify([{ ...acme, apiKey: '' }]) });
    try {
      const both = read({ GATEWAY_TENANTS: JSON.stringify([acme]), GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS') });
      const missing = read({ GATEWAY_TENANTS_FILE: volume.file('nothing-here') });
      const bad = read({ GATEWAY_TENANTS_FILE: volume.file('GATEWAY_TENANTS') });
      for (const error of [both, missing, bad]) {
        expect(error).toBeInstanceOf(GatewayError);
        expect((error as GatewayError).code).toBe(ErrorCode.CONFIG_INVALID);
        expect((error as GatewayError).message).not.toContain(SECRET);
      }
      expect((both as GatewayError).message).toMatch(/GATEWAY_TENANTS and GATEWAY_TENANTS_FILE: set one of them, not both/);
      expect((missing as GatewayError).message).toMatch(/GATEWAY_TENANTS_FILE=.*nothing-here.*: cannot read the file/);
      expect((bad as GatewayError).message).toMatch(/GATEWAY_TENANTS_FILE: the file \[0\.apiKey\]/);
    } finally {
      volume.remove();
    }
  });
});
