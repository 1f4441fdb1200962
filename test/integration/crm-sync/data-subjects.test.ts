import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { ArtifactStore, DEMO_TENANT, DEMO_TENANT_KEK, DeviceKeys, StaticKeyring, buckets, ensureStream, openBucket, streams, subjects } from '@gateway/common';
import { DataSubjectAudit, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, startCrmSyncProcess, startSignalingProcess } from '@gateway/testing';
import { KvContactMaps } from '../../../services/crm-sync/src/connectors/ContactMap.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';
import { basicAuth } from '../../support/crmSync.js';

/**
 * Data-subject requests against a real nats-server and crm-sync process: an end user's pending
 * transcripts (no destination is connected, so they wait), their cached CRM contact id and
 * their device key are exported as one bundle, then erased; another end user's data stays, and
 * another tenant can neither see nor erase any of it.
 */
describe('data-subject requests', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>> | undefined;
  let artifacts: ArtifactStore;
  let deviceKeys: DeviceKeys;

  beforeAll(async () => {
    nats = await NatsServer.start();
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: { ...twoTenantEnv, CRM_SYNC_RETRY_BASE_SECONDS: '0.5', CRM_SYNC_RETRY_MAX_SECONDS: '1' } });
    // Erasures by external id reach live rooms through signaling (here: none live).
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv });
    nc = await nats.connect();
    artifacts = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    deviceKeys = new DeviceKeys(await openBucket(nc, buckets.deviceKeys));
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await signaling?.stop();
    await crm?.stop();
    await nats?.stop();
  });

  const api = (path: string, init: RequestInit & { as?: { apiKey: string; apiSecret: string } } = {}) =>
    fetch(`${crm.url}${path}`, { ...init, headers: { authorization: basicAuth(init.as ?? DEMO_TENANT) } });

  async function pendingTranscript(conversationId: string, externalId: string, text: string): Promise<string> {
    const artifactId = `${conversationId}-txt`;
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
        contacts: [
          { participantId: 'PA_u', role: 'end_user', externalId, crmContactId: '' },
          { participantId: 'PA_a', role: 'agent', externalId: 'agent-7', crmContactId: '' },
        ],
        artifacts: [{ artifactId, kind: 'transcript', contentType: 'text/plain', participantId: '', sizeBytes: text.length, durationMs: 0, part: 0 }],
      }).finish(),
    );
    return artifactId;
  }

  it('exports everything held about an end user, erases it, and audits both without naming them', async () => {
    const mine = await pendingTranscript(`CV_a${Date.now()}`, 'ext-erase-me', 'my chat [CARD]');
    const theirs = await pendingTranscript(`CV_b${Date.now()}`, 'ext-someone-else', 'another chat');
    await new KvContactMaps(await openBucket(nc, buckets.crmContacts)).for('demo', 'crm').set('ext-erase-me', '003000000000001AAA');
    await deviceKeys.add('demo', 'ext-erase-me', { id: 'cred-1', publicKey: 'AAAA', counter: 0, transports: ['internal'], registeredAtMs: Date.now() });

    const exported = await api('/v1/data-subjects/export?externalId=ext-erase-me');
    expect(exported.status).toBe(200);
    const bundle = await exported.json();
    expect(bundle.pendingDeliveries).toHaveLength(1);
    expect(bundle.pendingDeliveries[0]).toMatchObject({ kind: 'transcript', contact: { externalId: 'ext-erase-me' } });
    expect(Buffer.from(bundle.pendingDeliveries[0].artifacts[0].contentBase64, 'base64').toString()).toBe('my chat [CARD]');
    expect(JSON.stringify(bundle)).not.toContain('agent-7');
    expect(bundle.crmContacts).toEqual([{ connector: 'crm', crmContactId: '003000000000001AAA' }]);
    expect(bundle.deviceKeys).toEqual([expect.objectContaining({ credentialId: 'cred-1' })]);
    // The same by CRM contact id finds the mapping.
    expect((await (await api('/v1/data-subjects/export?crmContactId=003000000000001AAA')).json()).crmContacts).toHaveLength(1);

    // Another tenant sees nothing and erases nothing.
    expect((await (await api('/v1/data-subjects/export?externalId=ext-erase-me', { as: GLOBEX_TENANT })).json()).pendingDeliveries).toEqual([]);
    const foreign = await (await api('/v1/data-subjects?externalId=ext-erase-me', { method: 'DELETE', as: GLOBEX_TENANT })).json();
    expect(foreign).toMatchObject({ deliveries: 0, artifacts: 0, contactMappings: 0, deviceKeys: 0 });
    expect((await artifacts.get('demo', mine)).data.toString()).toBe('my chat [CARD]');

    const erased = await (await api('/v1/data-subjects?externalId=ext-erase-me', { method: 'DELETE' })).json();
    expect(erased).toMatchObject({ deliveries: 1, artifacts: 1, contactMappings: 1, deviceKeys: 1, live: { rooms: 0 } });
    await expect(artifacts.get('demo', mine)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await deviceKeys.list('demo', 'ext-erase-me')).toEqual([]);
    const after = await (await api('/v1/data-subjects/export?externalId=ext-erase-me')).json();
    expect(after).toMatchObject({ pendingDeliveries: [], crmContacts: [], deviceKeys: [] });
    // Someone else's pending transcript is untouched.
    expect((await artifacts.get('demo', theirs)).data.toString()).toBe('another chat');

    // Audit records say what was done, and how much, never about whom.
    const audit = await jetstream(nc).consumers.get(streams.audit.name, { filter_subjects: subjects.audit('demo', 'data_subject') });
    const records: DataSubjectAudit[] = [];
    for (let m = await audit.next({ expires: 2_000 }); m; m = await audit.next({ expires: 1_000 })) {
      records.push(DataSubjectAudit.decode(m.data));
      expect(Buffer.from(m.data).includes('ext-erase-me')).toBe(false);
      expect(Buffer.from(m.data).includes('003000000000001AAA')).toBe(false);
    }
    expect(records.map((r) => r.action)).toEqual(['export', 'export', 'erase', 'export']);
    expect(records[2]).toMatchObject({ deliveries: 1, artifacts: 1, contactMappings: 1, deviceKeys: 1 });
  });

  it('erases what it can when no signaling replica answers, and asks for the request again', async () => {
    await signaling?.stop();
    signaling = undefined;
    const mine = await pendingTranscript(`CV_c${Date.now()}`, 'ext-unreached', 'a chat');
    const response = await api('/v1/data-subjects?externalId=ext-unreached', { method: 'DELETE' });
    expect(response.status).toBe(503);
    expect((await response.json()).error.code).toBe('UNAVAILABLE');
    await expect(artifacts.get('demo', mine)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses a request without exactly one subject', async () => {
    expect((await api('/v1/data-subjects/export')).status).toBe(400);
    expect((await api('/v1/data-subjects?externalId=a&crmContactId=b', { method: 'DELETE' })).status).toBe(400);
    expect((await api('/v1/data-subjects/export?externalId=x', { as: { apiKey: 'demo', apiSecret: 'nope' } })).status).toBe(401);
  });
});
