import type http from 'node:http';
import { parseJsonObject } from '../http.js';
import { amzDateMs, canonicalHeaders, parseAuthorization, sha256Hex, signatureMatches } from '../sigv4.js';

/**
 * KMS's side of the wire: the JSON 1.1 protocol (`X-Amz-Target: TrentService.<Operation>`, a
 * JSON object body), its errors (`{"__type", "message"}`, 400 unless said otherwise) and
 * Signature Version 4 for service `kms`.
 */

export type KmsOperation =
  | 'CreateKey'
  | 'DescribeKey'
  | 'EnableKey'
  | 'DisableKey'
  | 'ScheduleKeyDeletion'
  | 'CancelKeyDeletion'
  | 'GenerateDataKey'
  | 'Encrypt'
  | 'Decrypt'
  | 'ReEncrypt'
  | 'CreateAlias'
  | 'UpdateAlias'
  | 'DeleteAlias'
  | 'ListAliases'
  | 'ListKeys';

const operations = new Set<string>([
  'CreateKey',
  'DescribeKey',
  'EnableKey',
  'DisableKey',
  'ScheduleKeyDeletion',
  'CancelKeyDeletion',
  'GenerateDataKey',
  'Encrypt',
  'Decrypt',
  'ReEncrypt',
  'CreateAlias',
  'UpdateAlias',
  'DeleteAlias',
  'ListAliases',
  'ListKeys',
]);

export interface KmsCredential {
  accessKeyId: string;
  secretAccessKey: string;
  /** Operations this principal is refused (AccessDeniedException), as a narrow key policy would. */
  deny?: KmsOperation[];
}

/** A refusal, answered as `{"__type": type, "message": message}`. */
export class KmsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

const MAX_SKEW_MS = 5 * 60_000;

/** The operation a request targets; UnknownOperationException unless it is `POST /` with a TrentService target we implement. */
export function operationOf(req: http.IncomingMessage): KmsOperation {
  const target = header(req, 'x-amz-target') ?? '';
  const name = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : '';
  if (req.method !== 'POST' || (req.url ?? '') !== '/') throw new KmsError('UnknownOperationException', 'Unknown operation');
  if (!operations.has(name)) throw new KmsError('UnknownOperationException', `Unknown operation ${target}`);
  return name as KmsOperation;
}

export function requireJsonContentType(req: http.IncomingMessage): void {
  if (header(req, 'content-type') !== 'application/x-amz-json-1.1') throw new KmsError('SerializationException', 'Content-Type must be application/x-amz-json-1.1');
}

/** The request's JSON object (an empty body is `{}`). */
export function parseInput(body: Buffer): Record<string, unknown> {
  const input = body.length ? parseJsonObject(body) : {};
  if (!input) throw new KmsError('SerializationException', 'Start of structure or map found where not expected.');
  return input;
}

/** Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), service `kms`: the principal who signed. */
export function authenticate(req: http.IncomingMessage, body: Buffer, region: string, credentials: Map<string, KmsCredential>): KmsCredential {
  const authorization = header(req, 'authorization');
  if (!authorization) throw new KmsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const parsed = parseAuthorization(authorization);
  if (!parsed) throw new KmsError('IncompleteSignatureException', 'Authorization header requires Credential, SignedHeaders and Signature.');
  const { credential, signedHeaderList, signedHeaders, signature } = parsed;
  const [accessKeyId, day, scopeRegion, service, terminator, ...rest] = credential;
  if (!accessKeyId || !day || !/^\d{8}$/.test(day) || service !== 'kms' || terminator !== 'aws4_request' || rest.length > 0) {
    throw new KmsError('IncompleteSignatureException', 'Credential should be scoped to a valid region, service kms and aws4_request.');
  }
  if (scopeRegion !== region) throw new KmsError('InvalidSignatureException', `Credential should be scoped to a valid region, not '${scopeRegion}'.`);
  const principal = credentials.get(accessKeyId);
  if (!principal) throw new KmsError('UnrecognizedClientException', 'The security token included in the request is invalid.');
  const amzDate = header(req, 'x-amz-date');
  const time = amzDateMs(amzDate);
  if (!amzDate || time === undefined || amzDate.slice(0, 8) !== day) throw new KmsError('IncompleteSignatureException', 'X-Amz-Date must be given and match the credential scope.');
  if (Math.abs(Date.now() - time) > MAX_SKEW_MS) throw new KmsError('InvalidSignatureException', 'Signature expired.');
  if (!signedHeaders.includes('host') || !signedHeaders.includes('x-amz-target')) throw new KmsError('InvalidSignatureException', 'The host and x-amz-target headers must be signed.');
  const canonicalRequest = ['POST', '/', '', canonicalHeaders(req.rawHeaders, signedHeaders), signedHeaderList, sha256Hex(body)].join('\n');
  if (!signatureMatches({ secretAccessKey: principal.secretAccessKey, amzDate, day, region: scopeRegion, service: 'kms', canonicalRequest, signature })) {
    throw new KmsError('InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
  }
  return principal;
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}
