import { createHash } from 'node:crypto';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, type HeadObjectCommandOutput, type PutObjectCommandInput } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { ErrorCode, GatewayError, type Logger } from '@gateway/common';
import { collect } from './streaming.js';
import type { ArtifactContent, Delivery, Destination, DestinationDeps } from './types.js';
import { isSecureOrLocalUrl } from './urls.js';
import { MAX_PART_BYTES, MAX_PUT_OBJECT_BYTES, MIN_PART_BYTES, putMultipart, type MultipartTarget } from './s3Multipart.js';
import { md5Base64, sendWithRetries, statusOf, type S3Call } from './s3Requests.js';

const MIB = 1024 * 1024;

export const s3ConfigSchema = z.object({
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name'),
  region: z.string().regex(/^[a-z0-9-]{1,40}$/, 'a region such as eu-west-1'),
  /**
   * An S3-compatible server instead of AWS (path-style addressing then); https, or http only to a
   * server on this host (a test server, or a gateway beside crm-sync): credentials and recordings
   * never cross a network unencrypted.
   */
  endpoint: z
    .url({ protocol: /^https?$/ })
    .refine(isSecureOrLocalUrl, 'must be https (http only for a server on the same host)')
    .optional(),
  /** Key prefix: empty, or folders ending with "/", in S3's safe characters. */
  prefix: z
    .string()
    .max(512)
    .regex(/^([A-Za-z0-9!_.*'()-]+\/)*$/, "folders of letters, digits and !_.*'()- each ending with /")
    .refine((value) => !value.split('/').some((folder) => folder === '.' || folder === '..'), 'no . or .. folders')
    .default('gateway/'),
  /** SSE-KMS with this key (id, alias or ARN); the bucket's default encryption otherwise. */
  kmsKeyId: z.string().min(1).max(2048).optional(),
  storageClass: z.enum(['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE', 'REDUCED_REDUNDANCY']).optional(),
  /** Larger files go up in parts (multipart upload). */
  multipartThresholdBytes: z
    .number()
    .int()
    .min(MIN_PART_BYTES)
    .max(MAX_PUT_OBJECT_BYTES)
    .default(16 * MIB),
  /** Grown when a file would need more than 10,000 parts. */
  partSizeBytes: z
    .number()
    .int()
    .min(MIN_PART_BYTES)
    .max(MAX_PART_BYTES)
    .default(8 * MIB),
  /** Attempts of each request on 5xx (503 SlowDown), timeouts and dropped connections. */
  maxAttempts: z.number().int().min(1).max(10).default(4),
});
export const s3SecretsSchema = z.object({
  accessKeyId: z.string().min(1).max(128),
  secretAccessKey: z.string().min(1).max(256),
  sessionToken: z.string().min(1).optional(),
});

export type S3Config = z.infer<typeof s3ConfigSchema>;
export type S3Secrets = z.infer<typeof s3SecretsSchema>;

/** Operator settings, not the tenant's: timings of retries and timeouts, parts in flight. */
export interface S3Tuning {
  retryBaseMs: number;
  retryMaxMs: number;
  connectTimeoutMs: number;
  /** A request (with its upload) not answered in this time fails as a timeout and is retried. */
  requestTimeoutMs: number;
  partConcurrency: number;
  /**
   * The most one object or part may hold in memory: a larger single-request threshold or part
   * size set by the tenant is lowered to it (a part is held until S3 takes it, for retries), so
   * an upload holds at most partConcurrency + 1 parts of this, whatever the file.
   */
  maxBufferBytes: number;
}

const defaultTuning: S3Tuning = { retryBaseMs: 250, retryMaxMs: 5_000, connectTimeoutMs: 10_000, requestTimeoutMs: 120_000, partConcurrency: 4, maxBufferBytes: 16 * MIB };

/** What is written as one object: its bytes as a stream, with their size and SHA-256 known before. */
type ObjectSource = Pick<ArtifactContent, 'size' | 'sha256' | 'chunks'>;

function sourceOf(body: Buffer): ObjectSource {
  return {
    size: body.length,
    sha256: sha256Hex(body),
    chunks: (async function* () {
      yield body;
    })(),
  };
}

const extensions: Record<string, string> = {
  'application/json': 'json',
  'application/pdf': 'pdf',
  'text/plain': 'txt',
  'text/vtt': 'vtt',
  'audio/mpeg': 'mp3',
  'audio/webm': 'webm',
  'audio/ogg': 'ogg',
  'audio/opus': 'opus',
  'audio/mp4': 'm4a',
  'audio/wav': 'wav',
  'video/webm': 'webm',
  'video/mp4': 'mp4',
  'video/x-matroska': 'mkv',
  'image/jpeg': 'jpg',
  'image/png': 'png',
  'image/webp': 'webp',
};

const ID = /^[A-Za-z0-9_-]{1,128}$/;

/** What every object is written with, by PutObject or CreateMultipartUpload. */
type ObjectParams = Pick<PutObjectCommandInput, 'Bucket' | 'ContentType' | 'Metadata' | 'Tagging' | 'StorageClass' | 'ServerSideEncryption' | 'SSEKMSKeyId' | 'SSEKMSEncryptionContext'>;

/** What a delivery's manifest lists of each artifact. */
interface ManifestEntry {
  artifactId: string;
  kind: string;
  contentType: string;
  sizeBytes: number;
  part: number;
  /** The object's name beside the manifest. */
  object: string;
  sha256: string;
}

/**
 * A customer's S3 bucket (or an S3-compatible server). Each delivery becomes
 * `<prefix><tenant>/<kind>/<deliveryId>/<artifactId>.<ext>` per artifact, then a
 * `manifest.json` beside them, written last: a manifest means a complete delivery. Objects are
 * tagged with kind, tenant and delivery id (ids only) and carry their SHA-256 in
 * `x-amz-meta-sha256`, so a redelivery skips what is already there. Large files go up in parts;
 * a part that keeps failing aborts the upload so no parts are left behind.
 */
export class S3Destination implements Destination {
  private readonly client: S3Client;
  private readonly tuning: S3Tuning;
  private readonly log: Logger;
  /** One request with the retry policy (s3Requests.ts). */
  private readonly call: S3Call;
  private readonly multipart: MultipartTarget;
  private headForbiddenLogged = false;

  constructor(
    private readonly config: S3Config,
    secrets: S3Secrets,
    deps: Pick<DestinationDeps, 'log'> & Partial<Pick<DestinationDeps, 'connections'>>,
    tuning: Partial<S3Tuning> = {},
  ) {
    this.tuning = { ...defaultTuning, ...tuning };
    this.log = deps.log;
    // Connections through agents that resolve once and check the address they connect to.
    const agents = deps.connections ? { httpAgent: deps.connections.httpAgent, httpsAgent: deps.connections.httpsAgent } : {};
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.endpoint !== undefined,
      credentials: { accessKeyId: secrets.accessKeyId, secretAccessKey: secrets.secretAccessKey, sessionToken: secrets.sessionToken },
      // Retries are ours (below), so that parts, backoff and the final error are one policy.
      maxAttempts: 1,
      // Content-MD5 is sent instead of the newer flexible checksums, which S3-compatible servers often lack.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: this.tuning.connectTimeoutMs, requestTimeout: this.tuning.requestTimeoutMs, throwOnRequestTimeout: true, ...agents },
    });
    const retries = { maxAttempts: config.maxAttempts, retryBaseMs: this.tuning.retryBaseMs, retryMaxMs: this.tuning.retryMaxMs, log: this.log };
    this.call = (operation, send, context) => sendWithRetries(operation, send, context, retries);
    this.multipart = {
      client: this.client,
      bucket: config.bucket,
      call: this.call,
      log: this.log,
      partSizeBytes: Math.min(config.partSizeBytes, this.tuning.maxBufferBytes),
      partConcurrency: this.tuning.partConcurrency,
      confirmEncryption: (key, serverSideEncryption) => this.checkEncryption(key, serverSideEncryption),
    };
  }

  /**
   * Writes a small probe object exactly as deliveries are written (tags, encryption), which
   * proves the credentials, the bucket, s3:PutObject, s3:PutObjectTagging and, with SSE-KMS, the
   * key's permissions; then removes it if the policy allows deletes (write-only policies are fine).
   */
  async test(): Promise<void> {
    const key = `${this.config.prefix}.gateway-connection-test`;
    const body = Buffer.from('gateway connection test\n');
    await this.putObject(key, body, this.objectParams({ kind: 'connection-test' }, 'text/plain', sha256Hex(body)), { operation: 'test' });
    await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key })).catch(() => undefined);
  }

  async deliver(delivery: Delivery): Promise<void> {
    for (const [what, id] of [['delivery id', delivery.deliveryId], ['tenant', delivery.tenant], ...delivery.artifacts.map((a) => ['artifact id', a.artifactId])] as const) {
      if (!ID.test(id)) throw new GatewayError(ErrorCode.BAD_REQUEST, `${what} cannot name an S3 object`);
    }
    const folder = `${this.config.prefix}${delivery.tenant}/${delivery.kind}/${delivery.deliveryId}/`;
    const context = { deliveryId: delivery.deliveryId, kind: delivery.kind };
    // The manifest is written last: if it is there, everything is. Asked only when this is not
    // the event's first attempt (an earlier one may have written everything): a first attempt
    // writes each object on the condition that its key is free, which answers the same question
    // without a request of its own.
    const retried = (delivery.attempt ?? 2) > 1;
    if (retried && (await this.head(`${folder}manifest.json`, context))) {
      this.log.debug(context, 'already in S3; nothing to write');
      return;
    }
    const tags = { kind: delivery.kind, tenant: delivery.tenant, deliveryId: delivery.deliveryId };
    const encryptionContext = { tenant: delivery.tenant, deliveryId: delivery.deliveryId };
    const entries: ManifestEntry[] = [];
    let written = 0;
    // One artifact at a time, streamed: its size and SHA-256 come with it (recorded when it was
    // stored), so an object already there is skipped without reading a byte.
    for (const artifact of delivery.artifacts) {
      const content = await artifact.open();
      const object = `${artifact.artifactId}.${extensions[artifact.contentType.split(';')[0]!.trim().toLowerCase()] ?? 'bin'}`;
      if (await this.write(`${folder}${object}`, content, this.objectParams(tags, artifact.contentType, content.sha256, encryptionContext), { ...context, artifactId: artifact.artifactId })) written++;
      entries.push({ artifactId: artifact.artifactId, kind: artifact.kind, contentType: artifact.contentType, sizeBytes: content.size, part: artifact.part, object, sha256: content.sha256 });
    }
    const manifest = Buffer.from(
      JSON.stringify(
        {
          version: 1,
          deliveryId: delivery.deliveryId,
          kind: delivery.kind,
          tenant: delivery.tenant,
          room: delivery.room,
          startedAt: new Date(delivery.startedAtMs).toISOString(),
          endedAt: new Date(delivery.endedAtMs).toISOString(),
          contacts: delivery.contacts,
          metadata: delivery.metadata,
          artifacts: entries,
        },
        null,
        2,
      ),
    );
    // Asked for when a retry began and not there: written without asking again. Otherwise on
    // the condition that its key is free; taken means an earlier write of this delivery completed.
    const manifestKey = `${folder}manifest.json`;
    const manifestParams = this.objectParams(tags, 'application/json', sha256Hex(manifest), encryptionContext);
    if (retried) await this.write(manifestKey, sourceOf(manifest), manifestParams, context, { knownAbsent: true });
    else if (!(await this.putObject(manifestKey, manifest, manifestParams, context, { ifAbsent: true }))) this.log.debug(context, 'manifest already in S3');
    this.log.debug({ ...context, objects: entries.length, written }, 'delivered to S3');
  }

  /** The settings every object is written with. */
  private objectParams(tags: Record<string, string>, contentType: string, sha256: string, encryptionContext: Record<string, string> = tags): ObjectParams {
    return {
      Bucket: this.config.bucket,
      ContentType: contentType,
      Metadata: { sha256 },
      Tagging: new URLSearchParams(tags).toString(),
      StorageClass: this.config.storageClass,
      ...(this.config.kmsKeyId
        ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: this.config.kmsKeyId, SSEKMSEncryptionContext: Buffer.from(JSON.stringify(encryptionContext)).toString('base64') }
        : {}),
    };
  }

  /**
   * Writes an object unless the same bytes are already there (same size and SHA-256, encrypted
   * as configured; `knownAbsent`: it was not there a moment ago, so that is not asked). A
   * single-request object is written on the condition that its key is free (`If-None-Match: *`):
   * only when it is taken is the object there looked at, and rewritten if it differs. A multipart
   * upload looks first. Returns whether it wrote.
   */
  private async write(key: string, source: ObjectSource, params: ObjectParams, context: Record<string, unknown>, { knownAbsent = false } = {}): Promise<boolean> {
    const threshold = Math.min(this.config.multipartThresholdBytes, this.tuning.maxBufferBytes);
    if (source.size <= threshold) {
      const body = await collect(source.chunks);
      if (await this.putObject(key, body, params, context, { ifAbsent: !knownAbsent })) return true;
      if (this.same(await this.head(key, context), source.size, params)) return false;
      await this.putObject(key, body, params, context);
      return true;
    }
    if (!knownAbsent && this.same(await this.head(key, context), source.size, params)) return false;
    await putMultipart(this.multipart, key, source, params, context);
    return true;
  }

  /** Whether the object there holds these bytes, encrypted as configured. */
  private same(existing: HeadObjectCommandOutput | undefined, size: number, params: ObjectParams): boolean {
    return !!existing && existing.ContentLength === size && existing.Metadata?.sha256 === params.Metadata?.sha256 && (!this.config.kmsKeyId || existing.ServerSideEncryption === 'aws:kms');
  }

  /**
   * `ifAbsent`: only if the key is free; returns false when it is taken (412 PreconditionFailed).
   * A 409 ConditionalRequestConflict (another write to the key under way) is tried again.
   */
  private async putObject(key: string, body: Buffer, params: ObjectParams, context: Record<string, unknown>, { ifAbsent = false } = {}): Promise<boolean> {
    const result = await this.call(
      'PutObject',
      async () => {
        try {
          return await this.client.send(new PutObjectCommand({ ...params, Key: key, Body: body, ContentMD5: md5Base64(body), ...(ifAbsent ? { IfNoneMatch: '*' } : {}) }));
        } catch (error) {
          if (ifAbsent && statusOf(error) === 412) return undefined;
          throw error;
        }
      },
      context,
    );
    if (!result) return false;
    await this.checkEncryption(key, result.ServerSideEncryption);
    return true;
  }

  /** With SSE-KMS configured, an object the server did not confirm as encrypted is removed, and the delivery fails. */
  private async checkEncryption(key: string, serverSideEncryption: string | undefined): Promise<void> {
    if (!this.config.kmsKeyId || serverSideEncryption === 'aws:kms' || serverSideEncryption === 'aws:kms:dsse') return;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key })).catch(() => undefined);
    throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the S3 server did not confirm SSE-KMS encryption');
  }

  /**
   * The object's headers, or undefined when there is none. A 403 (a write-only policy without
   * s3:GetObject or s3:ListBucket) is taken as "unknown": the write goes ahead, and keys are fixed
   * by delivery and artifact id, so a redelivery rewrites the same objects and adds none.
   */
  private async head(key: string, context: Record<string, unknown>): Promise<HeadObjectCommandOutput | undefined> {
    return this.call(
      'HeadObject',
      async () => {
        try {
          return await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: key }));
        } catch (error) {
          const status = statusOf(error);
          if (status === 404) return undefined;
          if (status === 403) {
            if (!this.headForbiddenLogged) this.log.warn(context, 'S3 HeadObject is forbidden; writing without the duplicate check (grant s3:GetObject and s3:ListBucket)');
            this.headForbiddenLogged = true;
            return undefined;
          }
          throw error;
        }
      },
      context,
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
