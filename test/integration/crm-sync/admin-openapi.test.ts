import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { ArtifactStore, DEMO_TENANT, DEMO_TENANT_KEK, DeviceKeys, StaticKeyring, buckets, ensureStream, openBucket, streams, subjects } from '@gateway/common';
import { TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, freePort, startCrmSyncProcess, startSignalingProcess } from '@gateway/testing';
import { KvContactMaps } from '../../../services/crm-sync/src/connectors/ContactMap.js';
import { basicAuth } from '../../support/crmSync.js';
import { OpenApiContract, specFiles } from '../../support/openapi.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';

/**
 * Every route of crm-sync's admin API against real processes, each answer checked against
 * docs/openapi/crm-sync-admin.yaml as it arrives (an undocumented field, status or missing header
 * fails the test): connectors, data-subject export, rectification and erasure with data held,
 * and the errors (401, 404, 405 with `allow`, 400, 415, 502).
 */
describe('crm-sync admin API against its OpenAPI contract', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  const contract = OpenApiContract.load(specFiles.crmSyncAdmin);

  const api = (target: string, options: { method?: string; as?: typeof DEMO_TENANT | typeof GLOBEX_TENANT | 'nobody'; json?: unknown; headers?: Record<string, string>; body?: string } = {}) => {
    const as = options.as ?? DEMO_TENANT;
    const headers: Record<string, string> = { ...options.headers, ...(as === 'nobody' ? {} : { authorization: basicAuth(as) }) };
    return contract.fetch(crm.url, target, { method: options.method ?? 'GET', headers, json: options.json, body: options.body });
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    [crm, signaling] = await Promise.all([
      startCrmSyncProcess({ natsUrl: nats.url, env: { ...twoTenantEnv, CRM_SYNC_RETRY_BASE_SECONDS: '0.5', CRM_SYNC_RETRY_MAX_SECONDS: '1', CRM_SYNC_CONNECTOR_TEST_SECONDS: '0.3' } }),
      // Erasures and rectifications reach live rooms through signaling (here: none live).
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }),
    ]);
    nc = await nats.connect();
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await signaling?.stop();
    await crm?.stop();
    await nats?.stop();
  });

  it('answers data-subject requests as documented, with data held', async () => {
    const artifacts = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    const conversationId = `CV_oa${Date.now()}`;
    const artifactId = `${conversationId}-txt`;
    const text = 'a chat';
    await artifacts.put('demo', artifactId, Readable.from([Buffer.from(text)]), 'text/plain');
    await ensureStream(nc, streams.transcripts);
    await jetstream(nc).publish(
      subjects.transcriptReady('demo'),
      TranscriptReady.encode({
        tenant: 'demo',
        room: 'r',
        conversationId,
        messageCount: 1,
        startedAtMs: Date.now() - 1_000,
        endedAtMs: Date.now(),
        smartActions: [],
        contacts: [{ participantId: 'PA_u', role: 'end_user', externalId: 'ext-oa', crmContactId: '' }],
        artifacts: [{ artifactId, kind: 'transcript', contentType: 'text/plain', participantId: '', sizeBytes: text.length, durationMs: 0, part: 0 }],
      }).finish(),
    );
    await new KvContactMaps(await openBucket(nc, buckets.crmContacts)).for('demo', 'crm').set('ext-oa', '003000000000001AAA');
    await new DeviceKeys(await openBucket(nc, buckets.deviceKeys)).add('demo', 'ext-oa', { id: 'cred-oa', publicKey: 'AAAA', counter: 0, transports: ['internal'], registeredAtMs: Date.now() });

    const exported = await api('/v1/data-subjects/export?externalId=ext-oa');
    expect(exported.status).toBe(200);
    expect(exported.body.pendingDeliveries).toHaveLength(1);
    expect(exported.body.pendingDeliveries[0].artifacts).toHaveLength(1);
    expect(exported.body.crmContacts).toHaveLength(1);
    expect(exported.body.deviceKeys).toHaveLength(1);

    const rectified = await api('/v1/data-subjects?externalId=ext-oa', { method: 'PATCH', json: { crmContactId: 'CRM-NEW-1' } });
    expect(rectified.status).toBe(200);
    expect((await api('/v1/data-subjects?externalId=ext-oa', { method: 'PATCH', json: { nickname: 'x' } })).body.error.code).toBe('BAD_REQUEST');
    expect((await api('/v1/data-subjects?externalId=ext-oa', { method: 'PATCH', body: '{}', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    const erased = await api('/v1/data-subjects?externalId=ext-oa', { method: 'DELETE' });
    expect(erased.status).toBe(200);
    expect(erased.body.deliveries).toBe(1);
    expect((await api('/v1/data-subjects?externalId=ext-oa&crmContactId=x', { method: 'DELETE' })).body.error.code).toBe('BAD_REQUEST');
  });

  it('manages connectors as documented, and refuses what it should with the documented errors', async () => {
    const closedPort = await freePort();
    const warehouse = { type: 'postgres', config: { host: '127.0.0.1', port: closedPort, database: 'crm', user: 'crm', ssl: 'disable' }, secrets: { password: 'p' } };
    expect((await api('/v1/connectors')).body).toEqual({ connectors: [] });
    expect((await api('/v1/connectors/warehouse', { method: 'PUT', json: { ...warehouse, type: 'ftp' } })).status).toBe(400);
    const put = await api('/v1/connectors/warehouse', { method: 'PUT', json: warehouse });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ name: 'warehouse', type: 'postgres', config: { host: '127.0.0.1', port: closedPort, schema: 'public' } });
    expect((await api('/v1/connectors/warehouse')).body).toEqual(put.body);
    expect((await api('/v1/connectors')).body.connectors).toEqual([put.body]);
    // Another tenant sees none of it.
    expect((await api('/v1/connectors/warehouse', { as: GLOBEX_TENANT })).status).toBe(404);
    const tested = await api('/v1/connectors/warehouse/test', { method: 'POST' });
    expect([tested.status, tested.body.error.code]).toEqual([502, 'DESTINATION_FAILED']);

    const notAllowed: Array<[string, string, string]> = [
      ['GET', '/v1/connectors/warehouse/test', 'POST'],
      ['POST', '/v1/connectors/warehouse', 'GET, PUT, DELETE'],
      ['POST', '/v1/connectors', 'GET'],
      ['POST', '/v1/data-subjects/export?externalId=x', 'GET'],
      ['GET', '/v1/data-subjects?externalId=x', 'DELETE, PATCH'],
    ];
    for (const [method, target, allow] of notAllowed) {
      const answer = await api(target, { method });
      expect([answer.status, answer.body.error.code, answer.headers.get('allow')], `${method} ${target}`).toEqual([405, 'METHOD_NOT_ALLOWED', allow]);
    }
    const anonymous = await api('/v1/connectors', { as: 'nobody' });
    expect([anonymous.status, anonymous.body.error.code]).toEqual([401, 'UNAUTHENTICATED']);

    expect((await api('/v1/connectors/warehouse', { method: 'DELETE' })).status).toBe(204);
    expect((await api('/v1/connectors/warehouse')).body.error.code).toBe('NOT_FOUND');
  });
});
