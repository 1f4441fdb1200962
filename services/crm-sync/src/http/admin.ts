import type http from 'node:http';
import { ErrorCode, GatewayError, httpBoundary, readJsonBody, sendJson as send, tenantFromBasicAuth, type Logger, type Tenant } from '@gateway/common';
import type { ConnectorStore } from '../connectors/ConnectorStore.js';
import { dataSubjectOf, type DataSubjects } from '../DataSubjects.js';

const MAX_BODY_BYTES = 64 * 1024;

/**
 * The tenants' admin API, authenticated with the tenant's apiKey:apiSecret (HTTP Basic):
 *   GET    /v1/connectors              list (secrets are never returned)
 *   PUT    /v1/connectors/{name}       set {type, config, secrets}
 *   GET    /v1/connectors/{name}
 *   POST   /v1/connectors/{name}/test  connect and check the credentials
 *   DELETE /v1/connectors/{name}
 *   GET    /v1/data-subjects/export?externalId=… | ?crmContactId=…   everything held, as JSON
 *   DELETE /v1/data-subjects?externalId=… | ?crmContactId=…          erase it all
 * A tenant only ever sees, exports or deletes its own.
 */
export function createAdminHandler(tenants: () => readonly Tenant[], connectors: ConnectorStore, dataSubjects: DataSubjects, log: Logger): http.RequestListener {
  const route = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    const tenant = tenantFromBasicAuth(tenants(), req.headers.authorization);
    if (!tenant) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'authenticate with HTTP Basic apiKey:apiSecret');
    if (url.pathname === '/v1/connectors' && req.method === 'GET') return send(res, 200, { connectors: await connectors.list(tenant.name) });
    if (url.pathname === '/v1/data-subjects/export' && req.method === 'GET') {
      return send(res, 200, await dataSubjects.export(tenant.name, dataSubjectOf(url.searchParams)), { 'content-disposition': 'attachment; filename="data-subject-export.json"' });
    }
    if (url.pathname === '/v1/data-subjects' && req.method === 'DELETE') return send(res, 200, await dataSubjects.erase(tenant.name, dataSubjectOf(url.searchParams)));
    const match = /^\/v1\/connectors\/([A-Za-z0-9_-]{1,64})(\/test)?$/.exec(url.pathname);
    if (!match) throw new GatewayError(ErrorCode.NOT_FOUND, 'not found');
    const [, name, test] = match as unknown as [string, string, string | undefined];
    if (test && req.method === 'POST') {
      const destination = await connectors.open(tenant.name, name);
      try {
        await destination.test();
      } finally {
        await destination.close();
      }
      return send(res, 200, { ok: true });
    }
    if (test) return send(res, 405, { error: { code: ErrorCode.BAD_REQUEST, message: 'use POST' } }, { allow: 'POST' });
    switch (req.method) {
      case 'PUT':
        return send(res, 200, await connectors.put(tenant.name, name, await readJsonBody(req, MAX_BODY_BYTES)));
      case 'GET':
        return send(res, 200, await connectors.get(tenant.name, name));
      case 'DELETE':
        await connectors.remove(tenant.name, name);
        return send(res, 204);
      default:
        return send(res, 405, { error: { code: ErrorCode.BAD_REQUEST, message: 'method not allowed' } }, { allow: 'GET, PUT, DELETE' });
    }
  };
  return httpBoundary(route, log, {
    errorHeaders: (code): Record<string, string> => (code === ErrorCode.UNAUTHENTICATED ? { 'www-authenticate': 'Basic realm="gateway"' } : {}),
  });
}
