import type { Credentials } from './tokens.js';

/** An answer of the room or admin API other than success: the HTTP status and the API's error code (docs/http-api.md). */
export class GatewayApiError extends Error {
  override readonly name = 'GatewayApiError';
  constructor(
    readonly status: number,
    /** `NOT_FOUND`, `RATE_LIMITED`, `BAD_REQUEST`, ... (`UNAVAILABLE` when the server could not be reached). */
    readonly code: string,
    message: string,
    /** From `retry-after`, when the server said when to come back. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export interface ApiClientOptions {
  /** The API's base URL: signaling's public URL for the room API, crm-sync's admin URL for the admin API. */
  url: string;
  credentials: Pick<Credentials, 'apiKey' | 'apiSecret'>;
  /** Each request's limit (default 30 s). */
  timeoutMs?: number;
  /** Another fetch (a proxy's, a test's); default the global one. */
  fetch?: typeof fetch;
}

/** One JSON API behind HTTP Basic with the tenant's key and secret. */
export class ApiClient {
  private readonly base: string;
  private readonly authorization: string;

  constructor(private readonly options: ApiClientOptions) {
    const url = new URL(options.url);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('url must be http(s)');
    this.base = url.toString().replace(/\/+$/, '');
    this.authorization = `Basic ${Buffer.from(`${options.credentials.apiKey}:${options.credentials.apiSecret}`).toString('base64')}`;
  }

  /** Path segments are encoded here: pass names as they are. */
  async call<T>(method: string, path: string, body?: unknown, query?: Record<string, string>): Promise<T> {
    const target = `${this.base}${path}${query ? `?${new URLSearchParams(query).toString()}` : ''}`;
    let response: Response;
    try {
      response = await (this.options.fetch ?? fetch)(target, {
        method,
        headers: { authorization: this.authorization, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
        redirect: 'error',
      });
    } catch (error) {
      throw new GatewayApiError(0, 'UNAVAILABLE', `${method} ${path}: ${(error as Error).message}`);
    }
    const text = await response.text();
    if (response.ok) return (text ? JSON.parse(text) : undefined) as T;
    let code = 'INTERNAL';
    let message = `${method} ${path} answered ${response.status}`;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      if (typeof parsed.error?.code === 'string') code = parsed.error.code;
      if (typeof parsed.error?.message === 'string') message = parsed.error.message;
    } catch {
      // Not one of our answers (a proxy's page): the status says enough.
    }
    const retryAfter = Number(response.headers.get('retry-after'));
    throw new GatewayApiError(response.status, code, message, Number.isFinite(retryAfter) && retryAfter >= 0 && response.headers.has('retry-after') ? retryAfter * 1000 : undefined);
  }
}

/** A path from its segments, each percent-encoded. */
export function pathOf(...segments: string[]): string {
  return `/${segments.map(encodeURIComponent).join('/')}`;
}
