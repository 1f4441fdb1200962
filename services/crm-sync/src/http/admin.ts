import type http from 'node:http';
import {
  type ApiKeyStore,
  ErrorCode,
  GatewayError,
  hasBody,
  httpBoundary,
  methodNotAllowed,
  newReference,
  parseWith,
  readJsonRequest,
  refuseQuery,
  sendJson as send,
  type Logger,
  type NatsConnection,
  type TenantCredentials,
} from '@gateway/common';
import type { ConnectorStore } from '../connectors/ConnectorStore.js';
import { correctionsSchema, dataSubjectOf, type Corrections, type DataSubjects } from '../DataSubjects.js';
import type { WebhookStore } from '../webhooks/WebhookStore.js';
import { apiKeyRouteTakesBody, routeApiKeys } from './apiKeys.js';
import { routeWebhooks, webhookRouteTakesBody } from './webhooks.js';

const MAX_BODY_BYTES = 64 * 1024;
/** A rectification names three short details at most. */
const MAX_CORRECTIONS_BYTES = 4 * 1024;
/** A connector's settings are small and flat: deeper or larger JSON is refused before any schema walks it. */
const BODY_SHAPE = { maxDepth: 8, maxNodes: 2_000 };
/** Connection tests of one tenant running at once (each may wait on a destination until it times out). */
const TESTS_PER_TENANT = 2;

/** The methods of the routes without a name in their path (a 405 names them). */
const collectionMethods: Record<string, string[]> = { '/v1/connectors': ['GET'], '/v1/data-subjects/export': ['GET'], '/v1/data-subjects': ['DELETE', 'PATCH'] };
const connectorName = /^\/v1\/connectors\/([A-Za-z0-9_-]{1,64})(\/test)?$/;

export interface AdminOptions {
  /**
   * A connection test that fails is answered this long after it began, whatever went wrong, and
   * one still running then is answered as failed: refused, timed out and refused by the
   * destination's software look the same from outside, so the test tells nothing of a network.
   */
  connectorTestMs: number;
  /** Origins whose pages (the admin page) may call from a browser (CORS, runtime/cors.ts). */
  allowedOrigins?: readonly string[];
}

/**
 * The tenants' admin API, authenticated with one of the tenant's API keys (HTTP Basic
 * apiKey:apiSecret; GATEWAY_TENANTS' or one made here):
 *   GET    /v1/connectors              list (secrets are never returned)
 *   PUT    /v1/connectors/{name}       set {type, config, secrets}
 *   GET    /v1/connectors/{name}
 *   POST   /v1/connectors/{name}/test  connect and check the credentials: {ok: true}, or one failure
 *   DELETE /v1/connectors/{name}
 *   GET    /v1/data-subjects/export?externalId=… | ?crmContactId=…   everything held, as JSON
 *   DELETE /v1/data-subjects?externalId=… | ?crmContactId=…          erase it all, live rooms included
 *   PATCH  /v1/data-subjects?externalId=… | ?crmContactId=…          correct contact details held
 *          until delivery: {phoneNumber?, crmContactId?, externalId?}
 *   /v1/webhooks…                           the tenant's webhook endpoints (http/webhooks.ts)
 *   /v1/api-keys…                           the tenant's API keys (http/apiKeys.ts)
 * A tenant only ever sees, exports or deletes its own. Query parameters and bodies are checked by
 * schema: a route takes exactly the parameters it names, and only PUT, PATCH and the webhooks'
 * POSTs take a body (JSON), as do the API keys' POSTs.
 */
export function createAdminHandler(
  credentials: TenantCredentials,
  connectors: ConnectorStore,
  dataSubjects: DataSubjects,
  webhooks: WebhookStore,
  apiKeys: ApiKeyStore,
  nc: NatsConnection,
  log: Logger,
  options: AdminOptions = { connectorTestMs: 10_000 },
): http.RequestListener {
  const testsRunning = new Map<string, number>();

  /** Tests a connector; any failure is one answer, at one time. */
  const testConnector = async (tenant: string, name: string) => {
    const destination = await connectors.open(tenant, name).catch((error: unknown) => {
      // No such connector is the tenant's own to know; anything else (a refused or unresolvable
      // address) is a failure like the others.
      if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) throw error;
      return error instanceof Error ? error : new Error('the destination could not be opened');
    });
    const started = performance.now();
    const outcome =
      destination instanceof Error
        ? Promise.resolve<unknown>(destination)
        : destination.test().then(
            () => undefined,
            (error: unknown) => error,
          );
    if (!(destination instanceof Error)) void outcome.finally(() => destination.close());
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), options.connectorTestMs)));
    const first = await Promise.race([outcome, deadline]);
    if (first === undefined) {
      clearTimeout(timer);
      return;
    }
    // Failed (or still running): wait out the rest of the time, so no failure answers sooner than another.
    await deadline;
    const reference = newReference();
    const cause = first === 'late' ? undefined : GatewayError.from(first);
    log.warn(
      { tenant, connector: name, reference, code: cause?.code ?? 'TIMEOUT', reason: cause?.message ?? 'no answer in time', elapsedMs: Math.round(performance.now() - started) },
      'connector test failed',
    );
    throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the connection test failed: check the destination's settings and credentials (reference ${reference})`);
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    const tenant = await credentials.fromBasicAuth(req.headers.authorization);
    if (!tenant) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'authenticate with HTTP Basic apiKey:apiSecret');
    const takesBody = req.method === 'PUT' || req.method === 'PATCH' || webhookRouteTakesBody(req.method, url.pathname) || apiKeyRouteTakesBody(req.method, url.pathname);
    if (!takesBody && hasBody(req)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'this request takes no body');
    if (await routeWebhooks(req, res, url, tenant.name, webhooks, nc)) return;
    if (await routeApiKeys(req, res, url, tenant.name, apiKeys)) return;
    if (url.pathname === '/v1/connectors' && req.method === 'GET') {
      refuseQuery(url);
      return send(res, 200, { connectors: await connectors.list(tenant.name) });
    }
    if (url.pathname === '/v1/data-subjects/export' && req.method === 'GET') {
      const exported = await dataSubjects.export(tenant.name, dataSubjectOf(url.searchParams));
      res.writeHead(200, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'content-disposition': 'attachment; filename="data-subject-export.json"',
      });
      // Streamed: an error from here on cuts the connection (the JSON is then incomplete).
      await exported.writeTo(res);
      res.end();
      return;
    }
    if (url.pathname === '/v1/data-subjects' && req.method === 'DELETE') return send(res, 200, await dataSubjects.erase(tenant.name, dataSubjectOf(url.searchParams)));
    if (url.pathname === '/v1/data-subjects' && req.method === 'PATCH') {
      const subject = dataSubjectOf(url.searchParams);
      return send(res, 200, await dataSubjects.rectify(tenant.name, subject, await readCorrections(req)));
    }
    const allowed = collectionMethods[url.pathname];
    if (allowed) throw methodNotAllowed(allowed);
    const match = connectorName.exec(url.pathname);
    if (!match) throw new GatewayError(ErrorCode.NOT_FOUND, 'not found');
    const [, name, test] = match as unknown as [string, string, string | undefined];
    refuseQuery(url);
    if (test && req.method === 'POST') {
      const running = testsRunning.get(tenant.name) ?? 0;
      if (running >= TESTS_PER_TENANT) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `at most ${TESTS_PER_TENANT} connection tests at once`, { details: { retryAfterMs: options.connectorTestMs } });
      testsRunning.set(tenant.name, running + 1);
      try {
        await testConnector(tenant.name, name);
      } finally {
        const left = (testsRunning.get(tenant.name) ?? 1) - 1;
        if (left > 0) testsRunning.set(tenant.name, left);
        else testsRunning.delete(tenant.name);
      }
      return send(res, 200, { ok: true });
    }
    if (test) throw methodNotAllowed(['POST']);
    switch (req.method) {
      case 'PUT':
        return send(res, 200, await connectors.put(tenant.name, name, await readConnectorBody(req)));
      case 'GET':
        return send(res, 200, await connectors.get(tenant.name, name));
      case 'DELETE':
        await connectors.remove(tenant.name, name);
        return send(res, 204);
      default:
        throw methodNotAllowed(['GET', 'PUT', 'DELETE']);
    }
  };
  return httpBoundary(route, log, {
    cors: { allowedOrigins: options.allowedOrigins ?? [], methods: ['GET', 'PUT', 'POST', 'PATCH', 'DELETE'] },
    errorHeaders: (code): Record<string, string> => (code === ErrorCode.UNAUTHENTICATED ? { 'www-authenticate': 'Basic realm="gateway"' } : {}),
  });
}

/** A connector's JSON body: its media type, its size, then its shape, before the connector's schemas see it. */
async function readConnectorBody(req: http.IncomingMessage): Promise<unknown> {
  return readJsonRequest(req, 'the connector', MAX_BODY_BYTES, BODY_SHAPE);
}

/** A rectification's body, checked by its schema. */
async function readCorrections(req: http.IncomingMessage): Promise<Corrections> {
  return parseWith(correctionsSchema, await readJsonRequest(req, 'the corrections', MAX_CORRECTIONS_BYTES, BODY_SHAPE), 'the body');
}
