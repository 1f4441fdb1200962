import type http from 'node:http';
import { z } from 'zod';

/**
 * Cross-origin calls to the tenants' admin APIs (routing's directory, crm-sync's API keys and
 * connectors) from pages on other origins: the admin page signaling serves (docs/using.md).
 *
 * Only the origins configured are let in, never a wildcard, and never with credentials mode: the
 * page sends the tenant's apiKey:apiSecret itself in an Authorization header, so the browser adds
 * no cookie or remembered login of its own, and every real request is authenticated as any other.
 * A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin is answered at
 * once, with no body and nothing read: it carries no credentials and tells nothing of the tenant.
 * Any other request, a preflight from another origin included, goes to the route as usual
 * (which refuses it without credentials) and gets no CORS headers, so the browser keeps its
 * answer from the page that asked.
 */
export interface CorsPolicy {
  /** Origins (scheme://host[:port]) whose pages may call. */
  readonly allowedOrigins: readonly string[];
  /** Methods the API takes, named in a preflight's answer. */
  readonly methods: readonly string[];
}

/** Request headers a page may send: its credentials and the body's type. */
const ALLOWED_HEADERS = 'authorization, content-type';
/** Answer headers a page may read beside the safelisted ones: when to try again, what a 405 takes. */
const EXPOSED_HEADERS = 'retry-after, allow';
/** How long a browser may reuse a preflight's answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/** One origin as a browser sends it: http(s), a host, an optional port, nothing else. */
const originSchema = z.string().refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value;
  } catch {
    return false;
  }
}, 'must be origins such as https://gateway.example.com (scheme, host and port only, no path or trailing slash), separated by commas');

/**
 * ADMIN_ALLOWED_ORIGINS: the origins whose pages may call this service's admin API, separated by
 * commas. Empty (the default): none, the API is for backends only.
 */
export const adminOriginsShape = {
  ADMIN_ALLOWED_ORIGINS: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((origin) => origin.trim())
        .filter(Boolean),
    )
    .pipe(z.array(originSchema).max(20)),
};

/**
 * Applies the policy before the route: the Access-Control-* headers for an allowed origin (on
 * every answer, errors included, so the page reads their codes); true when the request was a
 * preflight and has been answered.
 */
export function applyCors(req: http.IncomingMessage, res: http.ServerResponse, policy: CorsPolicy): boolean {
  if (policy.allowedOrigins.length === 0) return false;
  // The answers differ by origin: a cache must not give one origin's to another.
  res.setHeader('vary', 'origin');
  const origin = req.headers.origin;
  if (origin === undefined || !policy.allowedOrigins.includes(origin)) return false;
  res.setHeader('access-control-allow-origin', origin);
  const preflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
  if (!preflight) {
    res.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
    return false;
  }
  res.writeHead(204, {
    'access-control-allow-methods': policy.methods.join(', '),
    'access-control-allow-headers': ALLOWED_HEADERS,
    'access-control-max-age': String(PREFLIGHT_MAX_AGE_SECONDS),
    'cache-control': 'no-store',
  });
  res.end();
  return true;
}
