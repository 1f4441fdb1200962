import { createHash, randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '@gateway/common';
import { MIB, S3ContractServer, faults, type S3Credential } from '../../../../test/contracts/s3/server.js';
import { S3Destination, s3ConfigSchema, type S3Config, type S3Secrets, type S3Tuning } from './s3.js';
import { partSizeFor } from './s3Multipart.js';
import { contactDelivery, delivery } from '../testing/deliveries.js';

const BUCKET = 'customer-recordings';
const KMS_KEY = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const writer: S3Credential = { accessKeyId: 'AKIACUSTOMERWRITER01', secretAccessKey: 'customer-secret-key-do-not-log-0001' };
const writeOnly: S3Credential = { accessKeyId: 'AKIACUSTOMERWRITEONLY', secretAccessKey: 'write-only-secret', deny: ['HeadObject', 'GetObject'] };
const noPut: S3Credential = { accessKeyId: 'AKIACUSTOMERREADONLY', secretAccessKey: 'read-only-secret', deny: ['PutObject'] };

/** Log lines as a pino logger would take them, to check what is (not) logged. */
function recordingLogger(lines: unknown[]): Logger {
  const log = (level: string) => (fields: unknown, message?: string) => lines.push({ level, fields, message });
  const logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: () => logger };
  return logger as unknown as Logger;
}

describe('S3 destination', () => {
  let server: S3ContractServer;
  let reader: S3Client;
  const logs: unknown[] = [];
  const destinations: S3Destination[] = [];

  const open = (config: Partial<S3Config> = {}, secrets: S3Secrets = writer, tuning: Partial<S3Tuning> = {}) => {
    const destination = new S3Destination(
      s3ConfigSchema.parse({ bucket: BUCKET, region: server.region, endpoint: server.url, kmsKeyId: KMS_KEY, multipartThresholdBytes: 6 * MIB, partSizeBytes: 5 * MIB, maxAttempts: 3, ...config }),
      secrets,
      { log: recordingLogger(logs) },
      { retryBaseMs: 5, retryMaxMs: 20, requestTimeoutMs: 10_000, connectTimeoutMs: 2_000, ...tuning },
    );
    destinations.push(destination);
    return destination;
  };
  const rejection = async (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string },
    );
  const folder = (id: string, kind = 'recording') => `gateway/demo/${kind}/${id}/`;

  beforeAll(async () => {
    server = await S3ContractServer.start({ buckets: [BUCKET], credentials: [writer, writeOnly, noPut] });
    reader = new S3Client({ region: server.region, endpoint: server.url, forcePathStyle: true, credentials: writer });
  });
  afterEach(async () => {
    server.clearFaults();
    await Promise.all(destinations.splice(0).map((d) => d.close()));
  });
  afterAll(async () => {
    reader?.destroy();
    await server?.close();
  });

  it('writes a small file with tags and SSE-KMS, then the manifest last', async () => {
    const data = Buffer.from('{"messages":[{"text":"[card]"}]}');
    const d = delivery({ deliveryId: 'REC_small', kind: 'transcript', startedAtMs: Date.parse('2025-03-01T10:00:00Z'), files: [{ id: 'ART_json', contentType: 'application/json', data }] });
    await open().deliver(d);

    const key = `${folder('REC_small', 'transcript')}ART_json.json`;
    const stored = server.object(BUCKET, key)!;
    expect(stored.body.equals(data)).toBe(true);
    expect(stored.contentType).toBe('application/json');
    expect(stored.tags).toEqual([
      ['kind', 'transcript'],
      ['tenant', 'demo'],
      ['deliveryId', 'REC_small'],
    ]);
    expect(stored.metadata.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(stored).toMatchObject({ serverSideEncryption: 'aws:kms', kmsKeyId: KMS_KEY });
    expect(JSON.parse(Buffer.from(stored.encryptionContext!, 'base64').toString())).toEqual({ tenant: 'demo', deliveryId: 'REC_small' });
    // What a reader of the bucket gets back.
    const got = await reader.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(got).toMatchObject({ ServerSideEncryption: 'aws:kms', SSEKMSKeyId: KMS_KEY, TagCount: 3 });
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);

    const puts = server.requests.filter((r) => r.operation === 'PutObject' && r.key?.includes('REC_small')).map((r) => r.key);
    expect(puts).toEqual([key, `${folder('REC_small', 'transcript')}manifest.json`]);
    const manifest = JSON.parse(server.object(BUCKET, `${folder('REC_small', 'transcript')}manifest.json`)!.body.toString());
    expect(manifest).toMatchObject({
      version: 1,
      deliveryId: 'REC_small',
      kind: 'transcript',
      tenant: 'demo',
      room: 'r-1',
      startedAt: '2025-03-01T10:00:00.000Z',
      contacts: [{ externalId: 'ext-1', role: 'end_user' }],
      artifacts: [{ artifactId: 'ART_json', object: 'ART_json.json', sizeBytes: data.length, sha256: stored.metadata.sha256 }],
    });
  });

  it("writes a contact-center contact's record as its manifest under the tenant's prefix", async () => {
    await open().deliver(contactDelivery({ contactId: 'CT_s3', connectedAtMs: undefined, agentId: undefined }));
    const key = `${folder('contact-CT_s3', 'contact')}manifest.json`;
    const stored = server.object(BUCKET, key)!;
    expect(stored.tags).toEqual([
      ['kind', 'contact'],
      ['tenant', 'demo'],
      ['deliveryId', 'contact-CT_s3'],
    ]);
    const manifest = JSON.parse(stored.body.toString());
    expect(manifest).toMatchObject({
      deliveryId: 'contact-CT_s3',
      kind: 'contact',
      contacts: [{ role: 'end_user', externalId: 'ext-1' }],
      metadata: {
        contactId: 'CT_s3',
        queueId: 'billing',
        channel: 'voice',
        waitSeconds: 30,
        handleSeconds: 300,
        outcome: 'completed',
        disposition: 'Refund issued',
        notes: 'Customer asked for a refund.\nSent by email.',
      },
      artifacts: [],
    });
    // What the contact did not have is left out.
    expect(manifest.metadata).not.toHaveProperty('agentId');
    expect(manifest.metadata).not.toHaveProperty('connectedAtMs');
  });

  it('uploads a large file in 5 MiB parts and the bytes come back equal', async () => {
    const data = randomBytes(12 * MIB);
    const before = server.requests.length;
    await open().deliver(delivery({ deliveryId: 'REC_big', kind: 'recording', files: [{ id: 'ART_mp4', contentType: 'video/mp4', data }] }));

    const key = `${folder('REC_big')}ART_mp4.mp4`;
    const requests = server.requests.slice(before);
    expect(
      requests
        .filter((r) => r.operation === 'UploadPart')
        .map((r) => r.partNumber)
        .sort(),
    ).toEqual([1, 2, 3]);
    expect(requests.filter((r) => r.operation === 'CompleteMultipartUpload')).toHaveLength(1);
    const got = await reader.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(data)).toBe(true);
    expect(got.ETag).toMatch(/-3"$/);
    expect(server.object(BUCKET, key)).toMatchObject({
      serverSideEncryption: 'aws:kms',
      tags: [
        ['kind', 'recording'],
        ['tenant', 'demo'],
        ['deliveryId', 'REC_big'],
      ],
    });
    expect(server.pendingUploads(BUCKET)).toEqual([]);
  });

  it('writes nothing twice: a redelivery only checks the manifest, a partial one writes what is missing', async () => {
    const files = [
      { id: 'ART_a', contentType: 'audio/mpeg', data: randomBytes(1000) },
      { id: 'ART_b', contentType: 'audio/webm', data: randomBytes(2000) },
    ];
    // First attempt: the manifest fails, so the delivery is incomplete.
    server.inject({ operation: 'PutObject', key: /REC_twice\/manifest\.json$/, fault: { kind: 'error', status: 403, code: 'AccessDenied' } });
    expect(await rejection(open().deliver(delivery({ deliveryId: 'REC_twice', kind: 'recording', files })))).toMatchObject({ code: 'DESTINATION_FAILED' });
    server.clearFaults();
    const modified = server.object(BUCKET, `${folder('REC_twice')}ART_a.mp3`)!.lastModified;

    let before = server.requests.length;
    await open().deliver(delivery({ deliveryId: 'REC_twice', kind: 'recording', files, attempt: 2 }));
    // Each file is written on the condition that its key is free: taken (412), and the same bytes.
    expect(server.requests.slice(before).map((r) => `${r.operation} ${r.key?.split('/').at(-1)} ${r.status}`)).toEqual([
      'HeadObject manifest.json 404',
      'PutObject ART_a.mp3 412',
      'HeadObject ART_a.mp3 200',
      'PutObject ART_b.webm 412',
      'HeadObject ART_b.webm 200',
      'PutObject manifest.json 200',
    ]);
    expect(server.object(BUCKET, `${folder('REC_twice')}ART_a.mp3`)!.lastModified).toBe(modified);

    before = server.requests.length;
    const again = delivery({ deliveryId: 'REC_twice', kind: 'recording', files, attempt: 3 });
    await open().deliver(again);
    expect(server.requests.slice(before).map((r) => r.operation)).toEqual(['HeadObject']);
    expect(again.reads()).toBe(0);
    expect(server.keys(BUCKET, folder('REC_twice'))).toHaveLength(3);

    // A first attempt of an event already delivered (a duplicate published after JetStream's
    // duplicate window) asks nothing first: every write finds its key taken, nothing is rewritten.
    before = server.requests.length;
    const duplicate = delivery({ deliveryId: 'REC_twice', kind: 'recording', files, attempt: 1 });
    await open().deliver(duplicate);
    expect(server.requests.slice(before).map((r) => `${r.operation} ${r.key?.split('/').at(-1)} ${r.status}`)).toEqual([
      'PutObject ART_a.mp3 412',
      'HeadObject ART_a.mp3 200',
      'PutObject ART_b.webm 412',
      'HeadObject ART_b.webm 200',
      'PutObject manifest.json 412',
    ]);
    expect(server.object(BUCKET, `${folder('REC_twice')}ART_a.mp3`)!.lastModified).toBe(modified);
    expect(server.keys(BUCKET, folder('REC_twice'))).toHaveLength(3);
  });

  it("writes a first attempt's files and manifest on condition without asking first: a new one-file delivery is two PUTs", async () => {
    let before = server.requests.length;
    await open().deliver(delivery({ deliveryId: 'REC_four', kind: 'recording', attempt: 1, files: [{ id: 'ART_one', contentType: 'audio/mpeg', data: Buffer.from('one') }] }));
    expect(server.requests.slice(before).map((r) => `${r.operation} ${r.key?.split('/').at(-1)} ${r.status}`)).toEqual(['PutObject ART_one.mp3 200', 'PutObject manifest.json 200']);
    // A retry (or an attempt whose number is not known) asks for the manifest once first.
    before = server.requests.length;
    await open().deliver(delivery({ deliveryId: 'REC_five', kind: 'recording', files: [{ id: 'ART_one', contentType: 'audio/mpeg', data: Buffer.from('one') }] }));
    expect(server.requests.slice(before).map((r) => `${r.operation} ${r.key?.split('/').at(-1)}`)).toEqual(['HeadObject manifest.json', 'PutObject ART_one.mp3', 'PutObject manifest.json']);
  });

  it('rewrites an object whose bytes differ from what a redelivery carries (by SHA-256, not size alone)', async () => {
    const original = [
      { id: 'ART_x', contentType: 'audio/mpeg', data: Buffer.alloc(1000, 1) },
      { id: 'ART_y', contentType: 'audio/mpeg', data: Buffer.alloc(1000, 2) },
    ];
    server.inject({ operation: 'PutObject', key: /REC_changed\/manifest\.json$/, times: 1, fault: { kind: 'error', status: 403, code: 'AccessDenied' } });
    await rejection(open().deliver(delivery({ deliveryId: 'REC_changed', kind: 'recording', files: original })));
    const changed = [{ ...original[0]!, data: Buffer.alloc(1000, 3) }, original[1]!];
    const before = server.requests.length;
    await open().deliver(delivery({ deliveryId: 'REC_changed', kind: 'recording', files: changed }));
    expect(
      server.requests
        .slice(before)
        .filter((r) => r.operation === 'PutObject' && r.status === 200)
        .map((r) => r.key),
    ).toEqual([`${folder('REC_changed')}ART_x.mp3`, `${folder('REC_changed')}manifest.json`]);
    expect(server.object(BUCKET, `${folder('REC_changed')}ART_x.mp3`)!.body.equals(changed[0]!.data)).toBe(true);
  });

  it('keeps writing under a write-only policy (no s3:GetObject): same keys, no duplicates', async () => {
    const files = [{ id: 'ART_w', contentType: 'text/plain', data: Buffer.from('hello') }];
    await open({}, writeOnly).deliver(delivery({ deliveryId: 'REC_wo', kind: 'recording', files }));
    await open({}, writeOnly).deliver(delivery({ deliveryId: 'REC_wo', kind: 'recording', files }));
    expect(server.keys(BUCKET, folder('REC_wo'))).toEqual([`${folder('REC_wo')}ART_w.txt`, `${folder('REC_wo')}manifest.json`]);
  });

  it('fails with DESTINATION_FAILED naming only the S3 error code for wrong credentials', async () => {
    const d = delivery({ deliveryId: 'REC_creds', kind: 'recording', files: [{ id: 'ART_c', contentType: 'text/plain', data: Buffer.from('x') }] });
    const unknownKey = await rejection(open({}, { accessKeyId: 'AKIANOSUCHKEY0000000', secretAccessKey: 'whatever-secret-123' }).deliver(d));
    expect(unknownKey).toMatchObject({ code: 'DESTINATION_FAILED', message: 'S3 refused PutObject: InvalidAccessKeyId (HTTP 403)' });
    const wrongSecret = await rejection(open({}, { ...writer, secretAccessKey: 'not-the-secret-0451' }).test());
    expect(wrongSecret).toMatchObject({ code: 'DESTINATION_FAILED', message: 'S3 refused PutObject: SignatureDoesNotMatch (HTTP 403)' });
    expect(wrongSecret!.message).not.toContain('not-the-secret');
    expect(await rejection(open({}, noPut).test())).toMatchObject({ code: 'DESTINATION_FAILED', message: 'S3 refused PutObject: AccessDenied (HTTP 403)' });
    expect(await rejection(open({ bucket: 'no-such-bucket' }).test())).toMatchObject({ message: 'S3 refused PutObject: NoSuchBucket (HTTP 404)' });
    // The right ones pass, and the probe object is removed.
    await open().test();
    expect(server.keys(BUCKET, 'gateway/.gateway')).toEqual([]);
  });

  it('retries a failing part and completes the upload', async () => {
    server.inject({ operation: 'UploadPart', partNumber: 2, times: 2, fault: faults.slowDown });
    const data = randomBytes(11 * MIB);
    await open().deliver(delivery({ deliveryId: 'REC_retry', kind: 'recording', files: [{ id: 'ART_v', contentType: 'video/webm', data }] }));
    expect(server.count('UploadPart', (r) => r.key?.includes('REC_retry') === true && r.partNumber === 2)).toBe(3);
    expect(server.object(BUCKET, `${folder('REC_retry')}ART_v.webm`)!.body.equals(data)).toBe(true);
  });

  it('aborts the upload when a part keeps failing, leaving no parts behind', async () => {
    server.inject({ operation: 'UploadPart', partNumber: 2, fault: faults.internalError });
    const error = await rejection(open().deliver(delivery({ deliveryId: 'REC_abort', kind: 'recording', files: [{ id: 'ART_v', contentType: 'video/webm', data: randomBytes(11 * MIB) }] })));
    expect(error).toMatchObject({ code: 'DESTINATION_FAILED', message: 'S3 UploadPart failed 3 times: InternalError (HTTP 500)' });
    expect(server.count('AbortMultipartUpload', (r) => r.key?.includes('REC_abort') === true)).toBe(1);
    expect((await reader.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }))).Uploads ?? []).toEqual([]);
    expect(server.keys(BUCKET, folder('REC_abort'))).toEqual([]);
  });

  it('tries a conditional write again after a 409 ConditionalRequestConflict (another write to the key under way)', async () => {
    server.inject({ operation: 'PutObject', key: /REC_conflict\/ART_c\.mp3$/, times: 1, fault: { kind: 'error', status: 409, code: 'ConditionalRequestConflict' } });
    await open().deliver(delivery({ deliveryId: 'REC_conflict', kind: 'recording', files: [{ id: 'ART_c', contentType: 'audio/mpeg', data: Buffer.from('c') }] }));
    expect(server.count('PutObject', (r) => r.key === `${folder('REC_conflict')}ART_c.mp3`)).toBe(2);
    expect(server.object(BUCKET, `${folder('REC_conflict')}ART_c.mp3`)!.body.toString()).toBe('c');
  });

  it('retries 503 SlowDown, and gives up after the configured attempts', async () => {
    server.inject({ operation: 'PutObject', times: 2, fault: faults.slowDown });
    await open().deliver(delivery({ deliveryId: 'REC_slow', kind: 'recording', files: [{ id: 'ART_s', contentType: 'text/plain', data: Buffer.from('slow') }] }));
    expect(server.object(BUCKET, `${folder('REC_slow')}manifest.json`)).toBeDefined();

    server.inject({ operation: 'PutObject', fault: faults.slowDown });
    const before = server.count('PutObject');
    const error = await rejection(
      open({ maxAttempts: 2 }).deliver(delivery({ deliveryId: 'REC_slower', kind: 'recording', files: [{ id: 'ART_s', contentType: 'text/plain', data: Buffer.from('slow') }] })),
    );
    expect(error).toMatchObject({ code: 'DESTINATION_FAILED', message: 'S3 PutObject failed 2 times: SlowDown (HTTP 503)' });
    expect(server.count('PutObject') - before).toBe(2);
  });

  it('retries dropped connections and turns timeouts into DESTINATION_FAILED', async () => {
    server.inject({ operation: 'PutObject', times: 1, fault: faults.reset });
    await open().deliver(delivery({ deliveryId: 'REC_reset', kind: 'recording', files: [{ id: 'ART_r', contentType: 'text/plain', data: Buffer.from('reset') }] }));
    expect(server.object(BUCKET, `${folder('REC_reset')}ART_r.txt`)).toBeDefined();

    server.inject({ operation: 'HeadObject', fault: faults.hang });
    const error = await rejection(
      open({ maxAttempts: 2 }, writer, { requestTimeoutMs: 300 }).deliver(
        delivery({ deliveryId: 'REC_hang', kind: 'recording', files: [{ id: 'ART_h', contentType: 'text/plain', data: Buffer.from('hang') }] }),
      ),
    );
    expect(error).toMatchObject({ code: 'DESTINATION_FAILED', message: 'S3 HeadObject failed 2 times: no answer in time' });

    server.clearFaults();
    server.inject({ operation: 'PutObject', fault: faults.reset });
    const reset = await rejection(
      open({ maxAttempts: 2 }).deliver(delivery({ deliveryId: 'REC_reset2', kind: 'recording', files: [{ id: 'ART_r', contentType: 'text/plain', data: Buffer.from('reset') }] })),
    );
    expect(reset).toMatchObject({ code: 'DESTINATION_FAILED', message: expect.stringMatching(/^S3 PutObject failed 2 times: connection failed \(E[A-Z]+\)$/) });
  });

  it('validates its settings', () => {
    const base = { bucket: BUCKET, region: 'eu-west-1' };
    expect(s3ConfigSchema.parse(base)).toMatchObject({ prefix: 'gateway/', multipartThresholdBytes: 16 * MIB, partSizeBytes: 8 * MIB, maxAttempts: 4 });
    expect(s3ConfigSchema.safeParse({ ...base, endpoint: 'http://minio.internal:9000' }).success).toBe(false);
    expect(s3ConfigSchema.safeParse({ ...base, endpoint: 'https://minio.internal:9000' }).success).toBe(true);
    expect(s3ConfigSchema.safeParse({ ...base, prefix: 'no-slash' }).success).toBe(false);
    expect(s3ConfigSchema.safeParse({ ...base, prefix: 'calls/2025/' }).success).toBe(true);
    expect(s3ConfigSchema.safeParse({ ...base, prefix: '../up/' }).success).toBe(false);
    expect(s3ConfigSchema.safeParse({ ...base, partSizeBytes: 4 * MIB }).success).toBe(false);
    expect(s3ConfigSchema.safeParse({ ...base, bucket: 'Bad_Bucket' }).success).toBe(false);
    // At most 10,000 parts: a 100 GiB file gets 11 MiB parts instead of 8.
    expect(partSizeFor(100 * 1024 * MIB, 8 * MIB)).toBe(11 * MIB);
    expect(Math.ceil((100 * 1024 * MIB) / partSizeFor(100 * 1024 * MIB, 8 * MIB))).toBeLessThanOrEqual(10_000);
    expect(partSizeFor(12 * MIB, 5 * MIB)).toBe(5 * MIB);
  });

  it('never logs credentials or object keys (the tests above logged retries and warnings)', () => {
    const logged = JSON.stringify(logs);
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of [writer.secretAccessKey, writeOnly.secretAccessKey, noPut.secretAccessKey, 'not-the-secret-0451']) expect(logged).not.toContain(secret);
    expect(logged).not.toContain('gateway/demo/');
  });
});
