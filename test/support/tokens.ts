import { SignJWT, decodeJwt } from 'jose';
import { CLOCK_TOLERANCE_SECONDS, mintJoinToken, type MintRequest } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { DEMO_TENANT_KEK } from '@gateway/common';

/** A join token of the built-in demo tenant, as a customer's backend would mint it. */
export async function demoToken(request: MintRequest): Promise<string> {
  return (await mintJoinToken(DEMO_TENANT, request)).token;
}

/**
 * A demo join token that signaling refuses as expired between `validForSeconds` and one second
 * more from now: its `exp` is set back by the clock tolerance the server allows, so a test need
 * not wait that out, and rounded up to the next whole second (`exp` is in whole seconds), so it
 * is never already expired when minted just before a second turns.
 */
export async function expiringDemoToken(request: MintRequest, validForSeconds: number): Promise<string> {
  const claims = decodeJwt(await demoToken(request));
  const exp = Math.ceil(Date.now() / 1000 + validForSeconds) - CLOCK_TOLERANCE_SECONDS;
  return new SignJWT({ ...claims, exp }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(DEMO_TENANT.apiSecret));
}

/** A second tenant for isolation tests; it redacts only emails in chat. */
export const GLOBEX_TENANT = { name: 'globex', apiKey: 'globex', apiSecret: 'globex-secret-for-tests-only-0123456789', redaction: { kinds: ['email' as const], defaultCountry: 'US' } };

export async function globexToken(request: MintRequest): Promise<string> {
  return (await mintJoinToken(GLOBEX_TENANT, request)).token;
}

/** Signaling configured with the demo and globex tenants and their key-encryption keys. */
export const twoTenantEnv = {
  GATEWAY_TENANTS: JSON.stringify([DEMO_TENANT, GLOBEX_TENANT]),
  GATEWAY_TENANT_KEYS: JSON.stringify({ demo: DEMO_TENANT_KEK, globex: Buffer.alloc(32, 7).toString('base64') }),
};
