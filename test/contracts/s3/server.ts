import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A contract server for the part of the Amazon S3 REST API that crm-sync's S3 destination uses,
 * kept to what AWS documents: Signature Version 4 checked on every request (credential scope,
 * date, payload hash and signature, computed with the same algorithm), path-style addressing,
 * XML error bodies with Code/Message/RequestId, multipart rules (parts of at least 5 MiB except
 * the last, ETags checked on completion, part numbers 1-10,000), x-amz-tagging and SSE-KMS
 * headers stored and echoed. Faults are injected on demand (503 SlowDown, 500, a reset
 * connection, a request that never answers). Why a contract server and not a real one:
 * README.md beside this file.
 */

export const MIB = 1024 * 1024;
/** S3's smallest part, except the last one. */
export const MIN_PART_BYTES = 5 * MIB;
const MAX_PUT_BYTES = 5 * 1024 * MIB;
const MAX_PARTS = 10_000;
const MAX_SKEW_MS = 15 * 60_000;
const STORAGE_CLASSES = new Set(['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'DEEP_ARCHIVE', 'GLACIER_IR']);

export type S3Operation =
  | 'HeadBucket'
  | 'ListObjectsV2'
  | 'ListMultipartUploads'
  | 'PutObject'
  | 'HeadObject'
  | 'GetObject'
  | 'DeleteObject'
  | 'GetObjectTagging'
  | 'PutObjectTagging'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload';

export interface S3Credential {
  accessKeyId: string;
  secretAccessKey: string;
  /** When set, requests must carry it (x-amz-security-token), signed. */
  sessionToken?: string;
  /** Operations this principal is refused with 403 AccessDenied (a narrow IAM policy). */
  deny?: S3Operation[];
}

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

interface PendingUpload extends Omit<StoredObject, 'body' | 'size' | 'etag' | 'lastModified'> {
  uploadId: string;
  bucket: string;
  key: string;
  initiated: Date;
  parts: Map<number, { body: Buffer; etag: string; size: number }>;
}

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

class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Request {
  method: string;
  rawPath: string;
  query: Array<[string, string]>;
  params: Map<string, string>;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  bucket?: string;
  key?: string;
}

export class S3ContractServer {
  readonly region: string;
  readonly requests: RequestRecord[] = [];
  private readonly buckets = new Map<string, Map<string, StoredObject>>();
  private readonly uploads = new Map<string, PendingUpload>();
  private readonly credentials: Map<string, S3Credential>;
  private readonly rules: Array<FaultRule & { remaining: number }> = [];
  private readonly sockets = new Set<Socket>();
  private readonly keepBodiesUpTo: number;

  private constructor(
    private readonly server: http.Server,
    options: S3ContractServerOptions,
  ) {
    this.region = options.region ?? 'eu-west-1';
    this.keepBodiesUpTo = options.keepBodiesUpTo ?? Number.POSITIVE_INFINITY;
    for (const bucket of options.buckets ?? ['gateway-test']) this.buckets.set(bucket, new Map());
    this.credentials = new Map((options.credentials ?? [S3ContractServer.defaultCredential]).map((c) => [c.accessKeyId, c]));
  }

  static readonly defaultCredential: S3Credential = { accessKeyId: 'AKIAGATEWAYTEST00001', secretAccessKey: 'gateway/test/secret/key/0000000000000000' };

  static async start(options: S3ContractServerOptions = {}): Promise<S3ContractServer> {
    const server = http.createServer();
    const contract = new S3ContractServer(server, options);
    // A client that drops its request midway (its body cut short) gets its connection closed, as S3 does.
    server.on('request', (req, res) => void contract.handle(req, res).catch(() => res.destroy()));
    server.on('connection', (socket) => {
      contract.sockets.add(socket);
      socket.once('close', () => contract.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return contract;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
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
    return [...this.uploads.values()].filter((u) => u.bucket === bucket).map((u) => ({ key: u.key, uploadId: u.uploadId, parts: u.parts.size }));
  }

  count(operation: S3Operation, filter: (r: RequestRecord) => boolean = () => true): number {
    return this.requests.filter((r) => r.operation === operation && filter(r)).length;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = req.url ?? '/';
    const queryIndex = url.indexOf('?');
    const rawPath = queryIndex < 0 ? url : url.slice(0, queryIndex);
    const query = parseQuery(queryIndex < 0 ? '' : url.slice(queryIndex + 1));
    const [, bucket, ...keyParts] = rawPath.split('/');
    const request: Request = {
      method: req.method ?? 'GET',
      rawPath,
      query,
      params: new Map(query),
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: Buffer.concat(chunks),
      bucket: bucket ? decodeURIComponent(bucket) : undefined,
      key: keyParts.length > 0 && keyParts.join('/') !== '' ? decodeURIComponent(keyParts.join('/')) : undefined,
    };
    const operation = operationOf(request);
    const partNumber = request.params.has('partNumber') ? Number(request.params.get('partNumber')) : undefined;
    const record: RequestRecord = { operation, bucket: request.bucket, key: request.key, partNumber, status: 200, faulted: false };
    this.requests.push(record);
    res.setHeader('x-amz-request-id', requestId);
    res.setHeader('x-amz-id-2', randomBytes(24).toString('base64'));
    try {
      if (operation === 'Unknown') throw new S3Error(501, 'NotImplemented', 'A header or query you provided implies functionality that is not implemented.');
      this.authenticate(request, operation);
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
      const answer = this.dispatch(operation, request);
      record.status = answer.status;
      res.writeHead(answer.status, answer.headers);
      res.end(request.method === 'HEAD' ? undefined : answer.body);
    } catch (error) {
      const s3 = error instanceof S3Error ? error : new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.');
      record.status = s3.status;
      record.code = s3.code;
      if (request.method === 'HEAD') {
        // HEAD answers carry no body: clients only see the status.
        res.writeHead(s3.status);
        res.end();
        return;
      }
      const resource = request.key ? `/${request.bucket}/${request.key}` : `/${request.bucket ?? ''}`;
      res.writeHead(s3.status, { 'content-type': 'application/xml' });
      res.end(
        xml(
          `<Error><Code>${s3.code}</Code><Message>${escape(s3.message)}</Message><Resource>${escape(resource)}</Resource><RequestId>${requestId}</RequestId><HostId>${randomBytes(24).toString('base64')}</HostId></Error>`,
        ),
      );
    }
  }

  /** Signature Version 4 (header form), as https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html. */
  private authenticate(request: Request, operation: S3Operation): void {
    const authorization = header(request, 'authorization');
    if (!authorization) throw new S3Error(403, 'AccessDenied', 'Access Denied');
    const match = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(authorization);
    if (!match) throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed.');
    const [, credential, signedHeaderList, signature] = match as unknown as [string, string, string, string];
    const [accessKeyId, day, region, service, terminator, ...rest] = credential.split('/');
    if (!accessKeyId || !day || !region || service !== 's3' || terminator !== 'aws4_request' || rest.length > 0 || !/^\d{8}$/.test(day)) {
      throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; the Credential is mal-formed.');
    }
    if (region !== this.region) throw new S3Error(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the region '${region}' is wrong; expecting '${this.region}'`);
    const principal = this.credentials.get(accessKeyId);
    if (!principal) throw new S3Error(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
    const amzDate = header(request, 'x-amz-date');
    if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate)) throw new S3Error(403, 'AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
    if (amzDate.slice(0, 8) !== day) throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; the credential date does not match x-amz-date.');
    const time = Date.parse(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
    if (Math.abs(Date.now() - time) > MAX_SKEW_MS) throw new S3Error(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
    const signedHeaders = signedHeaderList.split(';');
    if (!signedHeaders.includes('host')) throw new S3Error(403, 'SignatureDoesNotMatch', 'The host header must be signed.');
    const payloadHash = header(request, 'x-amz-content-sha256');
    if (!payloadHash) throw new S3Error(400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
    if (payloadHash.startsWith('STREAMING-')) throw new S3Error(501, 'NotImplemented', 'Streaming (aws-chunked) payloads are not implemented by this contract server.');
    if (payloadHash !== 'UNSIGNED-PAYLOAD') {
      if (!/^[0-9a-f]{64}$/.test(payloadHash)) throw new S3Error(400, 'InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 value.');
      if (sha256Hex(request.body) !== payloadHash) throw new S3Error(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    if (principal.sessionToken !== undefined) {
      if (header(request, 'x-amz-security-token') !== principal.sessionToken || !signedHeaders.includes('x-amz-security-token')) {
        throw new S3Error(403, 'InvalidToken', 'The provided token is malformed or otherwise invalid.');
      }
    }
    const canonicalRequest = [
      request.method,
      request.rawPath,
      canonicalQuery(request.query),
      signedHeaders.map((name) => `${name}:${headerValues(request, name)}\n`).join(''),
      signedHeaderList,
      payloadHash,
    ].join('\n');
    const scope = `${day}/${region}/s3/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(Buffer.from(canonicalRequest))].join('\n');
    let key = hmac(`AWS4${principal.secretAccessKey}`, day);
    for (const part of [region, 's3', 'aws4_request']) key = hmac(key, part);
    const expected = createHmac('sha256', key).update(stringToSign).digest();
    if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
      throw new S3Error(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
    }
    if (principal.deny?.includes(operation)) throw new S3Error(403, 'AccessDenied', 'Access Denied');
    const md5 = header(request, 'content-md5');
    if (md5 !== undefined) {
      if (!/^[A-Za-z0-9+/]{22}==$/.test(md5)) throw new S3Error(400, 'InvalidDigest', 'The Content-MD5 you specified was invalid.');
      if (createHash('md5').update(request.body).digest('base64') !== md5) throw new S3Error(400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
    }
    const checksum = header(request, 'x-amz-checksum-sha256');
    if (checksum !== undefined && createHash('sha256').update(request.body).digest('base64') !== checksum) {
      throw new S3Error(400, 'BadDigest', 'The SHA256 you specified did not match the calculated checksum.');
    }
  }

  private kept(body: Buffer): Buffer {
    return body.length > this.keepBodiesUpTo ? Buffer.alloc(0) : body;
  }

  private bucket(request: Request): Map<string, StoredObject> {
    const objects = request.bucket ? this.buckets.get(request.bucket) : undefined;
    if (!objects) throw new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist');
    return objects;
  }

  private upload(request: Request): PendingUpload {
    const upload = this.uploads.get(request.params.get('uploadId') ?? '');
    if (!upload || upload.bucket !== request.bucket || upload.key !== request.key) {
      throw new S3Error(404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.');
    }
    return upload;
  }

  private dispatch(operation: S3Operation, request: Request): { status: number; headers: Record<string, string>; body?: Buffer | string } {
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
      case 'ListMultipartUploads': {
        const uploads = [...this.uploads.values()]
          .filter((u) => u.bucket === request.bucket && u.key.startsWith(request.params.get('prefix') ?? ''))
          .map(
            (u) => `<Upload><Key>${escape(u.key)}</Key><UploadId>${u.uploadId}</UploadId><StorageClass>${u.storageClass}</StorageClass><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`,
          );
        return xmlAnswer(
          `<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${request.bucket}</Bucket><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${uploads.join('')}</ListMultipartUploadsResult>`,
        );
      }
      case 'PutObject': {
        if (request.body.length > MAX_PUT_BYTES) throw new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
        const object: StoredObject = { ...objectSettings(request), body: this.kept(request.body), size: request.body.length, etag: `"${md5Hex(request.body)}"`, lastModified: new Date() };
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
        if (!/<Tagging[\s>]/.test(body) || !/<TagSet>/.test(body)) throw new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
        object.tags = validTags([...body.matchAll(/<Tag>\s*<Key>([^<]*)<\/Key>\s*<Value>([^<]*)<\/Value>\s*<\/Tag>/g)].map((m) => [unescape(m[1]!), unescape(m[2]!)]));
        return { status: 200, headers: {} };
      }
      case 'CreateMultipartUpload': {
        const uploadId = randomBytes(24).toString('base64url');
        const upload: PendingUpload = { ...objectSettings(request), uploadId, bucket: request.bucket!, key, initiated: new Date(), parts: new Map() };
        this.uploads.set(uploadId, upload);
        return xmlAnswer(
          `<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${request.bucket}</Bucket><Key>${escape(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`,
          encryptionHeaders(upload),
        );
      }
      case 'UploadPart': {
        const upload = this.upload(request);
        const partNumber = Number(request.params.get('partNumber'));
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) throw new S3Error(400, 'InvalidArgument', 'Part number must be an integer between 1 and 10000, inclusive');
        if (request.body.length > MAX_PUT_BYTES) throw new S3Error(400, 'EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size');
        const etag = `"${md5Hex(request.body)}"`;
        upload.parts.set(partNumber, { body: this.kept(request.body), etag, size: request.body.length });
        return { status: 200, headers: { etag, ...encryptionHeaders(upload) } };
      }
      case 'CompleteMultipartUpload': {
        const upload = this.upload(request);
        const body = request.body.toString('utf8');
        if (!/^\s*(<\?xml[^>]*\?>\s*)?<CompleteMultipartUpload[\s>]/.test(body))
          throw new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
        const listed = [...body.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
          partNumber: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1]!)?.[1]),
          etag: unescape(/<ETag>([^<]*)<\/ETag>/.exec(m[1]!)?.[1] ?? ''),
        }));
        if (listed.length === 0) throw new S3Error(400, 'MalformedXML', 'The XML you provided was not well-formed or did not validate against our published schema.');
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
          `<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>${escape(`${this.url}/${request.bucket}/${key}`)}</Location><Bucket>${request.bucket}</Bucket><Key>${escape(key)}</Key><ETag>${escape(object.etag)}</ETag></CompleteMultipartUploadResult>`,
          encryptionHeaders(object),
        );
      }
      case 'AbortMultipartUpload':
        this.uploads.delete(this.upload(request).uploadId);
        return { status: 204, headers: {} };
    }
  }
}

function operationOf({ method, params: all, key }: Request): S3Operation | 'Unknown' {
  // The SDKs add x-id=<Operation> to some requests; S3 routes without it.
  const params = new Map([...all].filter(([name]) => name !== 'x-id'));
  const has = (name: string) => params.has(name);
  if (key === undefined) {
    if (method === 'HEAD' && params.size === 0) return 'HeadBucket';
    if (method === 'GET' && params.get('list-type') === '2') return 'ListObjectsV2';
    if (method === 'GET' && has('uploads')) return 'ListMultipartUploads';
    return 'Unknown';
  }
  if (method === 'PUT' && has('partNumber') && has('uploadId')) return 'UploadPart';
  if (method === 'PUT' && has('tagging')) return 'PutObjectTagging';
  if (method === 'PUT' && params.size === 0) return 'PutObject';
  if (method === 'POST' && has('uploads')) return 'CreateMultipartUpload';
  if (method === 'POST' && has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'DELETE' && has('uploadId')) return 'AbortMultipartUpload';
  if (method === 'DELETE' && params.size === 0) return 'DeleteObject';
  if (method === 'GET' && has('tagging')) return 'GetObjectTagging';
  if (method === 'GET' && !has('uploadId')) return 'GetObject';
  if (method === 'HEAD') return 'HeadObject';
  return 'Unknown';
}

/** What PutObject and CreateMultipartUpload take from their headers. */
function objectSettings(request: Request): Omit<StoredObject, 'body' | 'size' | 'etag' | 'lastModified'> {
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

function encryptionHeaders(object: Pick<StoredObject, 'serverSideEncryption' | 'kmsKeyId' | 'encryptionContext'>): Record<string, string> {
  const headers: Record<string, string> = {};
  if (object.serverSideEncryption) headers['x-amz-server-side-encryption'] = object.serverSideEncryption;
  if (object.kmsKeyId) headers['x-amz-server-side-encryption-aws-kms-key-id'] = object.kmsKeyId;
  if (object.encryptionContext) headers['x-amz-server-side-encryption-context'] = object.encryptionContext;
  return headers;
}

/** S3's limits on object tags: at most 10, keys up to 128 characters, values up to 256, keys unique. */
function validTags(tags: Array<[string, string]>): Array<[string, string]> {
  const keys = new Set(tags.map(([k]) => k));
  if (tags.length > 10 || keys.size !== tags.length || tags.some(([k, v]) => k.length === 0 || k.length > 128 || v.length > 256)) {
    throw new S3Error(400, 'InvalidTag', 'The tag provided was not a valid tag.');
  }
  return tags;
}

function header(request: Request, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** Every value of a header as received, trimmed, inner spaces folded, joined with commas (SigV4 canonical headers). */
function headerValues(request: Request, name: string): string {
  const values: string[] = [];
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    if (request.rawHeaders[i]!.toLowerCase() === name) values.push(request.rawHeaders[i + 1]!.trim().replace(/\s+/g, ' '));
  }
  return values.join(',');
}

function parseQuery(query: string): Array<[string, string]> {
  if (query === '') return [];
  return query.split('&').map((pair) => {
    const index = pair.indexOf('=');
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
    return index < 0 ? [decode(pair), ''] : [decode(pair.slice(0, index)), decode(pair.slice(index + 1))];
  });
}

/** RFC 3986 encoding as SigV4 wants it: only unreserved characters stay. */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function canonicalQuery(query: Array<[string, string]>): string {
  return query
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

function normalizeEtag(etag: string): string {
  return etag.replace(/"/g, '');
}

function xml(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
}

function xmlAnswer(body: string, headers: Record<string, string> = {}) {
  return { status: 200, headers: { 'content-type': 'application/xml', ...headers }, body: xml(body) };
}

function escape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function unescape(value: string): string {
  return value
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&#34;/g, '"')
    .replace(/&amp;/g, '&');
}
