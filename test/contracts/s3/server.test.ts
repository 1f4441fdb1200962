import { request } from 'node:http';
import { setTimeout } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { MIB, S3ContractServer } from './server.js';

/**
 * The contract server against the AWS SDK's own signing and parsing: what it accepts and refuses
 * must be what S3 accepts and refuses, or the adapter's tests prove nothing.
 */
describe('S3 contract server', () => {
  let server: S3ContractServer;
  const bucket = 'contract-test';
  const client = (overrides: { accessKeyId?: string; secretAccessKey?: string; sessionToken?: string; region?: string } = {}) =>
    new S3Client({
      region: overrides.region ?? server.region,
      endpoint: server.url,
      forcePathStyle: true,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      credentials: {
        accessKeyId: overrides.accessKeyId ?? 'AKIACONTRACT',
        secretAccessKey: overrides.secretAccessKey ?? 'contract-secret',
        sessionToken: overrides.sessionToken,
      },
    });
  const codeOf = async (promise: Promise<unknown>) =>
    promise.then(
      () => 'ok',
      (e: unknown) => (e instanceof S3ServiceException ? `${e.name} ${e.$metadata.httpStatusCode}` : String(e)),
    );

  beforeAll(async () => {
    server = await S3ContractServer.start({
      buckets: [bucket],
      credentials: [
        { accessKeyId: 'AKIACONTRACT', secretAccessKey: 'contract-secret' },
        { accessKeyId: 'ASIATEMPORARY', secretAccessKey: 'temporary-secret', sessionToken: 'session-token-1' },
      ],
    });
  });
  afterAll(async () => server?.close());

  it('checks SigV4: the key id, the signature, the region of the scope and the session token', async () => {
    const put = (c: S3Client) => c.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/b c+d.txt', Body: 'x' }));
    expect(await codeOf(put(client()))).toBe('ok');
    expect(await codeOf(put(client({ accessKeyId: 'AKIAUNKNOWN' })))).toBe('InvalidAccessKeyId 403');
    expect(await codeOf(put(client({ secretAccessKey: 'wrong' })))).toBe('SignatureDoesNotMatch 403');
    expect(await codeOf(put(client({ region: 'us-east-1' })))).toBe('AuthorizationHeaderMalformed 400');
    expect(await codeOf(put(client({ accessKeyId: 'ASIATEMPORARY', secretAccessKey: 'temporary-secret', sessionToken: 'session-token-1' })))).toBe('ok');
    expect(await codeOf(put(client({ accessKeyId: 'ASIATEMPORARY', secretAccessKey: 'temporary-secret' })))).toBe('InvalidToken 403');
    const text = await (await client().send(new GetObjectCommand({ Bucket: bucket, Key: 'a/b c+d.txt' }))).Body!.transformToString();
    expect(text).toBe('x');
    // A missing object: 404 with no body on HEAD, NoSuchKey on GET.
    expect(await codeOf(client().send(new HeadObjectCommand({ Bucket: bucket, Key: 'missing' })))).toBe('NotFound 404');
    expect(await codeOf(client().send(new GetObjectCommand({ Bucket: bucket, Key: 'missing' })))).toBe('NoSuchKey 404');
    expect(await codeOf(client().send(new PutObjectCommand({ Bucket: 'no-such-bucket', Key: 'k', Body: 'x' })))).toBe('NoSuchBucket 404');
  });

  it('stores x-amz-tagging and echoes SSE-KMS headers', async () => {
    const context = Buffer.from(JSON.stringify({ tenant: 't' })).toString('base64');
    const put = await client().send(
      new PutObjectCommand({ Bucket: bucket, Key: 'enc', Body: 'x', Tagging: 'a=1&b=two%20words', ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'alias/k', SSEKMSEncryptionContext: context }),
    );
    expect(put).toMatchObject({ ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'alias/k', SSEKMSEncryptionContext: context });
    expect((await client().send(new GetObjectTaggingCommand({ Bucket: bucket, Key: 'enc' }))).TagSet).toEqual([
      { Key: 'a', Value: '1' },
      { Key: 'b', Value: 'two words' },
    ]);
    expect(await codeOf(client().send(new PutObjectCommand({ Bucket: bucket, Key: 'enc', Body: 'x', SSEKMSKeyId: 'alias/k' })))).toBe('InvalidArgument 400');
    expect(await codeOf(client().send(new PutObjectCommand({ Bucket: bucket, Key: 'enc', Body: 'x', ServerSideEncryption: 'aws:kms', SSEKMSEncryptionContext: 'not json' })))).toBe(
      'InvalidArgument 400',
    );
  });

  it('takes conditional writes: If-None-Match * is 412 PreconditionFailed on an existing key, 409 ConditionalRequestConflict beside another write', async () => {
    const putIfAbsent = (key: string, body: PutObjectCommandInput['Body']) => client().send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, IfNoneMatch: '*' }));
    expect(await codeOf(putIfAbsent('conditional', 'first'))).toBe('ok');
    expect(await codeOf(putIfAbsent('conditional', 'second'))).toBe('PreconditionFailed 412');
    expect(server.object(bucket, 'conditional')?.body.toString()).toBe('first');
    // Only `*` is taken on a write.
    expect(await codeOf(client().send(new PutObjectCommand({ Bucket: bucket, Key: 'conditional-etag', Body: 'x', IfNoneMatch: '"abc"' })))).toBe('NotImplemented 501');
    // A write whose body is still arriving (sent by hand, half its body held back; unsigned, so
    // refused once it has arrived): a conditional write to the same key meanwhile conflicts.
    const slow = request(`${server.url}/${bucket}/racing`, { method: 'PUT', headers: { 'content-length': '4' } });
    const slowAnswer = new Promise<number | undefined>((resolve, reject) => slow.on('response', (res) => resolve(res.resume().statusCode)).on('error', reject));
    slow.write('sl');
    await new Promise<void>((resolve) => slow.once('socket', (socket) => (socket.connecting ? socket.once('connect', () => resolve()) : resolve())));
    await setTimeout(100);
    expect(await codeOf(putIfAbsent('racing', 'fast'))).toBe('ConditionalRequestConflict 409');
    slow.end('ow');
    expect(await slowAnswer).toBe(403);
    expect(await codeOf(putIfAbsent('racing', 'fast'))).toBe('ok');
  });

  it('enforces the multipart rules: EntityTooSmall, InvalidPart, NoSuchUpload after an abort', async () => {
    const start = async () => (await client().send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'big' }))).UploadId!;
    const part = async (uploadId: string, partNumber: number, bytes: number) =>
      (await client().send(new UploadPartCommand({ Bucket: bucket, Key: 'big', UploadId: uploadId, PartNumber: partNumber, Body: Buffer.alloc(bytes, partNumber) }))).ETag!;
    const complete = (uploadId: string, parts: Array<{ ETag: string; PartNumber: number }>) =>
      client().send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'big', UploadId: uploadId, MultipartUpload: { Parts: parts } }));

    const small = await start();
    const smallParts = [
      { ETag: await part(small, 1, MIB), PartNumber: 1 },
      { ETag: await part(small, 2, MIB), PartNumber: 2 },
    ];
    expect(await codeOf(complete(small, smallParts))).toBe('EntityTooSmall 400');
    expect(await codeOf(complete(small, [{ ETag: '"00000000000000000000000000000000"', PartNumber: 1 }]))).toBe('InvalidPart 400');
    expect(await codeOf(complete(small, [...smallParts].reverse()))).toBe('InvalidPartOrder 400');

    const good = await start();
    const goodParts = [
      { ETag: await part(good, 1, 5 * MIB), PartNumber: 1 },
      { ETag: await part(good, 2, 10), PartNumber: 2 },
    ];
    expect((await complete(good, goodParts)).ETag).toMatch(/^"[0-9a-f]{32}-2"$/);
    expect(server.object(bucket, 'big')!.body.length).toBe(5 * MIB + 10);

    expect((await client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads?.map((u) => u.UploadId)).toEqual([small]);
    await client().send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'big', UploadId: small }));
    expect((await client().send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).toEqual([]);
    expect(await codeOf(part(small, 3, 10))).toBe('NoSuchUpload 404');
  });

  it('answers injected faults with S3 error bodies', async () => {
    server.inject({ operation: 'PutObject', times: 1, fault: { kind: 'error', status: 503, code: 'SlowDown' } });
    const error = await client()
      .send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' }))
      .catch((e: unknown) => e as S3ServiceException);
    expect(error).toMatchObject({ name: 'SlowDown', $metadata: { httpStatusCode: 503 } });
    expect((error as S3ServiceException).$metadata.requestId).toMatch(/^[0-9A-F]{16}$/);
    expect(await codeOf(client().send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' })))).toBe('ok');
  });
});
