import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { type LocalServer, readBody, serveLocally } from '../http.js';
import { authenticate, type S3Credential } from './authenticate.js';
import { MultipartUploads } from './multipart.js';
import { encryptionHeaders, etagOf, MAX_PUT_BYTES, objectSettings, type StoredObject, validTags } from './objects.js';
import { header, type S3Answer, type S3Operation, type S3Request, operationOf, parseRequest } from './request.js';
import { errorXml, escape, malformedXml, S3Error, unescape, xmlAnswer } from './xml.js';

/**
 * A contract server for the part of the Amazon S3 REST API that crm-sync's S3 destination uses,
 * kept to what AWS documents: Signature Version 4 checked on every request (credential scope,
 * date, payload hash and signature, computed with the same algorithm), path-style addressing,
 * XML error bodies with Code/Message/RequestId, multipart rules (parts of at least 5 MiB except
 * the last, ETags checked on completion, part numbers 1-10,000), x-amz-tagging and SSE-KMS
 * headers stored and echoed, conditional writes (`If-None-Match: *`). Faults are injected on demand (503 SlowDown, 500, a reset
 * connection, a request that never answers). Why a contract server and not a real one:
 * README.md beside this file. The checks live beside it: authenticate.ts (SigV4, policy,
 * digests), objects.ts (what an object keeps), multipart.ts, xml.ts (bodies and errors).
 */

export type { S3Credential } from './authenticate.js';
export { MIB, type StoredObject } from './objects.js';
export type { S3Operation } from './request.js';

/** A failure to answer with instead of the real result. */
export type Fault =
  | { kind: 'error'; status: number; code: string; message?: string }
  /** The TCP connection is destroyed after the request was read (ECONNRESET at the client). */
  | { kind: 'reset' }
  /** The request is read and never answered (the client's timeout fires). */
  | { kind: 'hang' };

export const faults = {
  slowDown: { kind: 'error', status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' },
  internalError: { kind: 'error', status: 500, code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
  reset: { kind: 'reset' },
  hang: { kind: 'hang' },
} as const satisfies Record<string, Fault>;

export interface FaultRule {
  operation: S3Operation;
  /** Only this part (UploadPart). */
  partNumber?: number;
  /** Only keys that match. */
  key?: RegExp;
  /** How many matching requests fail; the default is every one. */
  times?: number;
  fault: Fault;
}

/** One request as the server saw it, for tests to count. */
export interface RequestRecord {
  operation: S3Operation | 'Unknown';
  bucket?: string;
  key?: string;
  partNumber?: number;
  status: number;
  /** The S3 error code of a failed request. */
  code?: string;
  faulted: boolean;
}

export interface S3ContractServerOptions {
  region?: string;
  /** Bodies larger than this are checked (signature, digests) and then dropped, keeping their size: for benchmarks of gigabytes. */
  keepBodiesUpTo?: number;
  buckets?: string[];
  credentials?: S3Credential[];
}

export class S3ContractServer {
  readonly region: string;
  readonly requests: RequestRecord[] = [];
  private readonly buckets = new Map<string, Map<string, StoredObject>>();
  private readonly uploads = new MultipartUploads((body) => this.kept(body));
  private readonly credentials: Map<string, S3Credential>;
  private readonly rules: Array<FaultRule & { remaining: number }> = [];
  private readonly keepBodiesUpTo: number;
  /** PUTs whose body is still arriving, by path: a conditional write that overlaps another write to its key is a conflict. */
  private readonly writing = new Map<string, number>();

  private constructor(
    private readonly server: LocalServer,
    options: S3ContractServerOptions,
  ) {
    this.region = options.region ?? 'eu-west-1';
    this.keepBodiesUpTo = options.keepBodiesUpTo ?? Number.POSITIVE_INFINITY;
    for (const bucket of options.buckets ?? ['gateway-test']) this.buckets.set(bucket, new Map());
    this.credentials = new Map((options.credentials ?? [S3ContractServer.defaultCredential]).map((c) => [c.accessKeyId, c]));
  }

  static readonly defaultCredential: S3Credential = { accessKeyId: 'AKIAGATEWAYTEST00001', secretAccessKey: 'gateway/test/secret/key/0000000000000000' };

  static async start(options: S3ContractServerOptions = {}): Promise<S3ContractServer> {
    let contract: S3ContractServer | undefined;
    // A client that drops its request midway (its body cut short) gets its connection closed, as S3 does.
    const local = await serveLocally((req, res) => contract!.handle(req, res));
    contract = new S3ContractServer(local, options);
    return contract;
  }

  get port(): number {
    return this.server.port;
  }

  /** TCP connections accepted so far. */
  get connections(): number {
    return this.server.connections;
  }

  get url(): string {
    return this.server.url;
  }

  /** Makes matching requests fail; rules are tried in the order they were added. */
  inject(rule: FaultRule): void {
    this.rules.push({ ...rule, remaining: rule.times ?? Number.POSITIVE_INFINITY });
  }

  clearFaults(): void {
    this.rules.length = 0;
  }

  /** What is stored under a key, as S3 would hold it. */
  object(bucket: string, key: string): StoredObject | undefined {
    return this.buckets.get(bucket)?.get(key);
  }

  keys(bucket: string, prefix = ''): string[] {
    return [...(this.buckets.get(bucket)?.keys() ?? [])].filter((k) => k.startsWith(prefix)).sort();
  }

  /** Multipart uploads started and neither completed nor aborted. */
  pendingUploads(bucket: string): Array<{ key: string; uploadId: string; parts: number }> {
    return this.uploads.pending(bucket);
  }

  count(operation: S3Operation, filter: (r: RequestRecord) => boolean = () => true): number {
    return this.requests.filter((r) => r.operation === operation && filter(r)).length;
  }

  async close(): Promise<void> {
    await this.server.close();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const path = req.method === 'PUT' ? (req.url ?? '').split('?')[0]! : undefined;
    if (path !== undefined) this.writing.set(path, (this.writing.get(path) ?? 0) + 1);
    let body: Buffer;
    try {
      body = await readBody(req);
    } finally {
      if (path !== undefined) this.release(path);
    }
    // Still counted as writing while it is checked: the answer below is synchronous.
    if (path !== undefined) this.writing.set(path, (this.writing.get(path) ?? 0) + 1);
    try {
      await this.answer(req, res, requestId, body, path);
    } finally {
      if (path !== undefined) this.release(path);
    }
  }

  private release(path: string): void {
    const left = (this.writing.get(path) ?? 1) - 1;
    if (left > 0) this.writing.set(path, left);
    else this.writing.delete(path);
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse, requestId: string, body: Buffer, path: string | undefined): Promise<void> {
    const request = parseRequest(req, body);
    const operation = operationOf(request);
    const partNumber = request.params.has('partNumber') ? Number(request.params.get('partNumber')) : undefined;
    const record: RequestRecord = { operation, bucket: request.bucket, key: request.key, partNumber, status: 200, faulted: false };
    this.requests.push(record);
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', randomBytes(24).toString('base64'));
    try {
      if (operation === 'Unknown') throw new S3Error(501, 'NotImplemented', 'A header or query you provided implies functionality that is not implemented.');
      authenticate(request, operation, this.region, this.credentials);
      const rule = this.rules.find(
        (r) => r.remaining > 0 && r.operation === operation && (r.partNumber === undefined || r.partNumber === partNumber) && (r.key === undefined || r.key.test(request.key ?? '')),
      );
      if (rule) {
        rule.remaining--;
        record.faulted = true;
        if (rule.fault.kind === 'reset') {
          record.status = 0;
          req.socket.destroy();
          return;
        }
        if (rule.fault.kind === 'hang') {
          record.status = 0;
          return;
        }
        throw new S3Error(rule.fault.status, rule.fault.code, rule.fault.message ?? rule.fault.code);
      }
      const answer = this.dispatch(operation, request, path !== undefined && (this.writing.get(path) ?? 0) > 1);
      record.status = answer.status;
      res.writeHead(answer.status, answer.headers);
      res.end(request.method === 'HEAD' ? undefined : answer.body);
    } catch (error) {
      const s3 = error instanceof S3Error ? error : new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.');
      record.status = s3.status;
      record.code = s3.code;
      const resource = request.key ? `/${request.bucket}/${request.key}` : `/${request.bucket ?? ''}`;
      const body = errorXml(s3, resource, requestId);
      // A HEAD answer carries the headers a GET would (its length included, so the connection stays open) and no body: clients only see the status.
      res.writeHead(s3.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(request.method === 'HEAD' ? undefined : body);
    }
  }

  private kept(body: Buffer): Buffer {
    return body.length > this.keepBodiesUpTo ? Buffer.alloc(0) : body;
  }

  private bucket(request: S3Request): Map<string, StoredObject> {
    const objects = request.bucket ? this.buckets.get(request.bucket) : undefined;
    if (!objects) throw new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist');
    return objects;
  }

  /** `overlapping`: another write to the same key is under way (see `conditionalWrite`). */
  private dispatch(operation: S3Operation, request: S3Request, overlapping = false): S3Answer {
    const objects = this.bucket(request);
    const key = request.key ?? '';
    switch (operation) {
      case 'HeadBucket':
        return { status: 200, headers: { 'x-amz-bucket-region': this.region } };
      case 'ListObjectsV2': {
        const prefix = request.params.get('prefix') ?? '';
        const contents = this.keys(request.bucket!, prefix).map((k) => {
          const o = objects.get(k)!;
          return `<Contents><Key>${escape(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>${escape(o.etag)}</ETag><Size>${o.size}</Size><StorageClass>${o.storageClass}</StorageClass></Contents>`;
        });
        return xmlAnswer(
          `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${request.bucket}</Name><Prefix>${escape(prefix)}</Prefix><KeyCount>${contents.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${contents.join('')}</ListBucketResult>`,
        );
      }
      case 'ListMultipartUploads':
        return this.uploads.list(request);
      case 'PutObject': {
        if (request.body.length > MAX_PUT_BYTES) throw new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
        conditionalWrite(request, objects.has(key), overlapping);
        const object: StoredObject = { ...objectSettings(request), body: this.kept(request.body), size: request.body.length, etag: etagOf(request.body), lastModified: new Date() };
        objects.set(key, object);
        return { status: 200, headers: { etag: object.etag, ...encryptionHeaders(object) } };
      }
      case 'HeadObject':
      case 'GetObject': {
        const object = objects.get(key);
        if (!object) throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.');
        const headers: Record<string, string> = {
          'content-type': object.contentType,
          'content-length': String(object.size),
          etag: object.etag,
          'last-modified': object.lastModified.toUTCString(),
          ...encryptionHeaders(object),
          ...Object.fromEntries(Object.entries(object.metadata).map(([k, v]) => [`x-amz-meta-${k}`, v])),
        };
        if (object.tags.length > 0) headers['x-amz-tagging-count'] = String(object.tags.length);
        if (object.storageClass !== 'STANDARD') headers['x-amz-storage-class'] = object.storageClass;
        return { status: 200, headers, body: object.body };
      }
      case 'DeleteObject':
        objects.delete(key);
        return { status: 204, headers: {} };
      case 'GetObjectTagging': {
        const object = objects.get(key);
        if (!object) throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.');
        return xmlAnswer(
          `<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>${object.tags.map(([k, v]) => `<Tag><Key>${escape(k)}</Key><Value>${escape(v)}</Value></Tag>`).join('')}</TagSet></Tagging>`,
        );
      }
      case 'PutObjectTagging': {
        const object = objects.get(key);
        if (!object) throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.');
        const body = request.body.toString('utf8');
        if (!/<Tagging[\s>]/.test(body) || !/<TagSet>/.test(body)) throw malformedXml();
        object.tags = validTags([...body.matchAll(/<Tag>\s*<Key>([^<]*)<\/Key>\s*<Value>([^<]*)<\/Value>\s*<\/Tag>/g)].map((m) => [unescape(m[1]!), unescape(m[2]!)]));
        return { status: 200, headers: {} };
      }
      case 'CreateMultipartUpload':
        return this.uploads.create(request);
      case 'UploadPart':
        return this.uploads.uploadPart(request);
      case 'CompleteMultipartUpload':
        return this.uploads.complete(request, objects, `${this.url}/${request.bucket}/${key}`);
      case 'AbortMultipartUpload':
        return this.uploads.abort(request);
    }
  }
}

/**
 * A conditional PutObject (`If-None-Match: *`, AWS S3 conditional writes): 412 PreconditionFailed
 * when the key holds an object, 409 ConditionalRequestConflict when another write to the key is
 * under way (the client should try again). `*` is the only value S3 takes on a write.
 */
function conditionalWrite(request: S3Request, exists: boolean, overlapping: boolean): void {
  const ifNoneMatch = header(request, 'if-none-match');
  if (ifNoneMatch === undefined) return;
  if (ifNoneMatch.trim() !== '*') throw new S3Error(501, 'NotImplemented', 'A header you provided implies functionality that is not implemented');
  if (overlapping) throw new S3Error(409, 'ConditionalRequestConflict', 'A conflicting conditional operation is currently in progress against this resource. Please try again.');
  if (exists) throw new S3Error(412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
}
