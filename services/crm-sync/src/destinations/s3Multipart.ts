import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  type CreateMultipartUploadCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { ErrorCode, GatewayError, type Logger } from '@gateway/common';
import { piecesOf } from './streaming.js';
import type { ArtifactContent } from './types.js';
import { md5Base64, type S3Call } from './s3Requests.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** S3's limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 of them, objects up to 5 TiB, PutObject up to 5 GiB. */
export const MIN_PART_BYTES = 5 * MIB;
export const MAX_PART_BYTES = 5 * GIB;
const MAX_PARTS = 10_000;
const MAX_OBJECT_BYTES = 5 * 1024 * GIB;
export const MAX_PUT_OBJECT_BYTES = 5 * GIB;

/** What a multipart upload needs of its destination. */
export interface MultipartTarget {
  client: S3Client;
  bucket: string;
  call: S3Call;
  log: Logger;
  /** The part size wanted; grown for a file that would need more than 10,000 parts. */
  partSizeBytes: number;
  /** Parts in flight at once. */
  partConcurrency: number;
  /** Fails (and removes the object) when S3 did not encrypt it as configured. */
  confirmEncryption(key: string, serverSideEncryption: string | undefined): Promise<void>;
}

/**
 * Multipart upload from the stream, parts in parallel: each part is cut from the stream when a
 * worker is free for it and held only until S3 takes it, so memory stays at partConcurrency
 * parts whatever the file's size. Anything that still fails after retries, or a stream that
 * fails its integrity check, aborts the upload: no object is made of what was sent.
 */
export async function putMultipart(
  target: MultipartTarget,
  key: string,
  source: Pick<ArtifactContent, 'size' | 'chunks'>,
  params: Omit<CreateMultipartUploadCommandInput, 'Key'>,
  context: Record<string, unknown>,
): Promise<void> {
  const { client, bucket, call } = target;
  if (source.size > MAX_OBJECT_BYTES) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the file is larger than an S3 object can be (5 TiB)');
  const partSize = partSizeFor(source.size, target.partSizeBytes);
  const count = Math.ceil(source.size / partSize);
  const created = await call('CreateMultipartUpload', () => client.send(new CreateMultipartUploadCommand({ ...params, Key: key })), context);
  const uploadId = created.UploadId;
  if (!uploadId) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'S3 CreateMultipartUpload answered without an upload id');
  const pieces = piecesOf(source.chunks, partSize);
  const etags: string[] = [];
  try {
    let requested = 0;
    let failed = false;
    const uploadParts = async () => {
      while (!failed) {
        // Numbered when asked for: the stream hands out pieces in the order they are asked.
        const partNumber = ++requested;
        const step = await pieces.next().catch((error: unknown) => {
          failed = true;
          throw error;
        });
        if (step.done) return;
        const part = step.value;
        try {
          if (partNumber > count) throw new GatewayError(ErrorCode.INTERNAL, 'the artifact is larger than it was stored as');
          const result = await call(
            'UploadPart',
            () => client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: part, ContentMD5: md5Base64(part) })),
            { ...context, partNumber },
          );
          if (!result.ETag) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'S3 UploadPart answered without an ETag');
          etags[partNumber - 1] = result.ETag;
        } catch (error) {
          failed = true;
          throw error;
        }
      }
    };
    // Every worker settles before an abort, so no part lands after it.
    const results = await Promise.allSettled(Array.from({ length: Math.min(target.partConcurrency, count) }, uploadParts));
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (rejected) throw rejected.reason;
    if (etags.length !== count || etags.some((etag) => !etag)) throw new GatewayError(ErrorCode.INTERNAL, 'the artifact is not the size it was stored as');
    const completed = await call(
      'CompleteMultipartUpload',
      () => client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) } })),
      context,
    );
    await target.confirmEncryption(key, completed.ServerSideEncryption);
  } catch (error) {
    await call('AbortMultipartUpload', () => client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })), context).catch((abortError: unknown) => {
      // A bucket lifecycle rule (AbortIncompleteMultipartUpload) removes what is left.
      target.log.warn({ ...context, reason: GatewayError.from(abortError).message }, 'could not abort a failed multipart upload');
    });
    throw error;
  } finally {
    await pieces.return(undefined);
  }
}

/** Parts of the configured size, grown (in whole MiB) so that no file needs more than 10,000. */
export function partSizeFor(sizeBytes: number, configuredBytes: number): number {
  const smallest = Math.ceil(sizeBytes / MAX_PARTS / MIB) * MIB;
  return Math.min(MAX_PART_BYTES, Math.max(configuredBytes, smallest, MIN_PART_BYTES));
}
