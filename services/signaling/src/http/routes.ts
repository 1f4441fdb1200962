import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import { ErrorCode, GatewayError, httpBoundary, methodNotAllowed, parseWith, readJsonRequest, refuseQuery, sendJson, type Logger, type Tenant, type TenantCredentials } from '@gateway/common';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { SignalingConfig } from '../config.js';
import { mintJoinToken, mintRequestSchema } from '../auth/tokens.js';
import type { RoomService } from '../rooms/RoomService.js';
import { createRoomRoutes } from './rooms.js';

const MAX_TOKEN_BODY_BYTES = 16 * 1024;
/** A token request is flat: its fields, two short arrays (sources, deviceIds). */
const TOKEN_BODY_SHAPE = { maxDepth: 2, maxNodes: 64 };

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

/** /sdk/<semantic version>/gateway.min.js(.map): the version and the file name. */
const SDK_VERSIONED_PATH = /^\/sdk\/(\d{1,9}\.\d{1,9}\.\d{1,9}(?:-[0-9A-Za-z.-]{1,64})?)\/(gateway\.min\.js(?:\.map)?)$/;
const SDK_VERSIONED_CACHE = 'public, max-age=31536000, immutable';
/** Short: a deploy reaches every page within five minutes. */
const SDK_LATEST_CACHE = 'public, max-age=300';
const SDK_HEADERS = { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' };

/** Pretty paths of the demo pages and the admin page. */
const pageAliases: Record<string, string> = { '/': '/index.html', '/agent': '/agent.html', '/end-user': '/end-user.html', '/supervisor': '/supervisor.html', '/admin': '/admin.html' };

/** Smart Action uploads and attachment downloads, served by the replica. */
export interface AttachmentRoutes {
  uploadForAction(actionId: string, authorization: string | undefined, body: Readable): Promise<SmartAction>;
  readonly actions: { download(artifactId: string, token: string): Promise<{ data: Buffer; contentType: string }> };
}

/** The routes of tenants' backends, authenticated with the tenant's apiKey:apiSecret (HTTP Basic). */
const isTenantRoute = (pathname: string) => pathname === '/v1/tokens' || pathname === '/v1/rooms' || pathname.startsWith('/v1/rooms/');

/**
 * The public HTTP side of signaling (the WebSocket upgrade is handled by the server): the
 * token endpoint and the room API for customers' backends, Smart Action uploads and attachment
 * URLs, the SDK bundle, the demo pages and the admin page. The contract is docs/openapi/signaling.yaml.
 */
export function createHttpHandler(
  config: SignalingConfig,
  log: Logger,
  attachments: AttachmentRoutes,
  roomApi: { service: RoomService; observe: (operation: string, code: string) => void },
  credentials: TenantCredentials,
): http.RequestListener {
  const publicRoot = path.resolve(config.publicDir);
  const rooms = createRoomRoutes(roomApi.service, roomApi.observe);

  /** The tenant whose backend calls, from HTTP Basic apiKey:apiSecret (any of its keys); UNAUTHENTICATED otherwise. */
  async function tenantOf(req: http.IncomingMessage): Promise<Tenant> {
    const tenant = await credentials.fromBasicAuth(req.headers.authorization);
    if (!tenant) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'authenticate with HTTP Basic apiKey:apiSecret');
    return tenant;
  }

  /** POST /v1/tokens, under the room API's rules: credentials first, then method, query, media type, size, shape and schema. */
  async function tokens(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const tenant = await tenantOf(req);
    if (req.method !== 'POST') throw methodNotAllowed(['POST']);
    refuseQuery(url);
    const body = await readJsonRequest(req, 'the token request', MAX_TOKEN_BODY_BYTES, TOKEN_BODY_SHAPE);
    sendJson(res, 200, await mintJoinToken(tenant, parseWith(mintRequestSchema, body, 'the body')));
  }

  async function file(res: http.ServerResponse, filePath: string, cache: string, headers: Record<string, string> = {}): Promise<boolean> {
    const stat = await fs.stat(filePath).catch(() => undefined);
    if (!stat?.isFile()) return false;
    res.writeHead(200, {
      'content-type': contentTypes[path.extname(filePath)] ?? 'application/octet-stream',
      'content-length': String(stat.size),
      'cache-control': cache,
      'x-content-type-options': 'nosniff',
      ...headers,
    });
    // A file that goes away under the read ends this answer, not the process.
    pipeline(createReadStream(filePath), res).catch(() => res.destroy());
    return true;
  }

  const route = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    if (url.pathname === '/v1/tokens') return tokens(req, res, url);
    if (isTenantRoute(url.pathname)) return rooms(await tenantOf(req), req, res, url);
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
      if (req.method !== 'POST') throw methodNotAllowed(['POST']);
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
    if (artifact) throw methodNotAllowed(['GET']);
    if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(['GET', 'HEAD']);
    // The SDK's bundle, loaded by customers' pages from their own origins (so any origin may
    // read it, as a crossorigin script with an integrity hash must be): /sdk.js is the latest,
    // cached briefly; /sdk/<version>/ never changes, so it is cached for a year (docs/sdk.md).
    if (url.pathname === '/sdk.js' || url.pathname === '/sdk.js.map') {
      const target = url.pathname === '/sdk.js' ? config.sdkBundle : `${config.sdkBundle}.map`;
      if (await file(res, target, SDK_LATEST_CACHE, SDK_HEADERS)) return;
      res.writeHead(503, { 'content-type': 'text/plain' });
      return res.end('the SDK bundle is not built: run `make up` (or `npm run build -w @gateway/sdk`)\n');
    }
    const versioned = SDK_VERSIONED_PATH.exec(url.pathname);
    if (versioned) {
      if (await file(res, path.join(config.sdkVersionsDir, versioned[1]!, versioned[2]!), SDK_VERSIONED_CACHE, SDK_HEADERS)) return;
      return sendJson(res, 404, { error: { code: ErrorCode.NOT_FOUND, message: 'no such SDK version' } });
    }
    const requested = safeDecode(pageAliases[url.pathname] ?? url.pathname);
    if (requested === undefined || requested.includes('\0')) return sendJson(res, 404, { error: { code: ErrorCode.NOT_FOUND, message: 'not found' } });
    const resolved = path.resolve(publicRoot, `.${path.posix.normalize(requested)}`);
    // Never serve anything outside the public folder.
    if (resolved.startsWith(publicRoot + path.sep) && (await file(res, resolved, 'no-cache'))) return;
    sendJson(res, 404, { error: { code: ErrorCode.NOT_FOUND, message: 'not found' } });
  };
  // Only the tenants' routes answer an authentication challenge (the others take bearer tokens).
  return httpBoundary(route, log, {
    errorHeaders: (code, url): Record<string, string> => (code === ErrorCode.UNAUTHENTICATED && url && isTenantRoute(url.pathname) ? { 'www-authenticate': 'Basic realm="gateway"' } : {}),
  });
}

/** A percent-decoded path, or undefined when its escapes are malformed. */
function safeDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}
