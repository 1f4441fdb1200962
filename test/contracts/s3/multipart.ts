import { createHash, randomBytes } from 'node:crypto';
import { encryptionHeaders, etagOf, MAX_PUT_BYTES, MIB, type ObjectSettings, objectSettings, type StoredObject } from './objects.js';
import type { S3Answer, S3Request } from './request.js';
import { escape, malformedXml, S3Error, unescape, xmlAnswer } from './xml.js';

/**
 * Multipart uploads as S3 runs them: part numbers 1-10,000, parts of at least 5 MiB except the
 * last (EntityTooSmall), listed ETags must match (InvalidPart) in ascending order
 * (InvalidPartOrder), NoSuchUpload after an abort or completion, the `<md5 of md5s>-N` ETag.
 */

/** S3's smallest part, except the last one. */
const MIN_PART_BYTES = 5 * MIB;
const MAX_PARTS = 10_000;

interface PendingUpload extends ObjectSettings {
  uploadId: string;
  bucket: string;
  key: string;
  initiated: Date;
  parts: Map<number, { body: Buffer; etag: string; size: number }>;
}

export class MultipartUploads {
  private readonly uploads = new Map<string, PendingUpload>();

  /** @param kept the bytes to store of a part or object (empty past the server's `keepBodiesUpTo`). */
  constructor(private readonly kept: (body: Buffer) => Buffer) {}

  /** Uploads started and neither completed nor aborted. */
  pending(bucket: string): Array<{ key: string; uploadId: string; parts: number }> {
    return [...this.uploads.values()].filter((u) => u.bucket === bucket).map((u) => ({ key: u.key, uploadId: u.uploadId, parts: u.parts.size }));
  }

  list(request: S3Request): S3Answer {
    const uploads = [...this.uploads.values()]
      .filter((u) => u.bucket === request.bucket && u.key.startsWith(request.params.get('prefix') ?? ''))
      .map((u) => `<Upload><Key>${escape(u.key)}</Key><UploadId>${u.uploadId}</UploadId><StorageClass>${u.storageClass}</StorageClass><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`);
    return xmlAnswer(
      `<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${request.bucket}</Bucket><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${uploads.join('')}</ListMultipartUploadsResult>`,
    );
  }

  create(request: S3Request): S3Answer {
    const key = request.key ?? '';
    const uploadId = randomBytes(24).toString('base64url');
    const upload: PendingUpload = { ...objectSettings(request), uploadId, bucket: request.bucket!, key, initiated: new Date(), parts: new Map() };
    this.uploads.set(uploadId, upload);
    return xmlAnswer(
      `<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${request.bucket}</Bucket><Key>${escape(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`,
      encryptionHeaders(upload),
    );
  }

  uploadPart(request: S3Request): S3Answer {
    const upload = this.upload(request);
    const partNumber = Number(request.params.get('partNumber'));
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) throw new S3Error(400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive');
    if (request.body.length > MAX_PUT_BYTES) throw new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
    const etag = etagOf(request.body);
    upload.parts.set(partNumber, { body: this.kept(request.body), etag, size: request.body.length });
    return { status: 200, headers: { etag, ...encryptionHeaders(upload) } };
  }

  /** Joins the listed parts into an object of `objects`; `location` is the object's URL. */
  complete(request: S3Request, objects: Map<string, StoredObject>, location: string): S3Answer {
    const upload = this.upload(request);
    const key = request.key ?? '';
    const body = request.body.toString('utf8');
    if (!/^\s*(<\?xml[^>]*\?>\s*)?<CompleteMultipartUpload[\s>]/.test(body)) throw malformedXml();
    const listed = [...body.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
      partNumber: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1]!)?.[1]),
      etag: unescape(/<ETag>([^<]*)<\/ETag>/.exec(m[1]!)?.[1] ?? ''),
    }));
    if (listed.length === 0) throw malformedXml();
    for (const [index, part] of listed.entries()) {
      if (index > 0 && part.partNumber <= listed[index - 1]!.partNumber)
        throw new S3Error(400, 'InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.');
    }
    const bodies: Buffer[] = [];
    for (const [index, part] of listed.entries()) {
      const stored = upload.parts.get(part.partNumber);
      if (!stored || normalizeEtag(stored.etag) !== normalizeEtag(part.etag)) {
        throw new S3Error(
          400,
          'InvalidPart',
          "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
        );
      }
      if (index < listed.length - 1 && stored.size < MIN_PART_BYTES) throw new S3Error(400, 'EntityTooSmall', 'Your proposed upload is smaller than the minimum allowed object size.');
      bodies.push(stored.body);
    }
    const combined = createHash('md5');
    for (const part of listed) combined.update(Buffer.from(normalizeEtag(upload.parts.get(part.partNumber)!.etag), 'hex'));
    const { uploadId: _u, bucket: _b, key: _k, initiated: _i, parts: _p, ...settings } = upload;
    const size = listed.reduce((sum, part) => sum + upload.parts.get(part.partNumber)!.size, 0);
    const object: StoredObject = { ...settings, body: this.kept(Buffer.concat(bodies)), size, etag: `"${combined.digest('hex')}-${listed.length}"`, lastModified: new Date() };
    objects.set(key, object);
    this.uploads.delete(upload.uploadId);
    return xmlAnswer(
      `<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>${escape(location)}</Location><Bucket>${request.bucket}</Bucket><Key>${escape(key)}</Key><ETag>${escape(object.etag)}</ETag></CompleteMultipartUploadResult>`,
      encryptionHeaders(object),
    );
  }

  abort(request: S3Request): S3Answer {
    this.uploads.delete(this.upload(request).uploadId);
    return { status: 204, headers: {} };
  }

  private upload(request: S3Request): PendingUpload {
    const upload = this.uploads.get(request.params.get('uploadId') ?? '');
    if (!upload || upload.bucket !== request.bucket || upload.key !== request.key) {
      throw new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.');
    }
    return upload;
  }
}

function normalizeEtag(etag: string): string {
  return etag.replace(/"/g, '');
}
