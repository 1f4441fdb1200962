import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * The HTTP plumbing every contract server shares: a server on a free local port that closes with
 * its connections, and request bodies read whole, up to a limit, as a JSON object, or thrown
 * away. What each provider answers stays in its own server.
 */

export interface LocalServer {
  /** `http://127.0.0.1:<port>`, or `https://` with `tls`. */
  readonly url: string;
  readonly port: number;
  /** TCP connections accepted so far: a client that keeps its connections alive makes few. */
  readonly connections: number;
  /** Stops listening and cuts every connection, a request held by an injected fault included, so a test never waits on one. */
  close(): Promise<void>;
}

/**
 * Serves `handle` on a free port of 127.0.0.1, over TLS with `tls` (a certificate and its key,
 * PEM). When `handle` fails, `onFailure` answers; by default the connection is closed, which is
 * what a client that cut its request short (its body could not be read) gets from the real services.
 */
export async function serveLocally(
  handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>,
  onFailure: (res: http.ServerResponse) => void = (res) => res.destroy(),
  tls?: { cert: Buffer; key: Buffer },
): Promise<LocalServer> {
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => void handle(req, res).catch(() => onFailure(res));
  const server = tls ? https.createServer(tls, listener) : http.createServer(listener);
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    get connections() {
      return connections;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The whole body. */
export function readBody(req: http.IncomingMessage): Promise<Buffer>;
/** The body, or undefined once it passes `limit` bytes: the rest is read and discarded, so an answer can still be sent. */
export function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined>;
export async function readBody(req: http.IncomingMessage, limit = Number.POSITIVE_INFINITY): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) over = true;
    if (!over) chunks.push(chunk as Buffer);
  }
  return over ? undefined : Buffer.concat(chunks);
}

/** Reads and discards the body of a request that is refused, so the refusal reaches the client. */
export async function drain(req: http.IncomingMessage): Promise<void> {
  for await (const _ of req) {
    // discard
  }
}

/**
 * The body parsed as a JSON object; undefined when it is over `limit` bytes, not JSON, or JSON but
 * not an object. The default limit is far above any JSON body the adapters send.
 */
export async function readJsonObject(req: http.IncomingMessage, limit = 1024 * 1024): Promise<Record<string, unknown> | undefined> {
  const body = await readBody(req, limit);
  return body && parseJsonObject(body);
}

/** The bytes parsed as a JSON object; undefined when they are not JSON, or JSON but not an object (an array, a string, null). */
export function parseJsonObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
