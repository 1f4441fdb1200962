import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { buckets, openBucket, streams, subjects } from '@gateway/common';
import { ArtifactMissing } from '@gateway/proto/gateway/events/v1/events';
import { waitFor } from '@gateway/testing';
import { S3ContractServer } from '../../contracts/s3/server.js';
import { adminApi, announceRecording, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';
import { metricValue } from '../../support/metrics.js';

const BUCKET = 'customer-recordings';

/**
 * Each destination's confirmation is recorded before anything is purged. An artifact found gone
 * counts as delivered only when every destination had confirmed (a crash between purging and
 * acknowledging); otherwise it is an alert and a failed delivery, and nothing else is purged.
 */
describe('crm-sync records confirmations before purging', () => {
  let stack: CrmSyncStack;
  let s3: S3ContractServer;
  let confirmations: KV;

  beforeAll(async () => {
    [stack, s3] = await Promise.all([startCrmSyncStack({ CRM_SYNC_RETRY_MAX_SECONDS: '1' }), S3ContractServer.start({ buckets: [BUCKET] })]);
    const admin = adminApi(stack.crm.url);
    for (const [name, prefix] of [
      ['first', 'one/'],
      ['second', 'two/'],
    ]) {
      const body = { type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url, prefix, maxAttempts: 1 }, secrets: S3ContractServer.defaultCredential };
      expect((await admin(`/v1/connectors/${name}`, { method: 'PUT', body: JSON.stringify(body) })).status).toBe(200);
    }
    confirmations = await openBucket(stack.nc, buckets.crmConfirmations);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await s3?.close();
  });

  async function storeRecording(recordingId: string) {
    const files = [`${recordingId}-voice`, `${recordingId}-cam`].map((artifactId) => ({ artifactId, bytes: randomBytes(2048) }));
    for (const f of files) await stack.artifacts.put('demo', f.artifactId, Readable.from([f.bytes]), 'audio/mpeg');
    return files;
  }
  const announce = (recordingId: string, files: Array<{ artifactId: string; bytes: Buffer }>) =>
    announceRecording(stack.nc, { recordingId, artifacts: files.map((f) => ({ artifactId: f.artifactId, kind: 'voice', contentType: 'audio/mpeg', sizeBytes: f.bytes.length })) });
  const held = async (artifactId: string) =>
    stack.artifacts.open('demo', artifactId).then(
      () => true,
      () => false,
    );
  const pendingEvents = async () => (await (await jetstream(stack.nc).jetstreamManager()).streams.info(streams.recordings.name)).state.messages;
  const confirmationKeys = async (recordingId: string) => {
    const keys: string[] = [];
    for await (const key of await confirmations.keys(`demo.${recordingId}.*`)) keys.push(key);
    return keys;
  };
  const s3Requests = (recordingId: string) => s3.requests.filter((r) => r.key?.includes(recordingId));
  const dataKeys = async (artifactId: string) => {
    const keys: string[] = [];
    for await (const key of await (await openBucket(stack.nc, buckets.dataKeys)).keys(`demo.*.${artifactId}`)) keys.push(key);
    return keys;
  };

  it('deletes nothing while one destination fails, delivers to the other meanwhile, and to each exactly once', async () => {
    const recordingId = `REC_down${Date.now()}`;
    const files = await storeRecording(recordingId);
    // The first destination (destinations are delivered to by name) is down until told otherwise.
    s3.inject({ operation: 'PutObject', key: /^one\//, fault: { kind: 'error', status: 500, code: 'InternalError' } });
    await announce(recordingId, files);
    // The second takes it at once, whatever the first does.
    await waitFor(() => s3.object(BUCKET, `two/demo/recording/${recordingId}/manifest.json`), 10_000, 'the second destination to take it');
    await waitFor(() => s3Requests(recordingId).filter((r) => r.key?.startsWith('one/') && r.faulted).length >= 3, 10_000, 'a few failed attempts at the first');
    // Nothing is deleted while the first has not confirmed: artifacts, their data keys, the event.
    for (const f of files) {
      expect(await held(f.artifactId)).toBe(true);
      expect(await dataKeys(f.artifactId)).toHaveLength(1);
    }
    expect(await pendingEvents()).toBe(1);
    expect(await confirmationKeys(recordingId)).toEqual([`demo.${recordingId}.second`]);

    s3.clearFaults();
    await waitFor(() => s3.object(BUCKET, `one/demo/recording/${recordingId}/manifest.json`), 10_000, 'the first destination to take it');
    await waitFor(async () => !(await held(files[1]!.artifactId)) && (await pendingEvents()) === 0, 10_000, 'purged and settled');
    for (const f of files) expect(await dataKeys(f.artifactId)).toEqual([]);
    // The second was not asked again (not even whether it had the files) while the first was retried.
    const requests = s3Requests(recordingId);
    const secondDone = requests.findIndex((r) => r.key === `two/demo/recording/${recordingId}/manifest.json` && r.operation === 'PutObject' && r.status === 200);
    expect(requests.slice(secondDone + 1).filter((r) => r.key?.startsWith('two/'))).toEqual([]);
    expect(requests.filter((r) => r.key?.startsWith('one/') && r.operation === 'PutObject' && r.status === 200)).toHaveLength(files.length + 1);
    await waitFor(async () => (await confirmationKeys(recordingId)).length === 0, 5_000, 'the confirmations cleared');
  });

  it('sends a destination that confirmed nothing again, and clears the confirmations once settled', async () => {
    const recordingId = `REC_conf${Date.now()}`;
    const files = await storeRecording(recordingId);
    // The second destination (destinations are delivered to by name) fails its first attempts.
    s3.inject({ operation: 'PutObject', key: /^two\//, times: 3, fault: { kind: 'error', status: 503, code: 'SlowDown' } });
    await announce(recordingId, files);
    await waitFor(() => s3.object(BUCKET, `two/demo/recording/${recordingId}/manifest.json`), 20_000, 'the second destination to take it');
    await waitFor(async () => !(await held(files[0]!.artifactId)) && (await pendingEvents()) === 0, 10_000, 'purged and settled');
    // The first destination took it once and was not asked again: its confirmation kept it out of the retries.
    const requests = s3Requests(recordingId);
    const firstDone = requests.findIndex((r) => r.key === `one/demo/recording/${recordingId}/manifest.json` && r.operation === 'PutObject' && r.status === 200);
    expect(firstDone).toBeGreaterThanOrEqual(0);
    expect(requests.slice(firstDone + 1).filter((r) => r.key?.startsWith('one/'))).toEqual([]);
    expect(s3Requests(recordingId).filter((r) => r.key?.startsWith('two/') && r.operation === 'PutObject' && r.status === 503).length).toBeGreaterThan(0);
    await waitFor(async () => (await confirmationKeys(recordingId)).length === 0, 5_000, 'the confirmations cleared');
  });

  it('takes a gone artifact as delivered when every destination had confirmed (a crash between purge and acknowledgement)', async () => {
    const recordingId = `REC_crashed${Date.now()}`;
    const files = await storeRecording(recordingId);
    // Both destinations confirmed, one artifact was purged, then the process died.
    for (const connector of ['first', 'second'])
      await confirmations.put(`demo.${recordingId}.${connector}`, JSON.stringify({ tenant: 'demo', deliveryId: recordingId, connector, confirmedAtMs: Date.now() }));
    await stack.artifacts.delete('demo', files[0]!.artifactId);
    const failedBefore = (await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_total', { result: 'failed' })) ?? 0;
    await announce(recordingId, files);

    // The purge is finished and the event settled, without asking any destination again.
    await waitFor(async () => !(await held(files[1]!.artifactId)) && (await pendingEvents()) === 0, 10_000, 'purged and settled');
    expect(s3Requests(recordingId)).toEqual([]);
    expect((await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_total', { result: 'failed' })) ?? 0).toBe(failedBefore);
    await waitFor(async () => (await confirmationKeys(recordingId)).length === 0, 5_000, 'the confirmations cleared');
  });

  it('raises an alert for an artifact gone before every destination confirmed, counts it failed, and purges nothing', async () => {
    const alerts = await jetstream(stack.nc).consumers.get(streams.alerts.name, { filter_subjects: subjects.alert('demo', 'artifact_missing') });
    const recordingId = `REC_missing${Date.now()}`;
    const files = await storeRecording(recordingId);
    // Only the first destination had it; then the voice went missing.
    await confirmations.put(`demo.${recordingId}.first`, JSON.stringify({ tenant: 'demo', deliveryId: recordingId, connector: 'first', confirmedAtMs: Date.now() }));
    await stack.artifacts.delete('demo', files[0]!.artifactId);
    const missingBefore = (await metricValue(stack.crm.opsPort, 'gateway_crm_sync_artifacts_missing_total')) ?? 0;
    const failedBefore = (await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_total', { adapter: 's3', result: 'failed' })) ?? 0;
    await announce(recordingId, files);

    const alert = ArtifactMissing.decode((await alerts.next({ expires: 10_000 }))!.data);
    expect(alert).toMatchObject({ tenant: 'demo', deliveryId: recordingId, kind: 'recording', artifactId: files[0]!.artifactId, unconfirmedConnectors: ['second'] });
    expect((await metricValue(stack.crm.opsPort, 'gateway_crm_sync_artifacts_missing_total')) ?? 0).toBeGreaterThan(missingBefore);
    expect((await metricValue(stack.crm.opsPort, 'gateway_crm_sync_deliveries_total', { adapter: 's3', result: 'failed' })) ?? 0).toBeGreaterThan(failedBefore);
    // Not delivered, not purged, not acknowledged; the second destination has no manifest.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await held(files[1]!.artifactId)).toBe(true);
    expect(await pendingEvents()).toBe(1);
    expect(s3.object(BUCKET, `two/demo/recording/${recordingId}/manifest.json`)).toBeUndefined();
    expect(stack.crm.logs).not.toMatch(new RegExp(`${recordingId}.*delivered and purged`));
  });
});
