import type http from 'node:http';
import { ErrorCode, GatewayError, hasBody, httpBoundary, methodNotAllowed, readJsonRequest, refuseQuery, sendJson as send, type Logger, type TenantCredentials } from '@gateway/common';
import type { DirectoryStore } from '../directory/DirectoryStore.js';
import type { DirectoryKind } from '../directory/model.js';

/** A record is small: a queue with a year of closed dates is under 10 KiB. */
const MAX_BODY_BYTES = 32 * 1024;
const BODY_SHAPE = { maxDepth: 5, maxNodes: 2_000 };
const route = /^\/v1\/directory(?:\/(people|teams|queues|profiles)(?:\/([A-Za-z0-9_-]{1,64}))?)?$/;

/** A record's id as logged: a person's id is the tenant's choice and may hold a name, so it is not. */
const shownId = (kind: DirectoryKind, id: string) => (kind === 'people' ? {} : { id });

/**
 * The tenants' directory admin API (docs/routing.md, docs/openapi/routing-admin.yaml),
 * authenticated with one of the tenant's API keys (HTTP Basic apiKey:apiSecret; GATEWAY_TENANTS'
 * or one made through crm-sync's /v1/api-keys):
 *   GET    /v1/directory                       everything: {people, teams, queues, profiles, revision}
 *   GET    /v1/directory/{kind}                one kind (people, teams, queues, profiles), by id
 *   GET    /v1/directory/{kind}/{id}
 *   PUT    /v1/directory/{kind}/{id}           create (201) or replace (200); the body is the record
 *   DELETE /v1/directory/{kind}/{id}           204; refused (409) while something refers to it
 * A tenant only ever sees and changes its own. No route takes a query parameter; only PUT takes
 * a body (JSON), checked by the kind's schema and the directory's references. Pages of the
 * `allowedOrigins` (the admin page) may call it from a browser (CORS, runtime/cors.ts).
 */
export function createDirectoryHandler(credentials: TenantCredentials, store: DirectoryStore, log: Logger, allowedOrigins: readonly string[] = []): http.RequestListener {
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    const tenant = await credentials.fromBasicAuth(req.headers.authorization);
    if (!tenant) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'authenticate with HTTP Basic apiKey:apiSecret');
    const match = route.exec(url.pathname);
    if (!match) throw new GatewayError(ErrorCode.NOT_FOUND, 'not found');
    const [, kind, id] = match as unknown as [string, DirectoryKind | undefined, string | undefined];
    const allowed = id ? ['GET', 'PUT', 'DELETE'] : ['GET'];
    if (!allowed.includes(req.method ?? '')) throw methodNotAllowed(allowed);
    if (req.method !== 'PUT' && hasBody(req)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'this request takes no body');
    refuseQuery(url);
    if (!kind) return send(res, 200, await store.snapshot(tenant.name));
    if (!id) return send(res, 200, { [kind]: await store.list(tenant.name, kind) });
    switch (req.method) {
      case 'GET':
        return send(res, 200, await store.get(tenant.name, kind, id));
      case 'PUT': {
        const { record, created } = await store.put(tenant.name, kind, id, await readRecord(req));
        log.info({ tenant: tenant.name, kind, ...shownId(kind, id), created }, 'directory record written');
        return send(res, created ? 201 : 200, record);
      }
      default:
        await store.remove(tenant.name, kind, id);
        log.info({ tenant: tenant.name, kind, ...shownId(kind, id) }, 'directory record deleted');
        return send(res, 204);
    }
  };
  return httpBoundary(handle, log, {
    cors: { allowedOrigins, methods: ['GET', 'PUT', 'DELETE'] },
    errorHeaders: (code): Record<string, string> => (code === ErrorCode.UNAUTHENTICATED ? { 'www-authenticate': 'Basic realm="gateway"' } : {}),
  });
}

/** A record's JSON body; a body the client cut off (it closed the connection) is its fault, not ours. */
async function readRecord(req: http.IncomingMessage): Promise<unknown> {
  try {
    return await readJsonRequest(req, 'the record', MAX_BODY_BYTES, BODY_SHAPE);
  } catch (error) {
    if (!(error instanceof GatewayError) && req.destroyed) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the body was cut off', { cause: error });
    throw error;
  }
}
