import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { API_KEY_CACHE_MS, DEMO_TENANT, ErrorCode, StaticKeyring, TenantAuth, buckets, createLogger, openBucket } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startSignalingProcess } from '@gateway/testing';
import { AdminClient, GatewayApiError, RoomClient, mintJoinToken as sdkMintJoinToken } from '../../../packages/server-sdk/src/index.js';
import { mintJoinToken, verifyJoinToken } from '../../../services/signaling/src/auth/tokens.js';
import { basicAuth } from '../../support/crmSync.js';
import { OpenApiContract, specFiles } from '../../support/openapi.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';

type Credentials = { apiKey: string; apiSecret: string };
type Made = { keyId: string; secret: string; label: string; status: string; previousSecretValidUntilMs?: number };

/**
 * Tenants' API keys kept in NATS, end to end on real processes: made, listed, rotated and revoked
 * through crm-sync's admin API (each answer checked against docs/openapi/crm-sync-admin.yaml),
 * authenticating the admin API itself and signaling's room API (HTTP Basic), and signing join
 * tokens that signaling's verification takes.
 */
describe('tenant API keys', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let tokens: TenantAuth;
  const contract = OpenApiContract.load(specFiles.crmSyncAdmin);
  const tenantKeys = JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>;

  const admin = (target: string, options: { method?: string; as?: Credentials | 'nobody'; json?: unknown; headers?: Record<string, string>; body?: string } = {}) => {
    const as = options.as ?? DEMO_TENANT;
    const headers: Record<string, string> = { ...options.headers, ...(as === 'nobody' ? {} : { authorization: basicAuth(as) }) };
    return contract.fetch(crm.url, target, { method: options.method ?? 'GET', headers, json: options.json, body: options.body });
  };
  /** The status of POST /v1/tokens on signaling with these credentials. */
  const roomApiStatus = async (as: Credentials) =>
    (
      await fetch(`${signaling.url}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: basicAuth(as), 'content-type': 'application/json' },
        body: JSON.stringify({ room: 'r1', identity: 'u1', role: 'end_user' }),
      })
    ).status;
  const credentialsOf = (made: Made): Credentials => ({ apiKey: made.keyId, apiSecret: made.secret });
  const joinToken = async (as: Credentials) => (await mintJoinToken({ ...DEMO_TENANT, ...as }, { room: 'r1', identity: 'u1', role: 'end_user' })).token;

  beforeAll(async () => {
    nats = await NatsServer.start();
    [crm, signaling] = await Promise.all([startCrmSyncProcess({ natsUrl: nats.url, env: twoTenantEnv }), startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv })]);
    // Signaling's own verification of join tokens, with its NATS identity and the tenants' keys.
    nc = await nats.connect('signaling');
    tokens = new TenantAuth(() => [DEMO_TENANT, GLOBEX_TENANT], { kv: await openBucket(nc, buckets.apiKeys), keyring: new StaticKeyring(tenantKeys), log: createLogger('test', 'silent') });
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await signaling?.stop();
    await crm?.stop();
    await nats?.stop();
  });

  it('makes a key that authenticates the admin API and the room API, and signs join tokens', async () => {
    const created = await admin('/v1/api-keys', { method: 'POST', json: { label: 'billing backend' } });
    expect(created.status).toBe(201);
    const made = created.body as Made;
    expect(made).toMatchObject({ label: 'billing backend', status: 'active' });
    const listed = await admin('/v1/api-keys');
    expect(listed.body.apiKeys.map((k: Made) => k.keyId)).toContain(made.keyId);
    expect(JSON.stringify(listed.body)).not.toContain(made.secret);

    // The new key calls the admin API and sees the same tenant's keys.
    const asKey = await admin(`/v1/api-keys/${made.keyId}`, { as: credentialsOf(made) });
    expect([asKey.status, asKey.body.keyId]).toEqual([200, made.keyId]);
    expect(await roomApiStatus(credentialsOf(made))).toBe(200);
    // A token minted with the key (as a customer's backend does) and one signaling minted for it.
    expect(await verifyJoinToken(tokens, await joinToken(credentialsOf(made)))).toMatchObject({ tenant: 'demo', room: 'r1', identity: 'u1' });
    const minted = await fetch(`${signaling.url}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: basicAuth(credentialsOf(made)), 'content-type': 'application/json' },
      body: JSON.stringify({ room: 'r2', identity: 'u2', role: 'agent' }),
    });
    expect((await verifyJoinToken(tokens, ((await minted.json()) as { token: string }).token)).room).toBe('r2');
    // A wrong secret for the key is refused.
    expect((await admin('/v1/api-keys', { as: { apiKey: made.keyId, apiSecret: `${made.secret.slice(0, -1)}x` } })).status).toBe(401);
    expect(crm.logs).not.toContain(made.secret);
    expect(signaling.logs).not.toContain(made.secret);
  });

  it('rotates with an overlap: the old secret until it ends, then refused everywhere', async () => {
    const made = (await admin('/v1/api-keys', { method: 'POST', json: { label: 'rotated' } })).body as Made;
    const oldToken = await joinToken(credentialsOf(made));
    const rotation = await admin(`/v1/api-keys/${made.keyId}/rotate`, { method: 'POST', json: { overlapSeconds: 2 } });
    expect(rotation.status).toBe(200);
    const rotated = rotation.body as Made;
    expect(rotated.keyId).toBe(made.keyId);
    expect(rotated.secret).not.toBe(made.secret);
    const overlapEnd = rotated.previousSecretValidUntilMs!;
    expect(overlapEnd).toBeGreaterThan(Date.now());
    for (const as of [credentialsOf(made), credentialsOf(rotated)]) {
      expect((await admin('/v1/api-keys', { as })).status).toBe(200);
      expect(await roomApiStatus(as)).toBe(200);
    }
    expect((await verifyJoinToken(tokens, oldToken)).tenant).toBe('demo');
    expect((await verifyJoinToken(tokens, await joinToken(credentialsOf(rotated)))).tenant).toBe('demo');

    await new Promise((resolve) => setTimeout(resolve, Math.max(0, overlapEnd - Date.now()) + 100));
    expect((await admin('/v1/api-keys', { as: credentialsOf(made) })).status).toBe(401);
    expect(await roomApiStatus(credentialsOf(made))).toBe(401);
    await expect(verifyJoinToken(tokens, oldToken)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    expect((await admin('/v1/api-keys', { as: credentialsOf(rotated) })).status).toBe(200);
    expect(await roomApiStatus(credentialsOf(rotated))).toBe(200);
    expect((await admin(`/v1/api-keys/${made.keyId}`)).body.previousSecretValidUntilMs).toBeUndefined();
  });

  it(`revokes: refused by crm-sync at once, by signaling within ${API_KEY_CACHE_MS} ms`, async () => {
    const made = (await admin('/v1/api-keys', { method: 'POST', json: { label: 'revoked' } })).body as Made;
    const token = await joinToken(credentialsOf(made));
    expect(await roomApiStatus(credentialsOf(made))).toBe(200);
    expect((await verifyJoinToken(tokens, token)).tenant).toBe('demo');

    expect((await admin(`/v1/api-keys/${made.keyId}`, { method: 'DELETE' })).status).toBe(204);
    const revokedAt = Date.now();
    expect((await admin('/v1/api-keys', { as: credentialsOf(made) })).status).toBe(401);
    while ((await roomApiStatus(credentialsOf(made))) !== 401) {
      expect(Date.now() - revokedAt, 'signaling still takes the revoked key').toBeLessThan(API_KEY_CACHE_MS + 2_000);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, revokedAt + API_KEY_CACHE_MS - Date.now()) + 100));
    await expect(verifyJoinToken(tokens, token)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
    expect((await admin(`/v1/api-keys/${made.keyId}`)).body).toMatchObject({ status: 'revoked', revokedAtMs: expect.any(Number) });
    expect((await admin(`/v1/api-keys/${made.keyId}/rotate`, { method: 'POST' })).body.error.code).toBe('INVALID_STATE');
    expect((await admin(`/v1/api-keys/${made.keyId}`, { method: 'DELETE' })).status).toBe(204);
  }, 30_000);

  it("keeps another tenant out of a tenant's keys", async () => {
    const made = (await admin('/v1/api-keys', { method: 'POST', json: { label: 'demo only' } })).body as Made;
    const globexKeys = await admin('/v1/api-keys', { as: GLOBEX_TENANT });
    expect(globexKeys.body.apiKeys.map((k: Made) => k.keyId)).not.toContain(made.keyId);
    for (const [method, target] of [
      ['GET', `/v1/api-keys/${made.keyId}`],
      ['DELETE', `/v1/api-keys/${made.keyId}`],
      ['POST', `/v1/api-keys/${made.keyId}/rotate`],
    ] as const) {
      const answer = await admin(target, { method, as: GLOBEX_TENANT });
      expect([answer.status, answer.body.error.code], `${method} ${target}`).toEqual([404, 'NOT_FOUND']);
    }
    expect((await admin(`/v1/api-keys/${made.keyId}`)).body.status).toBe('active');
    // A demo key is no globex credential, in a token's claims either.
    const forged = (await mintJoinToken({ ...GLOBEX_TENANT, apiKey: made.keyId, apiSecret: made.secret }, { room: 'r1', identity: 'u1', role: 'end_user' })).token;
    await expect(verifyJoinToken(tokens, forged)).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED });
  });

  it('refuses bad input with the documented errors', async () => {
    const made = (await admin('/v1/api-keys', { method: 'POST', json: { label: 'inputs' } })).body as Made;
    for (const json of [{}, { label: '' }, { label: 'x'.repeat(129) }, { label: 7 }, { label: 'ok', secret: 'sk_mine' }, [{ label: 'a' }], null]) {
      const answer = await admin('/v1/api-keys', { method: 'POST', json });
      expect([answer.status, answer.body.error.code], JSON.stringify(json)).toEqual([400, 'BAD_REQUEST']);
    }
    for (const json of [{ overlapSeconds: -1 }, { overlapSeconds: 604_801 }, { overlapSeconds: '60' }, { keyId: 'ak_x' }]) {
      const answer = await admin(`/v1/api-keys/${made.keyId}/rotate`, { method: 'POST', json });
      expect([answer.status, answer.body.error.code], JSON.stringify(json)).toEqual([400, 'BAD_REQUEST']);
    }
    expect((await admin('/v1/api-keys', { method: 'POST', body: 'label=x', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect((await admin('/v1/api-keys?all=1')).status).toBe(400);
    expect((await admin(`/v1/api-keys/${made.keyId}`, { method: 'DELETE', json: {} })).status).toBe(400);
    expect((await admin('/v1/api-keys/ak_0000000000000000')).status).toBe(404);
    expect((await admin('/v1/api-keys/not-a-key-id', { method: 'DELETE' })).status).toBe(404);
    const notAllowed: Array<[string, string, string]> = [
      ['PUT', '/v1/api-keys', 'GET, POST'],
      ['PATCH', `/v1/api-keys/${made.keyId}`, 'GET, DELETE'],
      ['GET', `/v1/api-keys/${made.keyId}/rotate`, 'POST'],
    ];
    for (const [method, target, allow] of notAllowed) {
      const answer = await admin(target, { method });
      expect([answer.status, answer.headers.get('allow')], `${method} ${target}`).toEqual([405, allow]);
    }
    expect((await admin('/v1/api-keys', { as: 'nobody' })).status).toBe(401);
    expect((await admin('/v1/api-keys', { as: { apiKey: 'ak_0000000000000000', apiSecret: made.secret } })).status).toBe(401);
  });

  it("is driven by the server SDK's AdminClient, and its keys work with the SDK's other clients", async () => {
    const admin = new AdminClient({ url: crm.url, credentials: { apiKey: GLOBEX_TENANT.apiKey, apiSecret: GLOBEX_TENANT.apiSecret } });
    const key = await admin.createApiKey('sdk backend');
    expect(key).toMatchObject({ label: 'sdk backend', status: 'active', secret: expect.stringMatching(/^sk_/) });
    const credentials = { tenant: 'globex', apiKey: key.keyId, apiSecret: key.secret };
    expect(await new RoomClient({ url: signaling.url, credentials }).listRooms()).toEqual([]);
    const { token } = await sdkMintJoinToken(credentials, { room: 'r1', identity: 'u1', role: 'agent' });
    expect((await verifyJoinToken(tokens, token)).tenant).toBe('globex');
    const rotated = await admin.rotateApiKey(key.keyId, { overlapSeconds: 0 });
    expect((await admin.getApiKey(key.keyId)).rotatedAtMs).toBe(rotated.rotatedAtMs);
    expect((await admin.listApiKeys()).find((k) => k.keyId === key.keyId)).not.toHaveProperty('secret');
    await admin.revokeApiKey(key.keyId);
    expect((await admin.getApiKey(key.keyId)).status).toBe('revoked');
    const refused = await new AdminClient({ url: crm.url, credentials: { ...credentials, apiSecret: rotated.secret } }).listApiKeys().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GatewayApiError);
    expect((refused as GatewayApiError).status).toBe(401);
  });
});
