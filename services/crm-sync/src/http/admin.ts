import type http from 'node:http';
import { ErrorCode, GatewayError, httpStatusOf, tenantFromBasicAuth, type Logger, type Tenant } from '@gateway/common';
import type { ConnectorStore } from '../connectors/ConnectorStore.js';
import { dataSubjectOf, type DataSubjects } from '../DataSubjects.js';

const MAX_BODY_BYTES = 64 * 1024;

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new GatewayError(ErrorCode.FRAME_TOO_LARGE, `the body is limited to ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the body must be JSON');
  }
}

function send(res: http.ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

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
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = async () => {
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
          return send(res, 200, await connectors.put(tenant.name, name, await readJson(req)));
        case 'GET':
          return send(res, 200, await connectors.get(tenant.name, name));
        case 'DELETE':
          await connectors.remove(tenant.name, name);
          return send(res, 204);
        default:
          return send(res, 405, { error: { code: ErrorCode.BAD_REQUEST, message: 'method not allowed' } }, { allow: 'GET, PUT, DELETE' });
      }
    };
    route().catch((error: unknown) => {
      const gatewayError = GatewayError.from(error);
      if (gatewayError.code === ErrorCode.INTERNAL) log.error({ err: error, path: url.pathname }, 'admin request failed');
      if (res.headersSent) return res.destroy();
      const headers: Record<string, string> = gatewayError.code === ErrorCode.UNAUTHENTICATED ? { 'www-authenticate': 'Basic realm="gateway"' } : {};
      send(res, httpStatusOf(gatewayError.code), { error: { code: gatewayError.code, message: gatewayError.message } }, headers);
    });
  };
}
