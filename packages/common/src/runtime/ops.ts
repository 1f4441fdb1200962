import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { z } from 'zod';
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import { ErrorCode, GatewayError } from '../errors.js';
import { closeHttp, listenHttp } from './http.js';
import { fileReloads } from './watchedFiles.js';

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
   * Starts a drain: POST /drain, or GET /drain with the header `x-gateway-drain`, called before
   * SIGTERM arrives so the node stops taking work at once. Only the node itself (a loopback
   * peer) or a caller with `drainToken` (`Authorization: Bearer <token>`) may drain it; anyone
   * else gets 403 and nothing happens. A plain GET is refused, so a page in a browser on the
   * host cannot start a drain. Without it, /drain is 404.
   */
  drain?: () => Promise<void>;
  /** The bearer token that lets a caller other than the node itself drain it (`readDrainToken`), or call `actions`. */
  drainToken?: string;
  /**
   * Operations on the node's data (crm-sync's /residue), guarded like /drain: only the node
   * itself or a caller with the token; the answer is the operation's JSON.
   */
  actions?: Record<string, { method: 'GET' | 'POST'; run: () => Promise<unknown> }>;
}

/** OPS_DRAIN_TOKEN_FILE: the file with the token that lets other addresses than loopback call /drain. */
export const opsDrainShape = {
  OPS_DRAIN_TOKEN_FILE: z.string().min(1).optional(),
};

/**
 * The drain token from its file. A file that does not exist is created with a fresh random
 * token (mode 0600), so a hook in the same container can read it without any secret to
 * distribute; a file that exists must hold at least 32 printable characters.
 */
export function readDrainToken(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    if (!existsSync(file)) {
      try {
        writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
      } catch (error) {
        // Another process made it first: read theirs.
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    const token = readFileSync(file, 'utf8').trim();
    if (!/^[\x21-\x7e]{32,4096}$/.test(token)) throw new Error('too short or not printable');
    return token;
  } catch (error) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, 'invalid configuration:\n  OPS_DRAIN_TOKEN_FILE: cannot read (or create) a token of at least 32 printable characters', { cause: error });
  }
}

/** Whether a connection comes from this machine's loopback: the node itself. */
function fromLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (net.isIPv4(v4)) return v4.startsWith('127.');
  return address === '::1';
}

/** Compares a presented bearer token with ours in constant time (both hashed to one length first). */
function bearerMatches(header: string | undefined, token: string | undefined): boolean {
  if (!token || !header) return false;
  const match = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(header);
  if (!match) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(match[1]!), digest(token));
}

export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  // prom-client's process and Node.js metrics keep their own subsystems under our prefix:
  // gateway_process_cpu_seconds_total, gateway_nodejs_eventloop_lag_seconds, ...
  collectDefaultMetrics({ register: registry, prefix: 'gateway_' });
  // Certificates and keys taken up while running: a rejected file is an alert, the old contents stay in use.
  const reloads = new Counter({
    name: 'gateway_config_reloads_total',
    help: 'Watched certificate and key files taken up again (outcome reloaded) or refused, the contents in use kept (outcome rejected)',
    labelNames: ['source', 'outcome'],
    registers: [registry],
  });
  fileReloads.on('reloaded', (source) => reloads.inc({ source, outcome: 'reloaded' }));
  fileReloads.on('rejected', (source) => reloads.inc({ source, outcome: 'rejected' }));
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
      if (!fromLoopback(req.socket.remoteAddress) && !bearerMatches(req.headers.authorization, options.drainToken)) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end('{"error":"only the node itself, or a caller with the drain token, may drain it"}');
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
    const action = path ? options.actions?.[path] : undefined;
    if (action) {
      if (req.method !== action.method) {
        res.writeHead(405, { 'content-type': 'application/json', allow: action.method });
        res.end(JSON.stringify({ error: `${action.method} ${path}` }));
        return;
      }
      if (!fromLoopback(req.socket.remoteAddress) && !bearerMatches(req.headers.authorization, options.drainToken)) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end('{"error":"only the node itself, or a caller with the ops token, may call it"}');
        return;
      }
      action.run().then(
        (result) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(result));
        },
        () => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"error":"failed"}');
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
  const port = await listenHttp(server, options.port, options.host ?? '0.0.0.0');
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= closeHttp(server));
  return { server, port, close };
}
