import type http from 'node:http';

/** A path-style S3 request, read, and the operation S3 would route it to. */

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

export interface S3Request {
  method: string;
  /** The path as sent, still URI-encoded, as SigV4 signs it. */
  rawPath: string;
  /** The query pairs in order, decoded. */
  query: Array<[string, string]>;
  params: Map<string, string>;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  bucket?: string;
  key?: string;
}

/** What an operation answers when it succeeds (errors are thrown as S3Error). */
export interface S3Answer {
  status: number;
  headers: Record<string, string>;
  body?: Buffer | string;
}

export function parseRequest(req: http.IncomingMessage, body: Buffer): S3Request {
  const url = req.url ?? '/';
  const queryIndex = url.indexOf('?');
  const rawPath = queryIndex < 0 ? url : url.slice(0, queryIndex);
  const query = parseQuery(queryIndex < 0 ? '' : url.slice(queryIndex + 1));
  const [, bucket, ...keyParts] = rawPath.split('/');
  return {
    method: req.method ?? 'GET',
    rawPath,
    query,
    params: new Map(query),
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    body,
    bucket: bucket ? decodeURIComponent(bucket) : undefined,
    key: keyParts.length > 0 && keyParts.join('/') !== '' ? decodeURIComponent(keyParts.join('/')) : undefined,
  };
}

export function operationOf({ method, params: all, key }: S3Request): S3Operation | 'Unknown' {
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

export function header(request: S3Request, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** `a=1&b` as pairs, decoded (`+` is a space); also the form of the x-amz-tagging header. */
export function parseQuery(query: string): Array<[string, string]> {
  if (query === '') return [];
  return query.split('&').map((pair) => {
    const index = pair.indexOf('=');
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
    return index < 0 ? [decode(pair), ''] : [decode(pair.slice(0, index)), decode(pair.slice(index + 1))];
  });
}
