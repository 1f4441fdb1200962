import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { ArtifactStore, StaticKeyring, buckets, ensureStream, openBucket, streams, subjects } from '@gateway/common';
import { RecordingReady, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { waitFor } from '@gateway/testing';
import { S3ContractServer } from '../../contracts/s3/server.js';
import { adminApi, publishTranscript, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';
import { metricValue } from '../../support/metrics.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';

const BUCKET = 'customer-recordings';

/**
 * What crm-sync reads from NATS is hostile until checked: events that are not what they claim
 * (garbage, an event of one tenant on another's subject, ids that are not ids) are erased and
 * terminated, and KV records that are not what they should be are left out; none of it stops
 * crm-sync, and everything valid is still delivered.
 */
describe('crm-sync checks what it reads from NATS', () => {
  let stack: CrmSyncStack;
  let s3: S3ContractServer;

  beforeAll(async () => {
    [stack, s3] = await Promise.all([startCrmSyncStack(), S3ContractServer.start({ buckets: [BUCKET] })]);
    for (const tenant of [undefined, GLOBEX_TENANT]) {
      const body = { type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url }, secrets: S3ContractServer.defaultCredential };
      expect((await adminApi(stack.crm.url)('/v1/connectors/bucket', { method: 'PUT', body: JSON.stringify(body), ...(tenant ? { as: tenant } : {}) })).status).toBe(200);
    }
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await s3?.close();
  });

  it('erases and terminates malformed events, delivers nothing of another tenant through them, and goes on', async () => {
    const js = jetstream(stack.nc);
    await ensureStream(stack.nc, streams.recordings);
    await ensureStream(stack.nc, streams.transcripts);
    const store = await ArtifactStore.open(stack.nc, new StaticKeyring(JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>));
    // A real artifact of demo, named by an event published on globex's subject: globex must not get it.
    await store.put('demo', 'AR_demosecret', Readable.from([Buffer.from('demo secret')]), 'text/plain');
    const transcript = (tenant: string, conversationId: string, artifactId: string) =>
      TranscriptReady.encode({
        tenant,
        room: 'r',
        conversationId,
        messageCount: 1,
        startedAtMs: 1,
        endedAtMs: 2,
        contacts: [],
        smartActions: [],
        artifacts: [{ artifactId, kind: 'transcript', contentType: 'text/plain', participantId: '', sizeBytes: 11, durationMs: 0, part: 0 }],
      }).finish();
    await js.publish(subjects.transcriptReady('globex'), transcript('demo', 'CV_crosstenant', 'AR_demosecret'));
    await js.publish(subjects.recordingReady('demo'), Uint8Array.from([0xff, 0xff, 0xff, 0x0f, 0x12, 0x00]));
    await js.publish(subjects.recordingReady('demo'), RecordingReady.encode(RecordingReady.fromPartial({ recording: { recordingId: 'REC_x>', tenant: 'demo', room: 'r', artifacts: [] } })).finish());
    await js.publish(subjects.transcriptReady('demo'), transcript('demo', 'CV_bad', '../escape'));

    await waitFor(async () => ((await metricValue(stack.crm.opsPort, 'gateway_crm_sync_malformed_events_total')) ?? 0) >= 4, 10_000, 'four malformed events terminated');
    const jsm = await js.jetstreamManager();
    await waitFor(
      async () => (await jsm.streams.info(streams.recordings.name)).state.messages === 0 && (await jsm.streams.info(streams.transcripts.name)).state.messages === 0,
      10_000,
      'the malformed events erased',
    );
    expect(s3.keys(BUCKET, 'gateway/globex/')).toEqual([]);
    expect((await store.get('demo', 'AR_demosecret')).data.toString()).toBe('demo secret');

    // Still delivering.
    await publishTranscript(stack.nc, store, { tenant: 'globex', conversationId: 'CV_after', files: [{ contentType: 'text/plain', bytes: Buffer.from('after') }] });
    await waitFor(() => s3.object(BUCKET, 'gateway/globex/transcript/CV_after/manifest.json'), 10_000, 'a valid delivery after them');
    expect(stack.crm.running).toBe(true);
  });

  it('leaves out KV records that are not what they should be, and answers all the same', async () => {
    const admin = adminApi(stack.crm.url);
    const connectors = await openBucket(stack.nc, buckets.connectors);
    await connectors.put('demo.broken', 'not json at all');
    await connectors.put('demo.nested', JSON.stringify({ name: 'nested', type: 'postgres', config: {}, updatedAtMs: 1, secrets: { wrapped: { kekId: 'x', value: { toString: 1 } }, value: 'x' } }));
    await connectors.put('demo.moved', JSON.stringify({ name: 'other', type: 's3', config: {}, updatedAtMs: 1, secrets: { wrapped: { kekId: 'x', value: 'x' }, value: 'x' } }));
    const listed = await admin('/v1/connectors');
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { connectors: Array<{ name: string }> }).connectors.map((c) => c.name)).toEqual(['bucket']);
    const broken = await admin('/v1/connectors/broken');
    expect(broken.status).toBe(500);
    expect(JSON.stringify(await broken.json())).not.toContain('not json');

    // A contact mapping and device keys that are not what they should be.
    await (await openBucket(stack.nc, buckets.crmContacts)).put(`demo.bucket.${'a'.repeat(40)}`, '<script>');
    await (await openBucket(stack.nc, buckets.deviceKeys)).put(`demo.${'b'.repeat(40)}`, '{"not":"a list"}');
    const exported = await admin('/v1/data-subjects/export?crmContactId=%3Cscript%3E');
    expect(exported.status).toBe(200);
    expect((await exported.json()).crmContacts).toEqual([]);

    // Deliveries go on to the valid connector.
    await publishTranscript(stack.nc, stack.artifacts, { conversationId: 'CV_records', files: [{ contentType: 'text/plain', bytes: Buffer.from('records') }] });
    await waitFor(() => s3.object(BUCKET, 'gateway/demo/transcript/CV_records/manifest.json'), 10_000, 'a delivery past the broken records');
    expect(stack.crm.logs).toMatch(/a connector record is unreadable/);
    expect(stack.crm.running).toBe(true);
  });
});
