import type http from 'node:http';
import { type ApiKeyStore, hasBody, methodNotAllowed, readJsonRequest, refuseQuery, sendJson as send } from '@gateway/common';

const MAX_BODY_BYTES = 4 * 1024;
const BODY_SHAPE = { maxDepth: 2, maxNodes: 20 };
const collection = '/v1/api-keys';
const member = /^\/v1\/api-keys\/([A-Za-z0-9_-]{1,64})(?:\/(rotate))?$/;

/** Whether the request is one of these routes' and takes a body (the admin API refuses bodies elsewhere). */
export function apiKeyRouteTakesBody(method: string | undefined, path: string): boolean {
  if (path === collection) return method === 'POST';
  const match = member.exec(path);
  return match !== null && match[2] === 'rotate' && method === 'POST';
}

/**
 * The tenant's API keys (docs/http-api.md); false when the path is not one of theirs. A secret is
 * in the answer that made it, and nowhere else.
 *   GET    /v1/api-keys                  list (no secrets)
 *   POST   /v1/api-keys                  {label} → 201 {keyId, secret, ...}
 *   GET    /v1/api-keys/{keyId}
 *   POST   /v1/api-keys/{keyId}/rotate   {overlapSeconds?} → {keyId, secret, ...}; the old secret is taken until the overlap ends
 *   DELETE /v1/api-keys/{keyId}          revoke: refused from then on → 204
 */
export async function routeApiKeys(req: http.IncomingMessage, res: http.ServerResponse, url: URL, tenant: string, keys: ApiKeyStore): Promise<boolean> {
  const body = () => readJsonRequest(req, 'the API key request', MAX_BODY_BYTES, BODY_SHAPE);
  if (url.pathname === collection) {
    refuseQuery(url);
    if (req.method === 'GET') send(res, 200, { apiKeys: await keys.list(tenant) });
    else if (req.method === 'POST') send(res, 201, await keys.create(tenant, await body()));
    else throw methodNotAllowed(['GET', 'POST']);
    return true;
  }
  const match = member.exec(url.pathname);
  if (!match) return false;
  refuseQuery(url);
  const [, keyId, action] = match as unknown as [string, string, 'rotate' | undefined];
  if (action === 'rotate') {
    if (req.method !== 'POST') throw methodNotAllowed(['POST']);
    send(res, 200, await keys.rotate(tenant, keyId, hasBody(req) ? await body() : {}));
    return true;
  }
  switch (req.method) {
    case 'GET':
      send(res, 200, await keys.get(tenant, keyId));
      break;
    case 'DELETE':
      await keys.revoke(tenant, keyId);
      send(res, 204);
      break;
    default:
      throw methodNotAllowed(['GET', 'DELETE']);
  }
  return true;
}
