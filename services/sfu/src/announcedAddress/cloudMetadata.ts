import http from 'node:http';
import https from 'node:https';
import { ErrorCode, GatewayError, retryAfterMs } from '@gateway/common';

export type MetadataCloud = 'aws' | 'gcp' | 'azure';

/**
 * Why one question to a metadata service failed. `no_public_address` is the service's own
 * answer (the instance has none) and is final; the others may pass with a retry.
 */
export type LookupFailure = 'no_public_address' | 'refused' | 'rate_limited' | 'server_error' | 'unreachable' | 'bad_answer';

/** An address is at most 45 characters and an IMDSv2 token about 60: anything longer is not an answer. */
const MAX_ANSWER_BYTES = 1024;
/** How long an IMDSv2 token lives: it is used once, right away. */
const AWS_TOKEN_TTL_SECONDS = 60;
/** The characters of an IMDSv2 token (base64); it goes back into a header. */
const AWS_TOKEN = /^[A-Za-z0-9+/=_-]{1,256}$/;

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * Asks the cloud's instance metadata service for the instance's public address, as each cloud
 * documents it. The text is returned unchecked: the caller parses it as the hostile input it may
 * be. A GatewayError whose details carry `failure` (and `status`, `retryAfterMs` when known).
 */
export async function publicAddressFromMetadata(cloud: MetadataCloud, baseUrl: string, timeoutMs: number): Promise<string> {
  const ask = (pathAndQuery: string, method: 'GET' | 'PUT', headers: Record<string, string>, check?: (answer: Answer) => void) =>
    askOnce(cloud, baseUrl, timeoutMs, pathAndQuery, method, headers, check);
  switch (cloud) {
    case 'aws': {
      // IMDSv2: a session token first (PUT, its lifetime required), then the address with it.
      const token = await ask('/latest/api/token', 'PUT', { 'x-aws-ec2-metadata-token-ttl-seconds': String(AWS_TOKEN_TTL_SECONDS) });
      if (!AWS_TOKEN.test(token)) throw failure('bad_answer', cloud, 'the IMDSv2 token is not a token');
      return ask('/latest/meta-data/public-ipv4', 'GET', { 'x-aws-ec2-metadata-token': token });
    }
    case 'gcp': {
      return ask('/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip', 'GET', { 'metadata-flavor': 'Google' }, (answer) => {
        // The metadata server marks its answers; anything else on that address is not it.
        if (answer.headers['metadata-flavor'] !== 'Google') throw failure('bad_answer', cloud, 'the answer is not from the GCP metadata server (no Metadata-Flavor: Google)', answer.status);
      });
    }
    case 'azure':
      return ask('/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress?api-version=2021-02-01&format=text', 'GET', { metadata: 'true' });
  }
}

/** The body of a 200, trimmed of a final newline; an empty one is no public address (GCP and Azure answer so for an instance without one). */
async function askOnce(
  cloud: MetadataCloud,
  baseUrl: string,
  timeoutMs: number,
  pathAndQuery: string,
  method: 'GET' | 'PUT',
  headers: Record<string, string>,
  check?: (answer: Answer) => void,
): Promise<string> {
  // Appended, not resolved: a base URL with a path of its own keeps it.
  const url = new URL(`${baseUrl.replace(/\/+$/, '')}${pathAndQuery}`);
  const answer = await send(cloud, url, method, headers, timeoutMs);
  if (answer.status === 200) {
    check?.(answer);
    const body = answer.body.replace(/\r?\n$/, '');
    if (body === '') throw failure('no_public_address', cloud, 'the metadata service knows no public address for this instance', answer.status);
    return body;
  }
  throw refusal(cloud, answer);
}

/** One request, connection and answer included, within `timeoutMs`. */
function send(cloud: MetadataCloud, url: URL, method: 'GET' | 'PUT', headers: Record<string, string>, timeoutMs: number): Promise<Answer> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      outcome();
    };
    const unreachable = (error: unknown) => settle(() => reject(failure('unreachable', cloud, 'the metadata service did not answer', undefined, error)));
    // No agent: one connection per question, closed after it (the metadata service is asked a few times at start-up only).
    const request = client.request(url, { method, headers: { ...headers, ...(method === 'PUT' ? { 'content-length': 0 } : {}) }, agent: false, signal: AbortSignal.timeout(timeoutMs) }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          request.destroy();
          settle(() => reject(failure('bad_answer', cloud, `the metadata service's answer is over ${MAX_ANSWER_BYTES} bytes`, response.statusCode)));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => settle(() => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: response.headers })));
      response.on('error', unreachable);
      response.on('close', () => {
        if (!response.complete) unreachable(new Error('the answer was cut short'));
      });
    });
    request.on('error', unreachable);
    request.end();
  });
}

function refusal(cloud: MetadataCloud, answer: Answer): GatewayError {
  const { status } = answer;
  if (status === 404) return failure('no_public_address', cloud, 'the metadata service knows no public address for this instance (404)', status);
  const retryAfter = retryAfterMs(typeof answer.headers['retry-after'] === 'string' ? answer.headers['retry-after'] : undefined);
  if (status === 429) return failure('rate_limited', cloud, 'the metadata service limits this instance (429)', status, undefined, retryAfter);
  if (status >= 500) return failure('server_error', cloud, `the metadata service failed with ${status}`, status, undefined, retryAfter);
  return failure('refused', cloud, `the metadata service refused the request with ${status}`, status);
}

function failure(kind: LookupFailure, cloud: MetadataCloud, message: string, status?: number, cause?: unknown, retryAfter?: number): GatewayError {
  return new GatewayError(ErrorCode.UNAVAILABLE, `${cloud}: ${message}`, {
    cause,
    details: { failure: kind, ...(status === undefined ? {} : { status }), ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }) },
  });
}
