import http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Each service answers /healthz (the process works), /readyz (it should get traffic) and
 * /metrics on its own operations port, apart from any public traffic.
 */
export interface OpsServerOptions {
  port: number;
  host?: string;
  registry: Registry;
  /** Returns undefined when healthy, or the reason it is not. */
  health?: () => string | undefined;
  /** Returns undefined when ready, or the reason it is not (draining, dependency down, ...). */
  readiness?: () => string | undefined;
  /**
   * Starts a drain: POST /drain, or GET /drain with the header `x-gateway-drain` (what a
   * Kubernetes preStop httpGet can send), called before SIGTERM arrives so the node stops taking
   * work at once. A plain GET is refused, so a page in a browser on the host cannot start a
   * drain. Without it, /drain is 404.
   */
  drain?: () => Promise<void>;
}

export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  // prom-client's process and Node.js metrics keep their own subsystems under our prefix:
  // gateway_process_cpu_seconds_total, gateway_nodejs_eventloop_lag_seconds, ...
  collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  return registry;
}

export async function startOpsServer(options: OpsServerOptions): Promise<{ server: http.Server; port: number; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const answer = (check: (() => string | undefined) | undefined) => {
      const problem = check?.();
      res.writeHead(problem ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(problem ? { status: 'unavailable', reason: problem } : { status: 'ok' }));
    };
    if (path === '/healthz') return answer(options.health);
    if (path === '/readyz') return answer(options.readiness);
    if (path === '/drain' && options.drain) {
      if (req.method !== 'POST' && !(req.method === 'GET' && req.headers['x-gateway-drain'])) {
        res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' });
        res.end('{"error":"POST /drain, or GET with the x-gateway-drain header"}');
        return;
      }
      options.drain().then(
        () => {
          res.writeHead(202, { 'content-type': 'application/json' });
          res.end('{"status":"draining"}');
        },
        () => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"error":"drain failed"}');
        },
      );
      return;
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': options.registry.contentType });
          res.end(body);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not found"}');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
  return { server, port, close };
}
