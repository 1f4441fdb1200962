import { createHash } from 'node:crypto';
import { amzDateMs, canonicalHeaders, canonicalQuery, parseAuthorization, sha256Hex, signatureMatches } from '../sigv4.js';
import { header, type S3Operation, type S3Request } from './request.js';
import { S3Error } from './xml.js';

/** Who may call the S3 contract server, and the checks S3 makes before an operation runs: SigV4, the principal's policy, body digests. */

const MAX_SKEW_MS = 15 * 60_000;

export interface S3Credential {
  accessKeyId: string;
  secretAccessKey: string;
  /** When set, requests must carry it (x-amz-security-token), signed. */
  sessionToken?: string;
  /** Operations this principal is refused with 403 AccessDenied (a narrow IAM policy). */
  deny?: S3Operation[];
}

/**
 * Signature Version 4 (header form), as https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html,
 * then the principal's denied operations, then Content-MD5 and x-amz-checksum-sha256.
 */
export function authenticate(request: S3Request, operation: S3Operation, region: string, credentials: Map<string, S3Credential>): void {
  const authorization = header(request, 'authorization');
  if (!authorization) throw new S3Error(403, 'AccessDenied', 'Access Denied');
  const parsed = parseAuthorization(authorization);
  if (!parsed) throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed.');
  const { credential, signedHeaderList, signedHeaders, signature } = parsed;
  const [accessKeyId, day, scopeRegion, service, terminator, ...rest] = credential;
  if (!accessKeyId || !day || !scopeRegion || service !== 's3' || terminator !== 'aws4_request' || rest.length > 0 || !/^\d{8}$/.test(day)) {
    throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; the Credential is mal-formed.');
  }
  if (scopeRegion !== region) throw new S3Error(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the region '${scopeRegion}' is wrong; expecting '${region}'`);
  const principal = credentials.get(accessKeyId);
  if (!principal) throw new S3Error(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  const amzDate = header(request, 'x-amz-date');
  const time = amzDateMs(amzDate);
  if (!amzDate || time === undefined) throw new S3Error(403, 'AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
  if (amzDate.slice(0, 8) !== day) throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed; the credential date does not match x-amz-date.');
  if (Math.abs(Date.now() - time) > MAX_SKEW_MS) throw new S3Error(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
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
  const canonicalRequest = [request.method, request.rawPath, canonicalQuery(request.query), canonicalHeaders(request.rawHeaders, signedHeaders), signedHeaderList, payloadHash].join('\n');
  if (!signatureMatches({ secretAccessKey: principal.secretAccessKey, amzDate, day, region: scopeRegion, service: 's3', canonicalRequest, signature })) {
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
