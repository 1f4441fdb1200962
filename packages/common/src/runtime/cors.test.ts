import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, GatewayError } from '../errors.js';
import { loadConfig } from './config.js';
import { adminOriginsShape } from './cors.js';
import { closeHttp, httpBoundary, listenHttp, sendJson } from './http.js';
import { createLogger } from './logger.js';

const PAGE = 'http://localhost:8080';
const OTHER = 'https://elsewhere.example';
const CREDENTIALS = `Basic ${Buffer.from('key:secret').toString('base64')}`;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A request as a browser sends it (node's own client: the Origin header is ours to set). */
function request(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * The boundary with a CORS policy, over a route that authenticates like the admin APIs (HTTP
 * Basic) and counts what reaches it: a preflight must never stand in for the real request.
 */
describe('CORS on the admin APIs', () => {
  const reached: string[] = [];
  const route = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    reached.push(`${req.method} ${url.pathname}`);
    if (req.headers.authorization !== CREDENTIALS) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'authenticate with HTTP Basic apiKey:apiSecret');
    if (req.method === 'PUT') throw new GatewayError(ErrorCode.BAD_REQUEST, 'the body is invalid: name: too short');
    sendJson(res, 200, { secretData: 'only with credentials' });
  };
  const log = createLogger('test', 'silent');
  let open: http.Server;
  let closed: http.Server;
  const port = (server: http.Server) => (server.address() as { port: number }).port;

  beforeAll(async () => {
    open = http.createServer(httpBoundary(route, log, { cors: { allowedOrigins: [PAGE], methods: ['GET', 'PUT', 'DELETE'] } }));
    closed = http.createServer(httpBoundary(route, log, { cors: { allowedOrigins: [], methods: ['GET'] } }));
    await listenHttp(open, 0, '127.0.0.1');
    await listenHttp(closed, 0, '127.0.0.1');
  });
  afterAll(async () => {
    await closeHttp(open);
    await closeHttp(closed);
  });

  it('answers an allowed origin’s preflight itself, naming the methods and headers, and the route never sees it', async () => {
    reached.length = 0;
    const answer = await request(port(open), 'OPTIONS', '/v1/directory/queues/q1', {
      origin: PAGE,
      'access-control-request-method': 'PUT',
      'access-control-request-headers': 'authorization, content-type',
    });
    expect(answer.status).toBe(204);
    expect(answer.body).toBe('');
    expect(answer.headers['access-control-allow-origin']).toBe(PAGE);
    expect(answer.headers['access-control-allow-methods']).toBe('GET, PUT, DELETE');
    expect(answer.headers['access-control-allow-headers']).toBe('authorization, content-type');
    expect(answer.headers['access-control-allow-credentials']).toBeUndefined();
    expect(answer.headers.vary).toBe('origin');
    expect(reached).toEqual([]);
  });

  it('lets an allowed origin read the answers of real requests, errors with their codes included', async () => {
    const ok = await request(port(open), 'GET', '/v1/directory', { origin: PAGE, authorization: CREDENTIALS });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(PAGE);
    expect(ok.headers['access-control-expose-headers']).toBe('retry-after, allow');
    const invalid = await request(port(open), 'PUT', '/v1/directory/queues/q1', { origin: PAGE, authorization: CREDENTIALS, 'content-type': 'application/json' }, '{}');
    expect(invalid.status).toBe(400);
    expect(invalid.headers['access-control-allow-origin']).toBe(PAGE);
    expect(JSON.parse(invalid.body)).toEqual({ error: { code: ErrorCode.BAD_REQUEST, message: 'the body is invalid: name: too short' } });
  });

  it('never lets a preflight stand in for credentials: the real request from an allowed origin is authenticated as any other', async () => {
    reached.length = 0;
    const preflight = await request(port(open), 'OPTIONS', '/v1/directory', { origin: PAGE, 'access-control-request-method': 'GET' });
    expect(preflight.status).toBe(204);
    const real = await request(port(open), 'GET', '/v1/directory', { origin: PAGE });
    expect(real.status).toBe(401);
    expect(JSON.parse(real.body).error.code).toBe(ErrorCode.UNAUTHENTICATED);
    expect(real.body).not.toContain('secretData');
    const wrong = await request(port(open), 'GET', '/v1/directory', { origin: PAGE, authorization: `Basic ${Buffer.from('key:guess').toString('base64')}` });
    expect(wrong.status).toBe(401);
    // An OPTIONS that is no preflight is an ordinary request: to the route, and refused there.
    const options = await request(port(open), 'OPTIONS', '/v1/directory', { origin: PAGE });
    expect(options.status).toBe(401);
    expect(reached).toEqual(['GET /v1/directory', 'GET /v1/directory', 'OPTIONS /v1/directory']);
  });

  it('gives other origins no CORS headers at all, on preflights and real requests alike', async () => {
    reached.length = 0;
    const preflight = await request(port(open), 'OPTIONS', '/v1/directory', { origin: OTHER, 'access-control-request-method': 'GET' });
    expect(preflight.status).toBe(401);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    expect(preflight.headers['access-control-allow-methods']).toBeUndefined();
    const real = await request(port(open), 'GET', '/v1/directory', { origin: OTHER, authorization: CREDENTIALS });
    expect(real.status).toBe(200);
    expect(real.headers['access-control-allow-origin']).toBeUndefined();
    expect(real.headers.vary).toBe('origin');
    // A prefix of an allowed origin, or one with another port, is another origin.
    for (const near of [`${PAGE}.evil.example`, 'http://localhost:8081', 'null']) {
      const answer = await request(port(open), 'GET', '/v1/directory', { origin: near, authorization: CREDENTIALS });
      expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    }
    expect(reached).toEqual(['OPTIONS /v1/directory', 'GET /v1/directory', 'GET /v1/directory', 'GET /v1/directory', 'GET /v1/directory']);
  });

  it('adds nothing when no origin is allowed (the default: the API is for backends)', async () => {
    const preflight = await request(port(closed), 'OPTIONS', '/v1/directory', { origin: PAGE, 'access-control-request-method': 'GET' });
    expect(preflight.status).toBe(401);
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    const real = await request(port(closed), 'GET', '/v1/directory', { origin: PAGE, authorization: CREDENTIALS });
    expect(real.headers['access-control-allow-origin']).toBeUndefined();
    expect(real.headers.vary).toBeUndefined();
  });
});

describe('ADMIN_ALLOWED_ORIGINS', () => {
  const read = (value?: string) => loadConfig(adminOriginsShape, { ADMIN_ALLOWED_ORIGINS: value }).ADMIN_ALLOWED_ORIGINS;

  it('is empty unless set, and takes origins separated by commas', () => {
    expect(read()).toEqual([]);
    expect(read(' http://localhost:8080, https://admin.example.com ')).toEqual(['http://localhost:8080', 'https://admin.example.com']);
  });

  it('refuses anything that is not an origin: a wildcard, a path, a trailing slash, another scheme', () => {
    for (const bad of ['*', 'https://admin.example.com/', 'https://admin.example.com/admin', 'ftp://admin.example.com', 'admin.example.com', 'null']) {
      expect(() => read(bad), bad).toThrow(/ADMIN_ALLOWED_ORIGINS/);
    }
  });
});
