import { describe, expect, it } from 'vitest';
import { env, loadConfig } from './config.js';
import { ErrorCode, GatewayError } from '../errors.js';

const shape = { SOME_PORT: env.port(8080), SOME_FLAG: env.boolean(false), SOME_NAME: env.string('x') };

describe('loadConfig', () => {
  it('applies defaults, and treats empty variables as unset', () => {
    expect(loadConfig(shape, { SOME_PORT: '' })).toEqual({ SOME_PORT: 8080, SOME_FLAG: false, SOME_NAME: 'x' });
  });

  it('parses the values it is given', () => {
    expect(loadConfig(shape, { SOME_PORT: '9000', SOME_FLAG: 'yes', SOME_NAME: 'y' })).toEqual({ SOME_PORT: 9000, SOME_FLAG: true, SOME_NAME: 'y' });
  });

  it('names every bad variable and its rule, never its value', () => {
    let error: unknown;
    try {
      loadConfig(shape, { SOME_PORT: 'eighty', SOME_FLAG: 'maybe' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe(ErrorCode.CONFIG_INVALID);
    const message = (error as GatewayError).message;
    expect(message).toMatch(/SOME_PORT: /);
    expect(message).toMatch(/SOME_FLAG: /);
    expect(message).not.toContain('eighty');
    expect(message).not.toContain('maybe');
  });
});

describe('configuration errors never print secrets', () => {
  it('a short apiSecret names the variable and the rule, not any tenant secret', async () => {
    const { tenantsShape } = await import('../tenants/config.js');
    const secret = 'a-long-enough-secret-of-tenant-one-000000';
    const tenants = JSON.stringify([
      { name: 'one', apiKey: 'k1', apiSecret: secret },
      { name: 'two', apiKey: 'k2', apiSecret: 'short-secret' },
    ]);
    const error = (() => {
      try {
        loadConfig(tenantsShape, { GATEWAY_TENANTS: tenants });
      } catch (e) {
        return e as GatewayError;
      }
    })();
    expect(error?.code).toBe(ErrorCode.CONFIG_INVALID);
    expect(error?.message).toContain('GATEWAY_TENANTS');
    expect(error?.message).toContain('apiSecret must be at least 32 characters');
    expect(error?.message).not.toContain(secret);
    expect(error?.message).not.toContain('short-secret');
  });

  it('a bad key-encryption key names the tenant, not any key', async () => {
    const { tenantKeysShape } = await import('../keys/settings.js');
    const good = Buffer.alloc(32, 7).toString('base64');
    const error = (() => {
      try {
        loadConfig(tenantKeysShape, { GATEWAY_TENANT_KEYS: JSON.stringify({ one: good, two: 'bm90LTMyLWJ5dGVz' }) });
      } catch (e) {
        return e as GatewayError;
      }
    })();
    expect(error?.message).toContain('GATEWAY_TENANT_KEYS');
    expect(error?.message).toContain('two');
    expect(error?.message).not.toContain(good);
    expect(error?.message).not.toContain('bm90LTMyLWJ5dGVz');
  });

  it('removes the tenants and keys from this process once read: a child given everything still gets none of them', async () => {
    const { execFileSync } = await import('node:child_process');
    const { tenantsShape } = await import('../tenants/config.js');
    const { tenantKeysShape } = await import('../keys/settings.js');
    const tenants = JSON.stringify([{ name: 'one', apiKey: 'k1', apiSecret: 'a-long-enough-secret-of-tenant-one-000000' }]);
    process.env.GATEWAY_TENANTS = tenants;
    process.env.GATEWAY_TENANT_KEYS = JSON.stringify({ one: Buffer.alloc(32, 7).toString('base64') });
    try {
      expect(loadConfig({ ...tenantsShape, ...tenantKeysShape }).GATEWAY_TENANTS).toHaveLength(1);
      expect(process.env.GATEWAY_TENANTS).toBeUndefined();
      // The whole environment, as a careless spawn would pass it.
      const seen = execFileSync(process.execPath, ['-e', 'process.stdout.write(JSON.stringify([process.env.GATEWAY_TENANTS ?? null, process.env.GATEWAY_TENANT_KEYS ?? null]))'], { env: process.env });
      expect(JSON.parse(seen.toString())).toEqual([null, null]);
    } finally {
      delete process.env.GATEWAY_TENANTS;
      delete process.env.GATEWAY_TENANT_KEYS;
    }
  });
});
