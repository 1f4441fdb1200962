import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { Readable } from 'node:stream';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, buckets, streams, subjects } from '@gateway/common';
import { TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, PostgresServer, startCrmSyncProcess, waitFor } from '@gateway/testing';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';
import { adminApi, publishTranscript as publishShared } from '../../support/crmSync.js';
import { metricValue } from '../../support/metrics.js';

const CUSTOMER_PASSWORD = 'customer-db-password-0451';

/**
 * crm-sync against real servers: nats-server (JetStream, Object Store, KV) and a customer's
 * PostgreSQL. A transcript is delivered into the customer's tables, then deleted from ours.
 */
describe('crm-sync to a customer PostgreSQL database', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let postgres: PostgresServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let artifacts: ArtifactStore;
  let customerDb: pg.Client;

  beforeAll(async () => {
    [nats, postgres] = await Promise.all([NatsServer.start(), PostgresServer.start()]);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: { ...twoTenantEnv, CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1', CRM_SYNC_CONNECTOR_TEST_SECONDS: '0.5' } });
    nc = await nats.connect();
    artifacts = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await customerDb.connect();
  }, 60_000);

  afterAll(async () => {
    await customerDb?.end();
    await nc?.close();
    await crm?.stop();
    await postgres?.stop();
    await nats?.stop();
  });

  const connector = (password: string) => ({
    type: 'postgres',
    config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' },
    secrets: { password },
  });
  const admin = (path: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(path, init);

  const publishTranscript = (conversationId: string) =>
    publishShared(nc, artifacts, {
      conversationId,
      files: [
        { contentType: 'application/json', bytes: Buffer.from('{"messages":[]}') },
        { contentType: 'text/plain', bytes: Buffer.from('[card] [CARD]\n') },
      ],
    });

  it('keeps connector secrets sealed, never returns them, and keeps tenants apart', async () => {
    expect((await admin('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector(CUSTOMER_PASSWORD)) })).status).toBe(200);
    const shown = await (await admin('/v1/connectors/warehouse')).json();
    expect(shown).toMatchObject({ name: 'warehouse', type: 'postgres', config: { database: 'customer_crm' } });
    expect(JSON.stringify(shown)).not.toContain(CUSTOMER_PASSWORD);
    const raw = await (await new Kvm(nc).open(buckets.connectors)).get('demo.warehouse');
    expect(Buffer.from(raw!.value).includes(CUSTOMER_PASSWORD)).toBe(false);
    expect(await (await admin('/v1/connectors/warehouse/test', { method: 'POST' })).json()).toEqual({ ok: true });

    // Another tenant sees nothing of it and cannot test or delete it.
    expect((await (await admin('/v1/connectors', { as: GLOBEX_TENANT })).json()).connectors).toEqual([]);
    expect((await admin('/v1/connectors/warehouse/test', { method: 'POST', as: GLOBEX_TENANT })).status).toBe(404);
    expect((await admin('/v1/connectors/warehouse', { method: 'DELETE', as: GLOBEX_TENANT })).status).toBe(404);
    // Bad input and bad credentials get clear errors.
    expect((await admin('/v1/connectors/x', { method: 'PUT', body: '{"type":"ftp"}' })).status).toBe(400);
    expect((await admin('/v1/connectors', { as: { apiKey: 'demo', apiSecret: 'wrong' } })).status).toBe(401);
  });

  it('delivers a transcript into the customer tables once, then deletes our copies', async () => {
    const conversationId = `CV_pg${Date.now()}`;
    const ids = await publishTranscript(conversationId);
    const rows = await waitFor(
      async () => {
        const result = await customerDb.query('select artifact_id, content_type, content from gateway_artifacts where delivery_id = $1 order by artifact_id', [conversationId]).catch(() => undefined);
        return result && result.rows.length === 2 ? result.rows : undefined;
      },
      15_000,
      'rows in the customer database',
    );
    expect(rows.map((r) => r.artifact_id)).toEqual(ids);
    expect(rows[1].content.toString()).toBe('[card] [CARD]\n');
    const session = (await customerDb.query('select kind, tenant, contacts from gateway_sessions where delivery_id = $1', [conversationId])).rows[0];
    expect(session).toMatchObject({ kind: 'transcript', tenant: 'demo', contacts: [{ externalId: 'ext-1', role: 'end_user' }] });

    // Our copies are gone: keys first (shredded), then bytes; and the event itself.
    for (const id of ids) await waitFor(async () => (await artifacts.get('demo', id).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');
    const jsm = await jetstream(nc).jetstreamManager();
    await waitFor(async () => (await jsm.streams.info(streams.transcripts.name)).state.messages === 0, 5_000, 'event erased');
    // Each stage of the delivery was timed; each artifact's read once.
    for (const stage of ['contacts', 'destinations', 'delete', 'settle']) expect(await metricValue(crm.opsPort, 'gateway_crm_sync_stage_seconds_count', { stage })).toBeGreaterThanOrEqual(1);
    expect(await metricValue(crm.opsPort, 'gateway_crm_sync_stage_seconds_count', { stage: 'read' })).toBeGreaterThanOrEqual(ids.length);

    // The same event again (a producer retry) adds nothing.
    await jetstream(nc).publish(
      subjects.transcriptReady('demo'),
      TranscriptReady.encode({ tenant: 'demo', room: 'r-1', conversationId, artifacts: [], messageCount: 0, startedAtMs: 0, endedAtMs: 0, contacts: [], smartActions: [] }).finish(),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await customerDb.query('select count(*)::int as n from gateway_sessions where delivery_id = $1', [conversationId])).rows[0].n).toBe(1);
  });

  it('loses nothing while the destination refuses: retries until the connector is fixed', async () => {
    await admin('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector('not-the-password')) });
    const failing = await (await admin('/v1/connectors/warehouse/test', { method: 'POST' })).json();
    expect(failing.error).toMatchObject({ code: 'DESTINATION_FAILED' });
    // The SQLSTATE is for the log line the reference leads to, not for the answer.
    expect(failing.error.message).not.toContain('28P01');
    const reference = /reference ([0-9a-f]{12})/.exec(failing.error.message)![1]!;
    await waitFor(() => crm.logs.split('\n').find((line) => line.includes(reference) && line.includes('28P01')), 5_000, 'the failure in the log');
    expect(crm.logs).not.toContain('not-the-password');

    const conversationId = `CV_retry${Date.now()}`;
    const ids = await publishTranscript(conversationId);
    await new Promise((r) => setTimeout(r, 2_000));
    // Not delivered, and still held (encrypted) by us.
    expect((await customerDb.query('select count(*)::int as n from gateway_sessions where delivery_id = $1', [conversationId])).rows[0].n).toBe(0);
    expect((await artifacts.get('demo', ids[0]!)).data.toString()).toBe('{"messages":[]}');

    await admin('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector(CUSTOMER_PASSWORD)) });
    await waitFor(async () => (await customerDb.query('select count(*)::int as n from gateway_artifacts where delivery_id = $1', [conversationId])).rows[0].n === 2, 15_000, 'delivery after the fix');
    await waitFor(async () => (await artifacts.get('demo', ids[0]!).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');
  });
  it('writes a delivery of small artifacts whole or not at all: nothing of it while one fails its check, all of it once it reads back', async () => {
    const conversationId = `CV_tampered${Date.now()}`;
    const files = [Buffer.from('{"messages":[1]}'), Buffer.from('the second file of the transcript\n')];
    const ids = files.map((_, i) => `${conversationId}-${i}`);
    for (const [i, bytes] of files.entries()) await artifacts.put('demo', ids[i]!, Readable.from([bytes]), 'text/plain');
    // The second file's stored bytes altered: its segment no longer authenticates.
    const objects = await new Objm(nc).open(buckets.artifacts);
    const stored = Buffer.from((await objects.getBlob(`demo.${ids[1]}`))!);
    const tampered = Buffer.from(stored);
    tampered[5]! ^= 0x10;
    await objects.putBlob({ name: `demo.${ids[1]}`, metadata: { tenant: 'demo', contentType: 'text/plain' } }, tampered);

    const logsBefore = crm.logs.length;
    await jetstream(nc).publish(
      subjects.transcriptReady('demo'),
      TranscriptReady.encode({
        tenant: 'demo',
        room: 'r-1',
        conversationId,
        artifacts: ids.map((artifactId, i) => ({ artifactId, kind: 'transcript', contentType: 'text/plain', participantId: '', sizeBytes: files[i]!.length, durationMs: 0, part: 0 })),
        messageCount: 1,
        startedAtMs: Date.now() - 60_000,
        endedAtMs: Date.now(),
        contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: 'ext-1', crmContactId: '' }],
        smartActions: [],
      }).finish(),
    );
    await waitFor(() => (crm.logs.slice(logsBefore).match(new RegExp(`${conversationId}.*integrity check`, 'g')) ?? []).length >= 2, 15_000, 'two failed attempts');
    // Neither the session nor the first file, which read back well, was written.
    expect((await customerDb.query('select count(*)::int as n from gateway_sessions where delivery_id = $1', [conversationId])).rows[0].n).toBe(0);
    expect((await customerDb.query('select count(*)::int as n from gateway_artifacts where delivery_id = $1', [conversationId])).rows[0].n).toBe(0);

    // The bytes restored, the next attempt writes the session and both files.
    await objects.putBlob({ name: `demo.${ids[1]}`, metadata: { tenant: 'demo', contentType: 'text/plain' } }, stored);
    const rows = await waitFor(
      async () => {
        const result = await customerDb.query('select artifact_id, content from gateway_artifacts where delivery_id = $1 order by artifact_id', [conversationId]);
        return result.rows.length === 2 ? result.rows : undefined;
      },
      15_000,
      'the delivery after the bytes came back',
    );
    expect(rows.map((r) => Buffer.from(r.content))).toEqual(files);
    expect((await customerDb.query('select count(*)::int as n from gateway_sessions where delivery_id = $1', [conversationId])).rows[0].n).toBe(1);
    await waitFor(async () => (await artifacts.get('demo', ids[1]!).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');
  });
});
