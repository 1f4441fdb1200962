import type http from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import { toClientError } from './clientErrors.js';
import { applyCors, type CorsPolicy } from './cors.js';
import { ErrorCode, GatewayError, httpStatusOf } from '../errors.js';
import { jsonShapeProblem, parseWith, type JsonLimits } from '../schemas/validation.js';

const noQuery = z.object({}).strict();

/**
 * The public HTTP boundary, once for every server of ours: the request's URL parsed where a bad
 * one becomes a 400, every error mapped to a status and a client error once, nothing thrown out
 * of a handler, and timeouts that keep slow senders from holding connections.
 */

/** The request target as a URL; undefined when it does not parse (`//a:99999/`, `http://[`). */
export function requestUrl(req: http.IncomingMessage): URL | undefined {
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // Only origin-form targets ("/path?query") are ours to serve; an absolute or authority form
    // names another host.
    return req.url?.startsWith('/') && !req.url.startsWith('//') ? url : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a whole body up to `limit` bytes; over it, FRAME_TOO_LARGE (HTTP 413). */
export async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw new GatewayError(ErrorCode.FRAME_TOO_LARGE, `the body is limited to ${limit} bytes`);
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new GatewayError(ErrorCode.FRAME_TOO_LARGE, `the body is limited to ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A JSON body; anything else is MALFORMED_MESSAGE. */
export async function readJsonBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  const body = await readBody(req, limit);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the body must be JSON');
  }
}

/** Refuses (400 BAD_REQUEST) any query parameter on a route that takes none. */
export function refuseQuery(url: URL): void {
  parseWith(noQuery, Object.fromEntries(url.searchParams), 'the query');
}

/** Whether the request carries a body (declared by length or by chunked encoding). */
export function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/**
 * A JSON body of an API request, before any schema walks it: `application/json` by media type
 * (else UNSUPPORTED_CONTENT, 415), within `maxBytes` (413), JSON (400) and of a bounded shape (400).
 */
export async function readJsonRequest(req: http.IncomingMessage, what: string, maxBytes: number, shape: JsonLimits): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new GatewayError(ErrorCode.UNSUPPORTED_CONTENT, `send ${what} as application/json`);
  const body = await readJsonBody(req, maxBytes);
  const problem = jsonShapeProblem(body, shape);
  if (problem) throw new GatewayError(ErrorCode.BAD_REQUEST, `the body is refused: ${problem}`);
  return body;
}

export function sendJson(res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

export type Route = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<unknown> | unknown;

export interface HttpBoundaryOptions {
  /** Extra headers for an error answer (a `www-authenticate` challenge). */
  errorHeaders?: (code: ErrorCode, url: URL | undefined) => Record<string, string>;
  /** Pages of these origins may call (cors.ts); preflights are answered before the route. */
  cors?: CorsPolicy;
}

/**
 * Wraps a route into a request listener that never throws: a bad URL is a 400, an error becomes
 * `{error: {code, message}}` with its status (internal details logged under a reference), and a
 * failure after the answer started cuts the connection.
 */
export function httpBoundary(route: Route, log: Logger, options: HttpBoundaryOptions = {}): http.RequestListener {
  return (req, res) => {
    const url = requestUrl(req);
    const fail = (error: unknown) => {
      const client = toClientError(error, log, { method: req.method, path: url?.pathname });
      if (res.headersSent || res.destroyed) {
        res.destroy();
        return;
      }
      // A request refused before its body was read: the rest of the body is not wanted.
      if (!req.complete) res.setHeader('connection', 'close');
      const extra = options.errorHeaders?.(client.code, url) ?? {};
      const retry: Record<string, string> = client.retryAfterMs !== undefined ? { 'retry-after': String(Math.ceil(client.retryAfterMs / 1000)) } : {};
      // A 405 names the methods the resource takes (methodNotAllowed).
      const allow = client.code === ErrorCode.METHOD_NOT_ALLOWED ? GatewayError.from(error).details.allow : undefined;
      const allowHeader: Record<string, string> = typeof allow === 'string' ? { allow } : {};
      sendJson(res, httpStatusOf(client.code), { error: { code: client.code, message: client.message } }, { ...retry, ...allowHeader, ...extra });
    };
    if (!url) return fail(new GatewayError(ErrorCode.BAD_REQUEST, 'the request target is not a valid path'));
    if (options.cors && applyCors(req, res, options.cors)) return;
    try {
      const result = route(req, res, url);
      if (result instanceof Promise) result.then(undefined, fail);
    } catch (error) {
      fail(error);
    }
  };
}

/**
 * Timeouts for a public server: headers must arrive quickly, a whole request within
 * `requestTimeoutMs`, and an idle keep-alive connection is closed soon.
 */
export function hardenHttpServer(server: http.Server, options: { requestTimeoutMs?: number; headersTimeoutMs?: number; maxHeadersCount?: number } = {}): void {
  server.headersTimeout = options.headersTimeoutMs ?? 10_000;
  server.requestTimeout = options.requestTimeoutMs ?? 120_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = options.maxHeadersCount ?? 100;
  // A client that resets or sends garbage gets its connection closed, never an exception.
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
}

/** Starts listening; resolves with the bound port (the configured one, or the one given for port 0). */
export async function listenHttp(server: http.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

/** Stops listening and ends every connection, kept-alive ones included; safe to call twice. */
export function closeHttp(server: http.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
