import { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import { ErrorCode, GatewayError, retryAfterMs } from '@gateway/common';
import { headerValue, ownCause } from './network.js';
import type { StreamedBody } from './streaming.js';
import type { DestinationDeps } from './types.js';

/** The wait a 429 or 5xx without a readable Retry-After stands for. */
const DEFAULT_RETRY_AFTER_MS = 60_000;

/** Limits of the client, not of the tenant's settings: Zendesk's own, lowered in tests. */
export interface ZendeskApiOptions {
  /** A 429 asking to wait this long or less is waited out here; a longer one fails the delivery. */
  maxRetryAfterMs: number;
  /** 429s waited out per request before giving up. */
  maxRateLimitRetries: number;
  requestTimeoutMs: number;
  sleep: (ms: number) => Promise<void>;
}

/** What one request sends besides its method and path. */
export interface ZendeskRequest {
  query?: Record<string, string>;
  json?: unknown;
  body?: StreamedBody;
  contentType?: string;
  /** Headers of this call besides the usual ones (Create Ticket's Idempotency-Key). */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** What Zendesk's 422 says, reduced to codes: field names and error codes, never the values it quotes. */
export const errorCode = (value: unknown): string | undefined => (typeof value === 'string' && /^[A-Za-z_]{1,64}$/.test(value) ? value : undefined);

/** A request Zendesk refused, with its status; becomes DESTINATION_FAILED at the edge of deliver(). */
export class ZendeskHttpError extends GatewayError {
  constructor(
    readonly status: number,
    message: string,
    details: Record<string, unknown> = {},
    /** Zendesk's error code (`error` of its body), when it is one. */
    readonly zendeskError?: string,
  ) {
    super(ErrorCode.DESTINATION_FAILED, message, { details: { status, ...details } });
  }
}

/** A Zendesk Support account over API v2 with API token auth: rate limits waited out when short, errors reduced to codes. */
export class ZendeskApi {
  /** The account's origin; the credentials go nowhere else. */
  readonly origin: string;
  private readonly authorization: string;

  constructor(
    config: { subdomainUrl: string; email: string },
    secrets: { apiToken: string },
    private readonly deps: Pick<DestinationDeps, 'log'> & Partial<Pick<DestinationDeps, 'connections'>>,
    private readonly options: ZendeskApiOptions,
  ) {
    this.origin = new URL(config.subdomainUrl).origin;
    this.authorization = `Basic ${Buffer.from(`${config.email}/token:${secrets.apiToken}`).toString('base64')}`;
  }

  /**
   * One call to Zendesk. 429 is waited out when Retry-After is short (Zendesk did not process
   * the request); every other failure is DESTINATION_FAILED, with codes only: Zendesk's messages
   * can quote values.
   */
  async request<T>(what: string, method: string, pathAndQuery: string, init: ZendeskRequest = {}): Promise<T> {
    const url = new URL(pathAndQuery, this.origin);
    for (const [key, value] of Object.entries(init.query ?? {})) url.searchParams.set(key, value);
    const headers: Record<string, string> = { ...init.headers, authorization: this.authorization, accept: 'application/json' };
    if (init.json !== undefined) headers['content-type'] = 'application/json';
    else if (init.body) {
      headers['content-type'] = init.contentType ?? 'application/octet-stream';
      headers['content-length'] = String(init.body.length);
    }
    for (let attempt = 0; ; attempt++) {
      let response: Answer;
      try {
        // Streamed bodies are opened per attempt: a 429 sends the part again.
        const body = init.json !== undefined ? JSON.stringify(init.json) : init.body && Readable.from(init.body.open(), { objectMode: false });
        // undici's request rather than its fetch: a fraction of the work per call (no WHATWG
        // streams, Headers or Response). It follows no redirect: a moved account means a wrong
        // subdomainUrl, its 3xx is refused below, and the credentials stay here.
        const answer = await request(url, {
          method: method as Dispatcher.HttpMethod,
          headers,
          body,
          signal: AbortSignal.timeout(init.timeoutMs ?? this.options.requestTimeoutMs),
          ...(this.deps.connections ? { dispatcher: this.deps.connections.dispatcher } : {}),
        });
        response = { status: answer.statusCode, retryAfter: headerValue(answer.headers['retry-after']), text: await answer.body.text() };
      } catch (error) {
        // A refused address, or an artifact that failed its check while it was sent, says more than "the request failed".
        const own = ownCause(error);
        if (own) throw own;
        throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Zendesk did not answer ${what}: ${networkFailure(error)}; will retry`, { cause: error });
      }
      if (response.status === 429) {
        const waitMs = retryAfterMs(response.retryAfter) ?? DEFAULT_RETRY_AFTER_MS;
        if (waitMs <= this.options.maxRetryAfterMs && attempt < this.options.maxRateLimitRetries) {
          this.deps.log.info({ waitMs, what }, 'Zendesk rate limit; waiting');
          await this.options.sleep(waitMs);
          continue;
        }
        throw new ZendeskHttpError(429, `Zendesk rate limit reached ${what}: retry after ${Math.ceil(waitMs / 1000)} s`, { retryAfterMs: waitMs });
      }
      if (response.status >= 200 && response.status < 300) {
        try {
          return JSON.parse(response.text) as T;
        } catch (error) {
          throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Zendesk answered ${what} with a body that is not JSON (HTTP ${response.status}): check subdomainUrl`, { cause: error });
        }
      }
      throw httpFailure(what, response);
    }
  }
}

/** What a request's answer brings back: its status, its Retry-After and its body. */
interface Answer {
  status: number;
  retryAfter: string | undefined;
  text: string;
}

function httpFailure(what: string, response: Answer): ZendeskHttpError {
  const { status, text } = response;
  if (status === 401) return new ZendeskHttpError(status, `Zendesk refused the credentials ${what} (HTTP 401): check the email and API token`);
  if (status === 403) return new ZendeskHttpError(status, `Zendesk denied access ${what} (HTTP 403): the API user must be an agent or an admin`);
  let parsed: { error?: unknown; details?: unknown } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // not JSON: the status says enough
  }
  const code = errorCode(parsed.error) ?? errorCode((parsed.error as { title?: unknown } | undefined)?.title);
  if (status === 422) {
    const fields =
      parsed.details && typeof parsed.details === 'object'
        ? Object.entries(parsed.details as Record<string, unknown>)
            .map(([field, issues]) => {
              const codes = Array.isArray(issues) ? issues.map((i) => errorCode((i as { error?: unknown }).error)).filter(Boolean) : [];
              return errorCode(field) ? `${field}: ${codes.join(', ') || 'invalid'}` : undefined;
            })
            .filter(Boolean)
        : [];
    return new ZendeskHttpError(status, `Zendesk rejected ${what} (HTTP 422 ${code ?? 'invalid'}${fields.length ? `; ${fields.join('; ')}` : ''})`, {}, code);
  }
  const retryAfter = response.retryAfter;
  const details = retryAfter ? { retryAfterMs: retryAfterMs(retryAfter) ?? DEFAULT_RETRY_AFTER_MS } : {};
  if (status >= 500) return new ZendeskHttpError(status, `Zendesk failed ${what} (HTTP ${status}${code ? ` ${code}` : ''}); will retry`, details, code);
  if (status === 404) return new ZendeskHttpError(status, `Zendesk found nothing ${what} (HTTP 404${code ? ` ${code}` : ''}): check subdomainUrl`, {}, code);
  return new ZendeskHttpError(status, `Zendesk refused ${what} (HTTP ${status}${code ? ` ${code}` : ''})`, details, code);
}

function networkFailure(error: unknown): string {
  const name = (error as { name?: string }).name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timed out';
  // undici's request fails with the socket's error itself (its fetch put it under `cause`).
  const code = (error as { code?: unknown }).code ?? (error as { cause?: { code?: unknown } }).cause?.code;
  if (typeof code === 'string' && /^[A-Z_]+$/.test(code)) return `connection failed (${code})`;
  return 'connection failed';
}
