import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { ErrorCode, tenantFromBasicAuth } from '@gateway/common';
import type { Tenant } from '../config.js';
import { isPreflightRoom, mintJoinToken, preflightGrant, verifyJoinToken } from './tokens.js';

const acme: Tenant = { name: 'acme', apiKey: 'acme-key', apiSecret: 'a'.repeat(40) };
const globex: Tenant = { name: 'globex', apiKey: 'globex-key', apiSecret: 'g'.repeat(40) };
const tenants = [acme, globex];

const sign = (claims: Record<string, unknown>, secret: string, exp: number | string = '1h', alg = 'HS256') =>
  new SignJWT(claims).setProtectedHeader({ alg }).setIssuer(String(claims.iss)).setSubject('alice').setJti(randomUUID()).setExpirationTime(exp).sign(new TextEncoder().encode(secret));
const grants = { canPublish: true, canSubscribe: true, sources: ['camera'] };

describe('join tokens', () => {
  it('mints a token that verifies with its grants', async () => {
    const { token, expiresAt } = await mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'end_user', sources: ['camera', 'microphone'], canSubscribe: false });
    const grant = await verifyJoinToken(tenants, token);
    expect(grant).toEqual({
      tenant: 'acme',
      room: 'r1',
      identity: 'alice',
      role: 'end_user',
      grants: { canPublish: true, canSubscribe: false, sources: ['camera', 'microphone'], canRecord: false, canUpdateMetadata: false },
      name: '',
      metadata: '',
      expiresAt,
      contact: {},
      tokenId: expect.stringMatching(/^[A-Za-z0-9_-]{32}$/),
      preflight: false,
      visibleTo: '',
    });
  });

  it('marks a pre-call check, which joins a room of its own with camera and microphone only and no contact', async () => {
    const { token } = await mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'agent', canRecord: true, crmContactId: 'C-1', preflight: true });
    const grant = await verifyJoinToken(tenants, token);
    expect(grant.preflight).toBe(true);
    const alone = preflightGrant(grant, 'PA_abc');
    expect(alone).toMatchObject({ room: 'preflight_PA_abc', contact: {}, grants: { canPublish: true, canSubscribe: false, sources: ['camera', 'microphone'], canRecord: false } });
    expect(isPreflightRoom(alone.room)).toBe(true);
    expect(isPreflightRoom('r1')).toBe(false);
    // A claim of another type is no token at all.
    const odd = await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'end_user', grants, preflight: 'yes' }, acme.apiSecret);
    await expect(verifyJoinToken(tenants, odd)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('carries a name, metadata and the right to change them; refuses a name of two lines or metadata over 4 KiB', async () => {
    const { token } = await mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'agent', name: 'Ann, Support', metadata: '{"team":"billing"}', canUpdateMetadata: true });
    expect(await verifyJoinToken(tenants, token)).toMatchObject({ name: 'Ann, Support', metadata: '{"team":"billing"}', grants: { canUpdateMetadata: true } });
    await expect(mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'agent', name: 'two\nlines' })).rejects.toThrow();
    await expect(mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'agent', metadata: 'é'.repeat(2049) })).rejects.toThrow();
    // A signed token whose name breaks the rules is refused like any bad claim.
    const forged = await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'agent', grants, name: 'x'.repeat(129) }, acme.apiSecret);
    await expect(verifyJoinToken(tenants, forged)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('gives every minted token its own jti, counted under a hash', async () => {
    const a = await verifyJoinToken(tenants, (await mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'end_user' })).token);
    const b = await verifyJoinToken(tenants, (await mintJoinToken(acme, { room: 'r1', identity: 'alice', role: 'end_user' })).token);
    expect(a.tokenId).not.toBe(b.tokenId);
  });

  it('refuses a token without a jti, other algorithms and an unsigned one', async () => {
    const noJti = await new SignJWT({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'agent', grants })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('acme-key')
      .setSubject('alice')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(acme.apiSecret));
    await expect(verifyJoinToken(tenants, noJti)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    for (const alg of ['HS384', 'HS512']) {
      await expect(verifyJoinToken(tenants, await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'agent', grants }, acme.apiSecret, '1h', alg))).rejects.toMatchObject({
        code: ErrorCode.UNAUTHENTICATED,
      });
    }
    const valid = await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'agent', grants }, acme.apiSecret);
    const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${valid.split('.')[1]}.`;
    await expect(verifyJoinToken(tenants, unsigned)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('refuses an identity with control characters', async () => {
    const token = await new SignJWT({ tenant: 'acme', room: 'r1', role: 'agent', grants })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('acme-key')
      .setSubject('eve\nagent-1 (agent): refund')
      .setJti(randomUUID())
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(acme.apiSecret));
    await expect(verifyJoinToken(tenants, token)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('grants recording only to agents who are given it', async () => {
    const agent = await verifyJoinToken(tenants, (await mintJoinToken(acme, { room: 'r1', identity: 'bob', role: 'agent', canRecord: true })).token);
    expect(agent.grants.canRecord).toBe(true);
    await expect(mintJoinToken(acme, { room: 'r1', identity: 'eve', role: 'end_user', canRecord: true })).rejects.toThrow(/only agents/);
  });

  it('hides only supervisors, from whom the token says', async () => {
    const monitoring = await verifyJoinToken(tenants, (await mintJoinToken(acme, { room: 'r1', identity: 'sue', role: 'supervisor', visibleTo: 'supervisors', canPublish: false })).token);
    expect(monitoring).toMatchObject({ role: 'supervisor', visibleTo: 'supervisors' });
    await expect(mintJoinToken(acme, { room: 'r1', identity: 'bob', role: 'agent', visibleTo: 'agents' })).rejects.toThrow(/only supervisors/);
    // A token signed by hand that hides an agent is refused at join.
    const forged = await new SignJWT({ tenant: 'acme', room: 'r1', role: 'agent', visibleTo: 'supervisors', grants })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(acme.apiKey)
      .setSubject('bob')
      .setJti('forged-jti-1')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(acme.apiSecret));
    await expect(verifyJoinToken(tenants, forged)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED, message: expect.stringMatching(/visibleTo/) });
  });

  it('rejects a missing token', async () => {
    await expect(verifyJoinToken(tenants, '')).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('rejects garbage', async () => {
    await expect(verifyJoinToken(tenants, 'not-a-jwt')).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('rejects an expired token with TOKEN_EXPIRED', async () => {
    const token = await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'agent', grants }, acme.apiSecret, Math.floor(Date.now() / 1000) - 120);
    await expect(verifyJoinToken(tenants, token)).rejects.toMatchObject({ code: ErrorCode.TOKEN_EXPIRED });
  });

  it('rejects a token signed with the wrong secret', async () => {
    const token = await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'agent', grants }, 'x'.repeat(40));
    await expect(verifyJoinToken(tenants, token)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it("rejects a token claiming another tenant than its key's", async () => {
    const token = await sign({ iss: 'globex-key', tenant: 'acme', room: 'r1', role: 'agent', grants }, globex.apiSecret);
    await expect(verifyJoinToken(tenants, token)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED, message: expect.stringContaining('tenant') });
  });

  it('rejects an unknown issuer, a bad role and a bad room name', async () => {
    const unknown = await sign({ iss: 'nobody', tenant: 'acme', room: 'r1', role: 'agent', grants }, acme.apiSecret);
    await expect(verifyJoinToken(tenants, unknown)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    const badRole = await sign({ iss: 'acme-key', tenant: 'acme', room: 'r1', role: 'admin', grants }, acme.apiSecret);
    await expect(verifyJoinToken(tenants, badRole)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    const badRoom = await sign({ iss: 'acme-key', tenant: 'acme', room: 'a.b', role: 'agent', grants }, acme.apiSecret);
    await expect(verifyJoinToken(tenants, badRoom)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('authenticates HTTP Basic apiKey:apiSecret', () => {
    const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
    expect(tenantFromBasicAuth(tenants, basic(`acme-key:${acme.apiSecret}`))).toBe(acme);
    expect(tenantFromBasicAuth(tenants, basic(`acme-key:${globex.apiSecret}`))).toBeUndefined();
    expect(tenantFromBasicAuth(tenants, basic('acme-key'))).toBeUndefined();
    expect(tenantFromBasicAuth(tenants, undefined)).toBeUndefined();
  });
});

describe('token CLI', () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'services/signaling/src/cli/mintToken.ts', ...args], {
      encoding: 'utf8',
      env: { ...process.env, GATEWAY_TENANTS: JSON.stringify(tenants) },
    });

  it('prints only a token that verifies', async () => {
    const result = run('--tenant', 'acme', '--room', 'r9', '--identity', 'bob', '--role', 'agent', '--ttl', '30m');
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    const grant = await verifyJoinToken(tenants, result.stdout.trim());
    expect(grant).toMatchObject({ tenant: 'acme', room: 'r9', identity: 'bob', role: 'agent' });
    expect(grant.expiresAt - Date.now() / 1000).toBeGreaterThan(29 * 60);
  });

  it('explains bad arguments and exits 2', () => {
    const result = run('--tenant', 'acme', '--room', 'r9', '--identity', 'bob', '--role', 'boss');
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('--role must be one of');
    expect(run('--tenant', 'nope', '--room', 'r', '--identity', 'i', '--role', 'agent').stderr).toContain('not configured');
  });
});

describe('contact details in join tokens', () => {
  it('carries a phone number normalised to E.164 and device ids, and refuses an invalid number', async () => {
    const acmeUs: Tenant = { name: 'acme', apiKey: 'acme-key', apiSecret: 'a'.repeat(40) };
    const { token } = await mintJoinToken(acmeUs, { room: 'r', identity: 'u', role: 'end_user', phoneNumber: '(415) 555-0132', deviceIds: ['install-1'] });
    const grant = await verifyJoinToken([acmeUs], token);
    expect(grant.contact).toEqual({ phoneNumber: '+14155550132', deviceIds: ['install-1'] });
    await expect(mintJoinToken(acmeUs, { room: 'r', identity: 'u', role: 'end_user', phoneNumber: '555' })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    const plain = await verifyJoinToken([acmeUs], (await mintJoinToken(acmeUs, { room: 'r', identity: 'u', role: 'end_user' })).token);
    expect(plain.contact).toEqual({});
  });
});
