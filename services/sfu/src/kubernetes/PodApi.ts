import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { z } from 'zod';
import { ErrorCode, GatewayError, retryAfterMs } from '@gateway/common';

/** Where this node's Pod is and how the API server is reached, as the SFU's configuration gives them. */
export interface PodApiSettings {
  pod: { name: string; namespace: string };
  /** KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, which the kubelet sets in every container. */
  apiServer: { host: string; port: number };
  /** The mounted service account: `token` (a projected token that the kubelet rotates) and `ca.crt`. */
  serviceAccountDir: string;
}

/**
 * Why a write failed, for the metric's label and the log: a small fixed set, whatever the API
 * server answered.
 */
export type PodApiFailure = 'credentials' | 'unauthenticated' | 'forbidden' | 'not_found' | 'refused' | 'rate_limited' | 'server_error' | 'unreachable' | 'bad_answer';

/** A Pod is far smaller (the API server keeps objects under 1.5 MiB); anything longer is cut off unread. */
const MAX_ANSWER_BYTES = 2 * 1024 * 1024;
/** One write, connection and answer included. */
const REQUEST_TIMEOUT_MS = 10_000;

/** What is read back of the Pod the PATCH answers with: whose it is, and its annotations. */
const patchedPodSchema = z.object({
  kind: z.literal('Pod'),
  metadata: z.object({
    name: z.string(),
    namespace: z.string(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
});

/** A refusal (a Kubernetes Status): only its reason is kept, a short machine word. */
const statusSchema = z.object({
  kind: z.literal('Status'),
  reason: z
    .string()
    .regex(/^[A-Za-z]{1,64}$/)
    .optional(),
});

/**
 * This node's own Pod in the Kubernetes API: annotations written with a JSON merge patch (RFC
 * 7386) by PATCH /api/v1/namespaces/{namespace}/pods/{name}, as the Pod's service account. Its
 * token is read from its file at each write, since the kubelet rotates projected tokens; the CA
 * is read again too, and the connection pool rebuilt when it changed. Every answer is checked
 * before it is believed: a 2xx must be this Pod carrying what was written.
 */
export class PodApi {
  private agent: https.Agent | undefined;
  private agentCa: string | undefined;

  constructor(private readonly settings: PodApiSettings) {}

  /** Sets (or, with null, removes) annotations of the Pod; a GatewayError whose details carry `failure` and, when the server asked, `retryAfterMs`. */
  async patchAnnotations(annotations: Record<string, string | null>): Promise<void> {
    const { token, agent } = await this.credentials();
    const { name, namespace } = this.settings.pod;
    const body = Buffer.from(JSON.stringify({ metadata: { annotations } }));
    const answer = await this.send(agent, token, `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, body);
    if (answer.status >= 200 && answer.status < 300) {
      const pod = patchedPodSchema.safeParse(parseJson(answer.body));
      if (!pod.success) throw failure('bad_answer', ErrorCode.DESTINATION_FAILED, `the API server answered ${answer.status} without a Pod`, answer.status);
      const { metadata } = pod.data;
      const holds = Object.entries(annotations).every(([key, value]) => (metadata.annotations?.[key] ?? null) === value);
      if (metadata.name !== name || metadata.namespace !== namespace || !holds)
        throw failure('bad_answer', ErrorCode.DESTINATION_FAILED, 'the API server answered with a Pod that is not this one as written', answer.status);
      return;
    }
    throw refusal(answer);
  }

  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  private async credentials(): Promise<{ token: string; agent: https.Agent }> {
    let token: string;
    let ca: string;
    try {
      [token, ca] = await Promise.all([readFile(path.join(this.settings.serviceAccountDir, 'token'), 'utf8'), readFile(path.join(this.settings.serviceAccountDir, 'ca.crt'), 'utf8')]);
    } catch (error) {
      throw failure('credentials', ErrorCode.UNAUTHENTICATED, 'the service account token or CA cannot be read', undefined, error);
    }
    token = token.trim();
    // A token goes into a header: nothing but the characters of a JWT.
    if (!/^[A-Za-z0-9._~+/=-]{1,16384}$/.test(token)) throw failure('credentials', ErrorCode.UNAUTHENTICATED, 'the service account token file does not hold a token');
    if (!this.agent || this.agentCa !== ca) {
      this.agent?.destroy();
      // One connection, kept between writes: they come every few seconds at most.
      this.agent = new https.Agent({ ca, keepAlive: true, maxSockets: 1 });
      this.agentCa = ca;
    }
    return { token, agent: this.agent };
  }

  private send(agent: https.Agent, token: string, pathname: string, body: Buffer): Promise<{ status: number; body: Buffer; retryAfter: string | undefined }> {
    const { host, port } = this.settings.apiServer;
    return new Promise((resolve, reject) => {
      const unreachable = (error: unknown) => reject(failure('unreachable', ErrorCode.UNAVAILABLE, 'the API server did not answer', undefined, error));
      const request = https.request(
        {
          agent,
          host: host.replace(/^\[(.*)\]$/, '$1'),
          port,
          method: 'PATCH',
          path: pathname,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/merge-patch+json',
            accept: 'application/json',
            'content-length': body.length,
          },
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        },
        (response) => {
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) {
              response.destroy();
              request.destroy();
              reject(failure('bad_answer', ErrorCode.DESTINATION_FAILED, `the API server's answer is over ${MAX_ANSWER_BYTES} bytes`, response.statusCode));
              return;
            }
            chunks.push(chunk);
          });
          response.on('end', () => {
            const retryAfter = response.headers['retry-after'];
            resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks), retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined });
          });
          response.on('error', unreachable);
          // Cut short (the timeout, a reset): 'end' never comes.
          response.on('close', () => {
            if (!response.complete) unreachable(new Error('the answer was cut short'));
          });
        },
      );
      request.on('error', unreachable);
      request.end(body);
    });
  }
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

function failure(kind: PodApiFailure, code: ErrorCode, message: string, status?: number, cause?: unknown, retryAfter?: number): GatewayError {
  return new GatewayError(code, message, { cause, details: { failure: kind, ...(status === undefined ? {} : { status }), ...(retryAfter === undefined ? {} : { retryAfterMs: retryAfter }) } });
}

/** A non-2xx answer as a GatewayError: the status decides, the Status object only adds its reason. */
function refusal(answer: { status: number; body: Buffer; retryAfter: string | undefined }): GatewayError {
  const { status } = answer;
  const parsed = statusSchema.safeParse(parseJson(answer.body));
  const reason = parsed.success && parsed.data.reason ? ` (${parsed.data.reason})` : '';
  const wait = retryAfterMs(answer.retryAfter);
  if (status === 429) return failure('rate_limited', ErrorCode.RATE_LIMITED, `the API server limits this client${reason}`, status, undefined, wait);
  if (status >= 500) return failure('server_error', ErrorCode.UNAVAILABLE, `the API server failed with ${status}${reason}`, status, undefined, wait);
  if (status === 401) return failure('unauthenticated', ErrorCode.UNAUTHENTICATED, `the API server did not take the service account token${reason}`, status);
  if (status === 403) return failure('forbidden', ErrorCode.PERMISSION_DENIED, `the service account may not patch this Pod${reason}`, status);
  if (status === 404) return failure('not_found', ErrorCode.NOT_FOUND, `the API server knows no such Pod${reason}`, status);
  return failure('refused', ErrorCode.BAD_REQUEST, `the API server refused the patch with ${status}${reason}`, status);
}
