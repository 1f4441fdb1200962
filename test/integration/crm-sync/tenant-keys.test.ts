import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { jetstream } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { ChatKeyRecord, RoomSessionRecord, SessionEnded, TenantAudit } from '@gateway/proto/gateway/events/v1/events';
import { ArtifactStore, buckets, catalog, createLogger, openBucket, openParticipants, sealParticipants, streamNameOf, streams, subjects, type SessionParticipant } from '@gateway/common';
import { KmsKeyring, keyDescription } from '@gateway/common/kms';
import { NatsServer, PostgresServer, startCrmSyncProcess, waitFor } from '@gateway/testing';
import { KmsContractServer } from '../../contracts/kms/server.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';
import { adminApi, announceRecording, publishTranscript } from '../../support/crmSync.js';
import { rotateTenantKeys } from '../../../services/crm-sync/src/tenants/TenantOperations.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const PASSWORD = 'customer-db-password-7731';
const credentials = { accessKeyId: 'AKIAGATEWAYTEST', secretAccessKey: 'gateway-kms-contract-secret' };

/**
 * Tenant keys in a KMS (the contract server) with crm-sync, a customer's PostgreSQL and nats-server,
 * all real: a rotation while communications wait for delivery loses none of them, and an
 * offboarded tenant leaves nothing in any stream, bucket or object store.
 */
describe('tenant keys: rotation and offboarding', () => {
  let nats: NatsServer;
  let postgres: PostgresServer;
  let kms: KmsContractServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let nc: NatsConnection;
  let keyring: KmsKeyring;
  let store: ArtifactStore;
  let customerDb: pg.Client;
  const log = createLogger('test', 'silent');
  const kmsEnv = () => ({
    GATEWAY_KEYRING: 'kms',
    GATEWAY_KMS_KEYS: JSON.stringify({ demo: 'alias/gateway/demo', globex: 'alias/gateway/globex' }),
    GATEWAY_KMS_REGION: kms.region,
    GATEWAY_KMS_ENDPOINT: kms.url,
    GATEWAY_KMS_MAX_ATTEMPTS: '3',
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
  });

  beforeAll(async () => {
    [nats, postgres, kms] = await Promise.all([NatsServer.start(), PostgresServer.start(), KmsContractServer.start({ credentials: [credentials] })]);
    kms.createKey('alias/gateway/demo', keyDescription('demo'));
    kms.createKey('alias/gateway/globex', keyDescription('globex'));
    postgres.createDatabase('customer_crm', 'customer', PASSWORD);
    // No unwrapped key held: each delivery attempt asks KMS, so a key disabled too early would show.
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: { ...twoTenantEnv, ...kmsEnv(), GATEWAY_KMS_CACHE_SECONDS: '0', CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1' } });
    nc = await nats.connect();
    keyring = new KmsKeyring(
      { kind: 'kms', region: kms.region, endpoint: kms.url, aliases: { demo: 'alias/gateway/demo', globex: 'alias/gateway/globex' }, cacheTtlMs: 0, cacheEntries: 0, maxAttempts: 3 },
      credentials,
    );
    store = await ArtifactStore.open(nc, keyring);
    customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: PASSWORD, database: 'customer_crm' });
    await customerDb.connect();
  }, 60_000);

  afterAll(async () => {
    await customerDb?.end();
    keyring?.close();
    await nc?.close();
    await crm?.stop();
    await Promise.all([postgres?.stop(), nats?.stop(), kms?.close()]);
  });

  const call = (p: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(p, init);
  const connector = (port: number) => ({ type: 'postgres', config: { host: '127.0.0.1', port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: PASSWORD } });
  const participant = (id: string): SessionParticipant => ({
    participantId: id,
    role: 'end_user',
    externalId: `ext-${id}`,
    crmContactId: '',
    phoneNumber: '+14155550132',
    deviceIds: [],
    joinedAtMs: Date.now(),
  });
  const kekOf = async (bucket: string, key: string) => {
    const entry = await (await openBucket(nc, bucket)).get(key);
    const value = entry!.value;
    if (bucket === buckets.chatKeys) return ChatKeyRecord.decode(value).kekId;
    if (bucket === buckets.roomSessions) return (JSON.parse(RoomSessionRecord.decode(value).sealedParticipants) as { wrapped: { kekId: string } }).wrapped.kekId;
    if (bucket === buckets.connectors) return (JSON.parse(Buffer.from(value).toString()) as { secrets: { wrapped: { kekId: string } } }).secrets.wrapped.kekId;
    return (JSON.parse(Buffer.from(value).toString()) as { wrapped: { kekId: string } }).wrapped.kekId;
  };

  it('rotates while communications wait: every one delivered readable, records re-wrapped, the old key disabled at the end', async () => {
    const oldKey = kms.aliasTarget('alias/gateway/demo')!.arn;
    // The destination is unreachable for now: everything waits, sealed under the old key.
    expect((await call('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector(1)) })).status).toBe(200);
    const transcript = await publishTranscript(nc, store, { conversationId: 'CV_rot1', files: [{ contentType: 'text/plain', bytes: Buffer.from('said before the rotation\n') }] });
    await store.put('demo', 'REC_rot1', Readable.from([Buffer.from('recorded before the rotation')]), 'audio/mpeg');
    await announceRecording(nc, { recordingId: 'REC_rot1', artifacts: [{ artifactId: 'REC_rot1', kind: 'audio', contentType: 'audio/mpeg', sizeBytes: 28 }] });
    const sessionId = 'SE_rot1';
    const sealed = await sealParticipants(keyring, 'demo', sessionId, [participant('PA_rot1')]);
    await jetstream(nc).publish(
      subjects.sessionEnded('demo'),
      SessionEnded.encode({ tenant: 'demo', room: 'r-rot', sessionId, startedAtMs: Date.now() - 60_000, endedAtMs: Date.now(), conversationId: '', sealedParticipants: sealed }).finish(),
      { msgID: sessionId },
    );
    // A live room's chat key and session, as signaling holds them.
    const dataKey = Buffer.alloc(32, 9);
    const wrapped = await keyring.wrap('demo', dataKey);
    await (await openBucket(nc, buckets.chatKeys)).put(
      'demo.r-live',
      ChatKeyRecord.encode({ conversationId: 'CV_live', kekId: wrapped.kekId, wrappedKey: wrapped.value, startedAtMs: Date.now() }).finish(),
    );
    await (await openBucket(nc, buckets.roomSessions)).put(
      'demo.r-live',
      RoomSessionRecord.encode({ sessionId: 'SE_live', startedAtMs: Date.now(), sealedParticipants: await sealParticipants(keyring, 'demo', 'SE_live', [participant('PA_live')]) }).finish(),
    );
    for (const [bucket, key] of [
      [buckets.dataKeys, `demo.recordings.${transcript[0]}`],
      [buckets.chatKeys, 'demo.r-live'],
      [buckets.connectors, 'demo.warehouse'],
    ] as const) {
      expect(await kekOf(bucket, key)).toBe(oldKey);
    }

    const rotation = rotateTenantKeys({ nc, keyring, log }, 'demo', { waitMs: 60_000, pollMs: 300 });
    // New data keys go under the new key at once, and the waiting records are moved to it.
    const newKey = await waitFor(() => (kms.aliasTarget('alias/gateway/demo')!.arn !== oldKey ? kms.aliasTarget('alias/gateway/demo')!.arn : undefined), 10_000, 'a new key behind the alias');
    expect((await keyring.wrap('demo', dataKey)).kekId).toBe(newKey);
    // Room sessions are the last kind re-wrapped in a pass (WrappedKeys.ts).
    await waitFor(async () => (await kekOf(buckets.roomSessions, 'demo.r-live')) === newKey, 20_000, 'the records re-wrapped');
    for (const [bucket, key] of [
      [buckets.dataKeys, `demo.recordings.${transcript[0]}`],
      [buckets.dataKeys, 'demo.recordings.REC_rot1'],
      [buckets.chatKeys, 'demo.r-live'],
      [buckets.connectors, 'demo.warehouse'],
    ] as const) {
      expect(await kekOf(bucket, key)).toBe(newKey);
    }
    // The session sealed in its event still needs the old key: it stays enabled meanwhile.
    expect(kms.key(oldKey)!.state).toBe('Enabled');

    // The destination comes back: everything is delivered, and readable.
    expect((await call('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector(postgres.port)) })).status).toBe(200);
    const report = await rotation;
    expect(report).toMatchObject({ current: newKey, pendingUnderOldKeys: 0, unreadable: 0, retired: [{ kekId: oldKey, outcome: 'disabled' }] });
    expect(report.rewrapped[buckets.dataKeys]).toBeGreaterThanOrEqual(2);
    expect(kms.key(oldKey)!.state).toBe('Disabled');
    const rows = async (sql: string, params: unknown[]) => (await customerDb.query(sql, params).catch(() => ({ rows: [] as Array<Record<string, unknown>> }))).rows;
    const transcriptRow = await waitFor(async () => (await rows('select content from gateway_artifacts where artifact_id = $1', [transcript[0]]))[0], 15_000, 'the transcript delivered');
    expect((transcriptRow.content as Buffer).toString()).toBe('said before the rotation\n');
    const recordingRow = await waitFor(async () => (await rows('select content from gateway_artifacts where artifact_id = $1', ['REC_rot1']))[0], 15_000, 'the recording delivered');
    expect((recordingRow.content as Buffer).toString()).toBe('recorded before the rotation');
    const sessionRow = (await rows('select contacts from gateway_sessions where delivery_id = $1', [sessionId]))[0];
    expect(sessionRow?.contacts).toMatchObject([{ externalId: 'ext-PA_rot1', phoneNumber: '+14155550132' }]);
    // What a live room holds opens with the new key alone.
    const chat = ChatKeyRecord.decode((await (await openBucket(nc, buckets.chatKeys)).get('demo.r-live'))!.value);
    expect((await keyring.unwrap('demo', { kekId: chat.kekId, value: chat.wrappedKey })).equals(dataKey)).toBe(true);
    const live = RoomSessionRecord.decode((await (await openBucket(nc, buckets.roomSessions)).get('demo.r-live'))!.value);
    expect((await openParticipants(keyring, 'demo', 'SE_live', live.sealedParticipants))[0]?.participantId).toBe('PA_live');
    // Anything still sealed under the old key is now unreadable.
    expect(await keyring.unwrap('demo', wrapped).catch((e: { code: string }) => e.code)).toBe('INVALID_STATE');
    const audit = await jetstream(nc)
      .jetstreamManager()
      .then((jsm) => jsm.streams.getMessage(streams.audit.name, { last_by_subj: subjects.audit('demo', 'tenant') }));
    expect(TenantAudit.decode(audit!.data)).toMatchObject({ action: 'rotate_keys', requestId: report.requestId });
  });

  it('offboards a tenant after a last delivery: nothing of it is left in any stream, bucket or object store; another tenant keeps everything', async () => {
    // The tenant's destination is down: what is seeded below waits for delivery.
    expect((await call('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector(1)) })).status).toBe(200);
    // Both tenants hold something everywhere a tenant's data can be.
    const seed = async (tenant: string) => {
      const kv = async (bucket: string, key: string, value: Uint8Array | string) => (await openBucket(nc, bucket)).put(`${tenant}.${key}`, value);
      await publishTranscript(nc, store, { tenant, conversationId: `CV_${tenant}`, files: [{ contentType: 'text/plain', bytes: Buffer.from(`${tenant} transcript`) }] });
      await store.put(tenant, `REC_${tenant}`, Readable.from([Buffer.from(`${tenant} recording`)]), 'audio/mpeg');
      await announceRecording(nc, { tenant, recordingId: `REC_${tenant}`, artifacts: [{ artifactId: `REC_${tenant}`, kind: 'audio', contentType: 'audio/mpeg', sizeBytes: 14 }] });
      const segments = await ArtifactStore.open(nc, keyring, 'segments');
      await segments.put(tenant, `SEG_${tenant}`, Readable.from([Buffer.from(`${tenant} segment`)]), 'video/webm');
      await jetstream(nc).publish(subjects.chat(tenant, 'r-1'), Buffer.from('sealed chat entry'));
      const wrappedChat = await keyring.wrap(tenant, Buffer.alloc(32, 1));
      await kv(buckets.chatKeys, 'r-1', ChatKeyRecord.encode({ conversationId: 'CV_1', kekId: wrappedChat.kekId, wrappedKey: wrappedChat.value, startedAtMs: 1 }).finish());
      await kv(
        buckets.roomSessions,
        'r-1',
        RoomSessionRecord.encode({ sessionId: 'SE_1', startedAtMs: 1, sealedParticipants: await sealParticipants(keyring, tenant, 'SE_1', [participant('PA_1')]) }).finish(),
      );
      for (const bucket of [buckets.roomPlacement, buckets.roomRecordings]) await kv(bucket, 'r-1', 'x');
      for (const bucket of [buckets.participants, buckets.smartActions, buckets.webauthnChallenges, buckets.uploadLeases]) await kv(bucket, 'r-1.PA_1', '{}');
      await kv(buckets.recordings, 'REC_1', 'x');
      await kv(buckets.deviceKeys, 'a1b2', '[]');
      await kv(buckets.tokenSessions, 'jti1.0', '{}');
      await kv(buckets.crmContacts, 'warehouse.a1b2', '0031');
      await kv(buckets.crmConfirmations, 'CV_1.warehouse', '{}');
      await kv(buckets.connectors, 'legacy', JSON.stringify({ placeholder: true }));
    };
    await seed('demo');
    await seed('globex');
    const globexBefore = await holdings(nc, 'globex');
    expect(Object.values(await holdings(nc, 'demo')).filter((n) => n > 0).length).toBeGreaterThanOrEqual(20);

    // The operator's CLI, as the admin identity with the KMS administration credentials.
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/crm-sync/src/cli/tenants.ts', 'offboard', 'demo', '--deliver', 'last', '--wait-seconds', '60'], {
      cwd: repoRoot,
      env: { ...process.env, ...nats.envFor('admin'), ...kmsEnv(), LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    // While the CLI waits for the last deliveries, the destination comes back.
    await waitFor(() => stderr.includes('waiting for the last deliveries'), 30_000, 'the CLI waiting');
    expect((await call('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector(postgres.port)) })).status).toBe(200);
    const status = await exited;
    expect(status, stderr).toBe(0);
    const report = JSON.parse(stdout) as { removed: Record<string, number>; keys: Array<{ outcome: string }>; requestId: string; lastDelivery: { pendingBefore: number; pendingAfter: number } };
    expect(report.lastDelivery).toEqual({ attempted: true, pendingBefore: 2, pendingAfter: 0 });
    const delivered = await customerDb.query('select artifact_id, content from gateway_artifacts where artifact_id = any($1) order by artifact_id', [['CV_demo-0', 'REC_demo']]);
    expect(delivered.rows.map((r: { content: Buffer }) => r.content.toString())).toEqual(['demo transcript', 'demo recording']);
    // What was delivered went with its delivery; the rest is counted as it is removed.
    expect(report.removed[buckets.dataKeys]).toBe(1);
    expect(report.removed[buckets.recordingSegments]).toBe(1);
    expect(report.removed[streams.chat.name]).toBe(1);
    expect(report.keys.length).toBeGreaterThanOrEqual(1);
    expect(report.keys.every((k) => k.outcome === 'deletion-scheduled')).toBe(true);
    expect(JSON.stringify(report)).not.toContain('+14155550132');

    // Nothing of the tenant anywhere (alerts and audit are kept by design: ids and counts only).
    const left = await holdings(nc, 'demo');
    expect(Object.entries(left).filter(([name, n]) => n > 0 && name !== streams.audit.name && name !== streams.alerts.name)).toEqual([]);
    // Every chunk left belongs to a live object: no bytes of the tenant without a name either.
    for (const entry of catalog.filter((e) => e.kind === 'objects')) {
      const objects = await new Objm(nc).open(entry.bucket, false);
      const live = new Set((await objects.list()).map((o) => o.nuid));
      const info = await (await jetstream(nc).jetstreamManager()).streams.info(streamNameOf(entry), { subjects_filter: `$O.${entry.bucket}.C.>` });
      expect(Object.keys(info.state.subjects ?? {}).filter((s) => !live.has(s.split('.').pop()!))).toEqual([]);
    }
    // The tenant's key is scheduled for deletion: a copy of anything missed is unreadable.
    expect(kms.aliasTarget('alias/gateway/demo')!.state).toBe('PendingDeletion');
    const audit = await (await jetstream(nc).jetstreamManager()).streams.getMessage(streams.audit.name, { last_by_subj: subjects.audit('demo', 'tenant') });
    expect(TenantAudit.decode(audit!.data)).toMatchObject({ action: 'offboard', requestId: report.requestId });

    // The other tenant keeps everything, still readable.
    expect(await holdings(nc, 'globex')).toEqual(globexBefore);
    expect((await store.get('globex', 'REC_globex')).data.toString()).toBe('globex recording');
    expect((await call('/v1/connectors', { as: GLOBEX_TENANT })).status).toBe(200);
  });
});

/** What a tenant holds in each stream, bucket and object store: messages on its subjects, its live keys, its objects (meta records included). */
async function holdings(nc: NatsConnection, tenant: string): Promise<Record<string, number>> {
  const jsm = await jetstream(nc).jetstreamManager();
  const found: Record<string, number> = {};
  for (const entry of catalog) {
    const name = streamNameOf(entry);
    if (entry.kind === 'stream') {
      const info = await jsm.streams.info(name, { subjects_filter: `gateway.${tenant}.>` });
      found[entry.name] = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    } else if (entry.kind === 'kv') {
      const info = await jsm.streams.info(name, { subjects_filter: `$KV.${entry.bucket}.${tenant}.>` });
      found[entry.bucket] = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    } else {
      const info = await jsm.streams.info(name, { subjects_filter: `$O.${entry.bucket}.M.>` });
      found[entry.bucket] = Object.keys(info.state.subjects ?? {}).filter((s) => Buffer.from(s.split('.').pop()!, 'base64url').toString().startsWith(`${tenant}.`)).length;
    }
  }
  return found;
}
