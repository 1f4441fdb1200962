import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { type ArtifactStore, ensureStream, streams, subjects } from '@gateway/common';
import { RecordingReady } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { waitFor, type startCrmSyncProcess } from '@gateway/testing';
import { MIB, S3ContractServer, faults } from '../../contracts/s3/server.js';
import { adminApi, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';

const BUCKET = 'customer-recordings';
const KMS_KEY = 'alias/contact-center-recordings';
const CUSTOMER = { accessKeyId: 'AKIACUSTOMERCRMSYNC1', secretAccessKey: 'customer-s3-secret-0451-do-not-show' };

/**
 * crm-sync as in production (its own process, nats-server with JetStream) delivering to a
 * customer's S3 bucket, played by the S3 contract server (test/contracts/s3/README.md says why
 * not a real one). A recording goes up as objects plus a manifest, then our copies are deleted.
 */
describe('crm-sync to a customer S3 bucket', () => {
  let stack: CrmSyncStack;
  let nc: NatsConnection;
  let s3: S3ContractServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let artifacts: ArtifactStore;

  beforeAll(async () => {
    [stack, s3] = await Promise.all([startCrmSyncStack(), S3ContractServer.start({ buckets: [BUCKET], credentials: [CUSTOMER] })]);
    ({ nc, crm, artifacts } = stack);
    await ensureStream(nc, streams.recordings);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await s3?.close();
  });

  const connector = (secretAccessKey = CUSTOMER.secretAccessKey) => ({
    type: 's3',
    config: { bucket: BUCKET, region: s3.region, endpoint: s3.url, kmsKeyId: KMS_KEY, multipartThresholdBytes: 5 * MIB, partSizeBytes: 5 * MIB, maxAttempts: 2 },
    secrets: { accessKeyId: CUSTOMER.accessKeyId, secretAccessKey },
  });
  const admin = (path: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(path, init);

  /** A recording of a 6 MiB voice file (two parts) and a small per-participant file, stored encrypted with us. */
  async function publishRecording(recordingId: string) {
    const files = [
      { artifactId: `${recordingId}-voice`, kind: 'voice', contentType: 'audio/mpeg', data: randomBytes(6 * MIB) },
      { artifactId: `${recordingId}-cam`, kind: 'camera', contentType: 'video/webm', data: randomBytes(64 * 1024) },
    ];
    for (const f of files) await artifacts.put('demo', f.artifactId, Readable.from([f.data]), f.contentType);
    const event = RecordingReady.encode(
      RecordingReady.fromPartial({
        recording: {
          recordingId,
          tenant: 'demo',
          room: 'r-s3',
          state: RecordingState.RECORDING_STATE_COMPLETE,
          startedAtMs: Date.now() - 60_000,
          endedAtMs: Date.now(),
          artifacts: files.map((f) => ({ artifactId: f.artifactId, kind: f.kind, contentType: f.contentType, participantId: 'PA_1', sizeBytes: f.data.length, durationMs: 60_000, part: 0 })),
        },
        contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: 'ext-1', crmContactId: '' }],
      }),
    ).finish();
    await jetstream(nc).publish(subjects.recordingReady('demo'), event);
    return files;
  }

  const folder = (recordingId: string) => `gateway/demo/recording/${recordingId}/`;
  const manifestOf = (recordingId: string) => waitFor(() => s3.object(BUCKET, `${folder(recordingId)}manifest.json`), 20_000, 'the manifest in S3');
  const purged = (artifactId: string) => waitFor(async () => (await artifacts.get('demo', artifactId).catch((e: { code?: string }) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');

  it('keeps the secret key sealed, tests the connection and logs S3 error codes only', async () => {
    expect((await admin('/v1/connectors/bucket', { method: 'PUT', body: JSON.stringify(connector('not-the-secret-key')) })).status).toBe(200);
    const failing = await (await admin('/v1/connectors/bucket/test', { method: 'POST' })).json();
    // One answer for every failure; S3's error code only in the log line the reference leads to.
    expect(failing.error).toEqual({
      code: 'DESTINATION_FAILED',
      message: expect.stringMatching(/^the connection test failed: check the destination's settings and credentials \(reference [0-9a-f]{12}\)$/),
    });
    const reference = /reference ([0-9a-f]{12})/.exec(failing.error.message)![1]!;
    await waitFor(() => crm.logs.split('\n').find((line) => line.includes(reference) && line.includes('SignatureDoesNotMatch')), 5_000, 'the failure in the log');

    expect((await admin('/v1/connectors/bucket', { method: 'PUT', body: JSON.stringify(connector()) })).status).toBe(200);
    const shown = await (await admin('/v1/connectors/bucket')).json();
    expect(shown).toMatchObject({ type: 's3', config: { bucket: BUCKET, prefix: 'gateway/', kmsKeyId: KMS_KEY } });
    expect(JSON.stringify(shown)).not.toContain(CUSTOMER.secretAccessKey);
    expect(await (await admin('/v1/connectors/bucket/test', { method: 'POST' })).json()).toEqual({ ok: true });
    // A plain-HTTP endpoint off this host is refused: credentials and recordings never go out unencrypted.
    const remote = { ...connector(), config: { ...connector().config, endpoint: 'http://s3.example.com' } };
    expect((await admin('/v1/connectors/other', { method: 'PUT', body: JSON.stringify(remote) })).status).toBe(400);
  });

  it('delivers a recording as objects and a manifest (a part retried on 503), then deletes our copies', async () => {
    s3.inject({ operation: 'UploadPart', partNumber: 1, times: 1, fault: faults.slowDown });
    const recordingId = `REC_s3${Date.now()}`;
    const files = await publishRecording(recordingId);
    const manifest = JSON.parse((await manifestOf(recordingId)).body.toString());

    expect(manifest).toMatchObject({
      deliveryId: recordingId,
      kind: 'recording',
      tenant: 'demo',
      room: 'r-s3',
      contacts: [{ externalId: 'ext-1' }],
      metadata: { state: RecordingState.RECORDING_STATE_COMPLETE },
    });
    expect(manifest.artifacts.map((a: { object: string }) => a.object)).toEqual([`${recordingId}-voice.mp3`, `${recordingId}-cam.webm`]);
    for (const [i, f] of files.entries()) {
      const stored = s3.object(BUCKET, `${folder(recordingId)}${manifest.artifacts[i].object}`)!;
      expect(stored.body.equals(f.data)).toBe(true);
      expect(stored).toMatchObject({
        contentType: f.contentType,
        serverSideEncryption: 'aws:kms',
        kmsKeyId: KMS_KEY,
        tags: [
          ['kind', 'recording'],
          ['tenant', 'demo'],
          ['deliveryId', recordingId],
        ],
      });
    }
    // The 6 MiB file went up in two parts, the first one twice.
    expect(s3.count('UploadPart', (r) => r.key?.includes(recordingId) === true)).toBe(3);
    expect(s3.pendingUploads(BUCKET)).toEqual([]);
    for (const f of files) await purged(f.artifactId);
    expect(crm.logs).not.toContain(CUSTOMER.secretAccessKey);
  });

  it('holds a recording while a part keeps failing (no parts left behind), and delivers it once S3 recovers', async () => {
    s3.inject({ operation: 'UploadPart', partNumber: 2, fault: faults.internalError });
    const recordingId = `REC_s3retry${Date.now()}`;
    const files = await publishRecording(recordingId);
    await waitFor(() => s3.count('AbortMultipartUpload', (r) => r.key?.includes(recordingId) === true) >= 2, 15_000, 'two aborted attempts');
    expect(s3.object(BUCKET, `${folder(recordingId)}manifest.json`)).toBeUndefined();
    expect((await artifacts.get('demo', files[0]!.artifactId)).data.equals(files[0]!.data)).toBe(true);

    s3.clearFaults();
    await manifestOf(recordingId);
    expect(s3.object(BUCKET, `${folder(recordingId)}${recordingId}-voice.mp3`)!.body.equals(files[0]!.data)).toBe(true);
    await waitFor(() => s3.pendingUploads(BUCKET).length === 0, 5_000, 'no multipart upload left');
    for (const f of files) await purged(f.artifactId);
    // Delivered once: each object was written by one successful request.
    const writes = s3.requests.filter((r) => r.key?.includes(recordingId) && r.status === 200 && (r.operation === 'PutObject' || r.operation === 'CompleteMultipartUpload'));
    expect(writes.map((r) => r.key?.slice(folder(recordingId).length)).sort()).toEqual([`${recordingId}-cam.webm`, `${recordingId}-voice.mp3`, 'manifest.json']);
  });
});
