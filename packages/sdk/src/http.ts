import { ErrorCode, GatewayError } from './errors.js';

/** What an HTTP status means when the body does not say (a proxy answered, say). */
const byStatus: Record<number, ErrorCode> = {
  400: ErrorCode.BAD_REQUEST,
  401: ErrorCode.UNAUTHENTICATED,
  403: ErrorCode.PERMISSION_DENIED,
  404: ErrorCode.NOT_FOUND,
  409: ErrorCode.INVALID_STATE,
  413: ErrorCode.MESSAGE_TOO_LARGE,
  415: ErrorCode.UNSUPPORTED_CONTENT,
  429: ErrorCode.RATE_LIMITED,
};

/** Runs fetch, turning a failure to reach the server into UNAVAILABLE. */
export async function httpFetch(url: string, init?: RequestInit): Promise<Response> {
  const f = (globalThis as { fetch?: typeof fetch }).fetch;
  if (!f) throw new GatewayError(ErrorCode.UNSUPPORTED, 'no fetch() available');
  try {
    return await f(url, init);
  } catch (error) {
    throw new GatewayError(ErrorCode.UNAVAILABLE, 'the server could not be reached', { cause: error });
  }
}

/** The GatewayError of a failed HTTP answer: the server's `{error: {code, message}}`, else one from the status. */
export async function httpError(response: Response): Promise<GatewayError> {
  let body: { error?: { code?: string; message?: string } } | undefined;
  try {
    body = (await response.json()) as typeof body;
  } catch {
    // not JSON
  }
  const code = body?.error?.code || byStatus[response.status] || (response.status >= 500 ? ErrorCode.UNAVAILABLE : ErrorCode.INTERNAL);
  return new GatewayError(code, body?.error?.message || `HTTP ${response.status}`);
}
