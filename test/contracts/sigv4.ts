import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * AWS Signature Version 4 in the Authorization header
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), the algorithm
 * the S3 and KMS contract servers both recompute. Each service answers a wrong part with its own
 * error, so this module only takes the header apart and computes; the servers check the parts
 * and choose the answer.
 */

export interface SignedAuthorization {
  /** The credential split on `/`: access key id, day, region, service, `aws4_request` (more or fewer parts when malformed). */
  credential: string[];
  /** As sent: `host;x-amz-date;...`. */
  signedHeaderList: string;
  signedHeaders: string[];
  /** 64 hex digits. */
  signature: string;
}

/** The parts of `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`, or undefined when the header is not of that form. */
export function parseAuthorization(authorization: string): SignedAuthorization | undefined {
  const match = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(authorization);
  if (!match) return undefined;
  const [, credential, signedHeaderList, signature] = match as unknown as [string, string, string, string];
  return { credential: credential.split('/'), signedHeaderList, signedHeaders: signedHeaderList.split(';'), signature };
}

/** The time an `x-amz-date` (`20260102T030405Z`) names, in ms; undefined when the header is missing or not of that form. */
export function amzDateMs(amzDate: string | undefined): number | undefined {
  if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate)) return undefined;
  return Date.parse(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
}

/** The canonical headers: each signed header as `name:values\n`, its values as received, trimmed, inner spaces folded, joined with commas. */
export function canonicalHeaders(rawHeaders: string[], signedHeaders: string[]): string {
  return signedHeaders
    .map((name) => {
      const values: string[] = [];
      for (let i = 0; i < rawHeaders.length; i += 2) {
        if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!.trim().replace(/\s+/g, ' '));
      }
      return `${name}:${values.join(',')}\n`;
    })
    .join('');
}

/** The canonical query: names and values URI-encoded, sorted by name then value. */
export function canonicalQuery(query: Array<[string, string]>): string {
  return query
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/** RFC 3986 encoding as SigV4 wants it: only unreserved characters stay. */
function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Whether `signature` is what the secret key gives the canonical request, signed at `amzDate` for the credential scope day/region/service. */
export function signatureMatches(input: { secretAccessKey: string; amzDate: string; day: string; region: string; service: string; canonicalRequest: string; signature: string }): boolean {
  const scope = `${input.day}/${input.region}/${input.service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', input.amzDate, scope, sha256Hex(input.canonicalRequest)].join('\n');
  let key = hmac(`AWS4${input.secretAccessKey}`, input.day);
  for (const part of [input.region, input.service, 'aws4_request']) key = hmac(key, part);
  return timingSafeEqual(hmac(key, stringToSign), Buffer.from(input.signature, 'hex'));
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
