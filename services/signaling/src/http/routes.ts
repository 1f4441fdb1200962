import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import { ZodError } from 'zod';
import { ErrorCode, GatewayError, httpStatusOf, tenantFromBasicAuth, type Logger } from '@gateway/common';
import type { Readable } from 'node:stream';
import type { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { SignalingConfig } from '../config.js';
import { mintJoinToken, mintRequestSchema } from '../auth/tokens.js';

const MAX_TOKEN_BODY_BYTES = 16 * 1024;

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Pretty paths of the demo pages. */
const pageAliases: Record<string, string> = { '/': '/index.html', '/agent': '/agent.html', '/end-user': '/end-user.html' };

/** Smart Action uploads and attachment downloads, served by the replica. */
export interface AttachmentRoutes {
  uploadForAction(actionId: string, authorization: string | undefined, body: Readable): Promise<SmartAction>;
  readonly actions: { download(artifactId: string, token: string): Promise<{ data: Buffer; contentType: string }> };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

function sendError(res: http.ServerResponse, error: GatewayError, path: string): void {
  const headers: Record<string, string> = error.code === ErrorCode.UNAUTHENTICATED && path === '/v1/tokens' ? { 'www-authenticate': 'Basic realm="gateway"' } : {};
  sendJson(res, httpStatusOf(error.code), { error: { code: error.code, message: error.message } }, headers);
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new GatewayError(ErrorCode.FRAME_TOO_LARGE, `the body is limited to ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The public HTTP side of signaling (the WebSocket upgrade is handled by the server): the
 * token endpoint for customers' backends, Smart Action uploads and attachment URLs, the SDK
 * bundle and the demo pages.
 */
export function createHttpHandler(config: SignalingConfig, log: Logger, attachments: AttachmentRoutes): http.RequestListener {
  const publicRoot = path.resolve(config.publicDir);

  async function tokens(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const tenant = tenantFromBasicAuth(config.tenants, req.headers.authorization);
    if (!tenant) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'authenticate with HTTP Basic apiKey:apiSecret');
    const raw = await readBody(req, MAX_TOKEN_BODY_BYTES);
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      throw new GatewayError(ErrorCode.BAD_REQUEST, 'the body must be JSON');
    }
    try {
      const minted = await mintJoinToken(tenant, mintRequestSchema.parse(body));
      sendJson(res, 200, minted);
    } catch (error) {
      if (error instanceof ZodError) {
        throw new GatewayError(ErrorCode.BAD_REQUEST, error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
      }
      throw error;
    }
  }

  async function file(res: http.ServerResponse, filePath: string, cache: string): Promise<boolean> {
    const stat = await fs.stat(filePath).catch(() => undefined);
    if (!stat?.isFile()) return false;
    res.writeHead(200, {
      'content-type': contentTypes[path.extname(filePath)] ?? 'application/octet-stream',
      'content-length': String(stat.size),
      'cache-control': cache,
      'x-content-type-options': 'nosniff',
    });
    createReadStream(filePath).pipe(res);
    return true;
  }

  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = async () => {
      if (url.pathname === '/v1/tokens') {
        if (req.method !== 'POST') return sendJson(res, 405, { error: { code: ErrorCode.BAD_REQUEST, message: 'use POST' } }, { allow: 'POST' });
        return tokens(req, res);
      }
      const upload = /^\/v1\/smart-actions\/([A-Za-z0-9_-]{1,64})\/upload$/.exec(url.pathname);
      const artifact = /^\/v1\/artifacts\/([A-Za-z0-9_-]{1,64})$/.exec(url.pathname);
      if (upload || artifact) {
        // The SDK runs in customers' apps on their own origins. These routes authenticate by a
        // bearer token in the request (never a cookie), so any origin may call them.
        res.setHeader('access-control-allow-origin', '*');
        if (req.method === 'OPTIONS') {
          res.writeHead(204, {
            'access-control-allow-methods': upload ? 'POST' : 'GET',
            'access-control-allow-headers': 'authorization, content-type',
            'access-control-max-age': '600',
          });
          return res.end();
        }
      }
      if (upload) {
        if (req.method !== 'POST') return sendJson(res, 405, { error: { code: ErrorCode.BAD_REQUEST, message: 'use POST' } }, { allow: 'POST' });
        const action = await attachments.uploadForAction(upload[1]!, req.headers.authorization, req);
        return sendJson(res, 201, { actionId: action.actionId, artifactId: action.artifactId, contentType: action.contentType, sizeBytes: Number(action.sizeBytes) });
      }
      if (artifact && req.method === 'GET') {
        const { data, contentType } = await attachments.actions.download(artifact[1]!, url.searchParams.get('token') ?? '');
        res.writeHead(200, {
          'content-type': contentType,
          'content-length': String(data.length),
          'cache-control': 'no-store',
          'content-disposition': 'inline',
          'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'none'",
        });
        return res.end(data);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: { code: ErrorCode.BAD_REQUEST, message: 'method not allowed' } });
      if (url.pathname === '/sdk.js' || url.pathname === '/sdk.js.map') {
        const target = url.pathname === '/sdk.js' ? config.sdkBundle : `${config.sdkBundle}.map`;
        if (await file(res, target, 'no-cache')) return;
        res.writeHead(503, { 'content-type': 'text/plain' });
        return res.end('the SDK bundle is not built: run `make up` (or `npm run build -w @gateway/sdk`)\n');
      }
      const requested = pageAliases[url.pathname] ?? url.pathname;
      const resolved = path.resolve(publicRoot, `.${path.posix.normalize(decodeURIComponent(requested))}`);
      // Never serve anything outside the public folder.
      if (resolved.startsWith(publicRoot + path.sep) && (await file(res, resolved, 'no-cache'))) return;
      sendJson(res, 404, { error: { code: ErrorCode.NOT_FOUND, message: 'not found' } });
    };
    route().catch((error: unknown) => {
      const gatewayError = GatewayError.from(error);
      if (gatewayError.code === ErrorCode.INTERNAL) log.error({ err: error, path: url.pathname }, 'http request failed');
      if (!res.headersSent) {
        // An upload refused before its body was read: the rest of the body is not wanted.
        if (!req.complete) res.setHeader('connection', 'close');
        sendError(res, gatewayError, url.pathname);
      } else res.destroy();
    });
  };
}
