import { createHash } from 'node:crypto';
import { header, parseQuery, type S3Request } from './request.js';
import { S3Error } from './xml.js';

/** What S3 keeps of an object, and what it takes from the headers of PutObject and CreateMultipartUpload. */

export const MIB = 1024 * 1024;
/** The largest PutObject, and the largest part. */
export const MAX_PUT_BYTES = 5 * 1024 * MIB;
const STORAGE_CLASSES = new Set(['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'DEEP_ARCHIVE', 'GLACIER_IR']);

export interface StoredObject {
  /** The bytes; empty when they were over `keepBodiesUpTo` (the size stays). */
  body: Buffer;
  size: number;
  etag: string;
  lastModified: Date;
  contentType: string;
  metadata: Record<string, string>;
  tags: Array<[string, string]>;
  storageClass: string;
  serverSideEncryption?: string;
  kmsKeyId?: string;
  /** The encryption context as sent (base64 JSON). */
  encryptionContext?: string;
}

/** What an object takes from the request that creates it. */
export type ObjectSettings = Omit<StoredObject, 'body' | 'size' | 'etag' | 'lastModified'>;

export function objectSettings(request: S3Request): ObjectSettings {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.startsWith('x-amz-meta-') && typeof value === 'string') metadata[name.slice('x-amz-meta-'.length)] = value;
  }
  const storageClass = header(request, 'x-amz-storage-class') ?? 'STANDARD';
  if (!STORAGE_CLASSES.has(storageClass)) throw new S3Error(400, 'InvalidStorageClass', 'The storage class you specified is not valid');
  const tagging = header(request, 'x-amz-tagging');
  const tags = tagging === undefined ? [] : validTags(parseQuery(tagging));
  const sse = header(request, 'x-amz-server-side-encryption');
  const kmsKeyId = header(request, 'x-amz-server-side-encryption-aws-kms-key-id');
  const context = header(request, 'x-amz-server-side-encryption-context');
  if (sse !== undefined && sse !== 'AES256' && sse !== 'aws:kms' && sse !== 'aws:kms:dsse') throw new S3Error(400, 'InvalidArgument', 'The encryption method specified is not supported');
  if ((kmsKeyId !== undefined || context !== undefined) && !sse?.startsWith('aws:kms')) {
    throw new S3Error(400, 'InvalidArgument', 'Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms');
  }
  if (context !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(context, 'base64').toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
      throw new S3Error(400, 'InvalidArgument', 'The header x-amz-server-side-encryption-context must be base64-encoded UTF-8 JSON of string key-value pairs.');
    }
  }
  return {
    contentType: header(request, 'content-type') ?? 'binary/octet-stream',
    metadata,
    tags,
    storageClass,
    serverSideEncryption: sse,
    kmsKeyId: sse?.startsWith('aws:kms') ? (kmsKeyId ?? 'arn:aws:kms:eu-west-1:000000000000:alias/aws/s3') : undefined,
    encryptionContext: context,
  };
}

/** The SSE headers S3 echoes on writes and reads. */
export function encryptionHeaders(object: Pick<StoredObject, 'serverSideEncryption' | 'kmsKeyId' | 'encryptionContext'>): Record<string, string> {
  const headers: Record<string, string> = {};
  if (object.serverSideEncryption) headers['x-amz-server-side-encryption'] = object.serverSideEncryption;
  if (object.kmsKeyId) headers['x-amz-server-side-encryption-aws-kms-key-id'] = object.kmsKeyId;
  if (object.encryptionContext) headers['x-amz-server-side-encryption-context'] = object.encryptionContext;
  return headers;
}

/** S3's limits on object tags: at most 10, keys up to 128 characters, values up to 256, keys unique. */
export function validTags(tags: Array<[string, string]>): Array<[string, string]> {
  const keys = new Set(tags.map(([k]) => k));
  if (tags.length > 10 || keys.size !== tags.length || tags.some(([k, v]) => k.length === 0 || k.length > 128 || v.length > 256)) {
    throw new S3Error(400, 'InvalidTag', 'The tag provided was not a valid tag.');
  }
  return tags;
}

/** The ETag of a single-part object or of a part, quoted as S3 sends it. */
export function etagOf(data: Buffer): string {
  return `"${createHash('md5').update(data).digest('hex')}"`;
}
