import type http from 'node:http';
import type { KeyObject } from 'node:crypto';
import { type LocalServer, readBody, serveLocally } from '../http.js';
import { token } from './oauth.js';
import { Org, type SObjectRecord } from './org.js';
import { error, type Reply } from './reply.js';
import { create, describeGlobal, query, upsert } from './sobjects.js';

/**
 * A local stand-in for a Salesforce org, following the documented REST API for what the
 * Gateway adapter uses: OAuth 2.0 token endpoint (client credentials, JWT bearer), sObject
 * create, upsert by external id, the SOQL query resource, ContentVersion uploads as JSON or
 * multipart, /limits, and the error shapes and headers around them. Records live in memory.
 * Faults are injected on demand. The doc page each behaviour follows is named where it is.
 * This file holds what every request goes through (faults, session, API limits, routing);
 * beside it: oauth.ts (the token endpoint), sobjects.ts (the data resources), org.ts (records
 * and field checks), soql.ts, multipart.ts.
 */

export interface SalesforceContractOptions {
  clientId: string;
  /** Client credentials flow: the connected app's consumer secret. */
  clientSecret?: string;
  /** JWT bearer flow: the pre-authorized user and the certificate's public key. */
  jwt?: { username: string; publicKey: KeyObject };
  /** "API Request Limits and Allocations": requests per rolling 24 h. */
  dailyApiLimit?: number;
  /** The External ID field on Contact. */
  externalIdField?: string;
  /** Unique external id fields reject duplicates (DUPLICATE_VALUE). */
  externalIdUnique?: boolean;
  /** Largest base64-decoded VersionData in a JSON body ("Insert or Update Blob Data": 37.5 MB). */
  jsonBlobLimitBytes?: number;
}

export type Fault = { status: number; errorCode?: string } | { resetConnection: true } | { delayMs: number } | { expireToken: true } | { limitExceeded: true };

export interface FaultOptions {
  /** How many matching requests the fault hits (default 1). */
  times?: number;
  /** Which requests: default every REST API request (not the token endpoint). */
  match?: { method?: string; path?: string | RegExp };
  /** resetConnection / delayMs after the request took effect: the answer is lost, the record stays. */
  afterProcessing?: boolean;
}

export interface LoggedRequest {
  method: string;
  /** The path below /services/data/vXX.X, or the full path for others. */
  path: string;
  /** The decoded SOQL of a query. */
  soql?: string;
  contentType?: string;
  status?: number;
  /** When the request arrived (wall clock), for tests of back-off. */
  atMs: number;
}

export class SalesforceContractServer {
  readonly url: string;
  /** Every request, in order (counting is how tests see caching). */
  readonly requests: LoggedRequest[] = [];
  tokenRequests = 0;
  apiUsage = 0;
  private readonly options: SalesforceContractOptions & { dailyApiLimit: number };
  private readonly org: Org;
  private readonly tokens = new Set<string>();
  private readonly faults: Array<{ fault: Fault; remaining: number; options: FaultOptions }> = [];

  private constructor(
    private readonly server: LocalServer,
    options: SalesforceContractOptions,
  ) {
    this.url = server.url;
    this.options = { ...options, dailyApiLimit: options.dailyApiLimit ?? 15_000 };
    this.org = new Org({
      externalIdField: options.externalIdField ?? 'Gateway_External_Id__c',
      externalIdUnique: options.externalIdUnique ?? true,
      jsonBlobLimitBytes: options.jsonBlobLimitBytes ?? 37.5 * 1024 * 1024,
    });
  }

  static async start(options: SalesforceContractOptions): Promise<SalesforceContractServer> {
    let contract: SalesforceContractServer | undefined;
    // A client that drops its request midway (its body cut short) gets its connection closed.
    const server = await serveLocally((req, res) => contract!.handle(req, res));
    contract = new SalesforceContractServer(server, options);
    return contract;
  }

  async stop(): Promise<void> {
    await this.server.close();
  }

  /** Makes the next matching requests fail; expireToken takes effect at once (every issued token). */
  inject(fault: Fault, options: FaultOptions = {}): void {
    if ('expireToken' in fault) {
      this.tokens.clear();
      return;
    }
    this.faults.push({ fault, remaining: options.times ?? 1, options });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Records of an sObject type (ContentVersion records carry VersionData as a Buffer). */
  list(type: 'Contact' | 'Task' | 'ContentVersion'): SObjectRecord[] {
    return this.org.list(type);
  }

  /** A record made by someone else in the org (e.g. an existing Contact). */
  seed(type: 'Contact' | 'Task', fields: Record<string, unknown>): string {
    return this.org.insert(type, fields);
  }

  /** API calls by method and path prefix (below /services/data/vXX.X). */
  count(method: string, pathPrefix: string): number {
    return this.requests.filter((r) => r.method === method && r.path.startsWith(pathPrefix)).length;
  }

  private takeFault(method: string, pathname: string): { fault: Fault; options: FaultOptions } | undefined {
    const index = this.faults.findIndex(({ options: { match } }) => {
      if (match?.method && match.method !== method) return false;
      if (match?.path === undefined) return pathname.startsWith('/services/data/');
      return typeof match.path === 'string' ? pathname.includes(match.path) : match.path.test(pathname);
    });
    if (index < 0) return undefined;
    const entry = this.faults[index]!;
    if (--entry.remaining <= 0) this.faults.splice(index, 1);
    return entry;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    const logged: LoggedRequest = { method, path: url.pathname.replace(/^\/services\/data\/v\d+\.\d\/?/, '/'), contentType: req.headers['content-type'], atMs: Date.now() };
    if (url.pathname.endsWith('/query')) logged.soql = url.searchParams.get('q') ?? undefined;
    this.requests.push(logged);

    const injected = this.takeFault(method, url.pathname);
    const after = injected?.options.afterProcessing === true;
    const fault = injected?.fault;
    if (fault && !after) {
      if ('resetConnection' in fault) return void req.socket.destroy();
      if ('delayMs' in fault) await sleep(fault.delayMs);
    }
    let reply: Reply;
    if (fault && 'status' in fault) reply = error(fault.status, fault.errorCode ?? (fault.status >= 500 ? 'SERVER_UNAVAILABLE' : 'UNKNOWN_EXCEPTION'), 'injected fault');
    else if (fault && 'limitExceeded' in fault) reply = this.limitExceeded();
    else {
      try {
        reply = await this.route(method, url, req.headers, body);
      } catch (cause) {
        reply = error(500, 'UNKNOWN_EXCEPTION', `An unexpected error occurred: ${String(cause)}`);
      }
    }
    if (fault && after) {
      if ('delayMs' in fault) await sleep(fault.delayMs);
      if ('resetConnection' in fault) return void req.socket.destroy();
    }
    logged.status = reply.status;
    if (res.destroyed) return;
    const payload = reply.body === undefined ? undefined : JSON.stringify(reply.body);
    res.writeHead(reply.status, { ...(payload !== undefined ? { 'content-type': 'application/json;charset=UTF-8' } : {}), ...reply.headers });
    res.end(payload);
  }

  private limitExceeded(): Reply {
    // "API Request Limits and Allocations": 403 REQUEST_LIMIT_EXCEEDED once the org's total is used.
    return { ...error(403, 'REQUEST_LIMIT_EXCEEDED', 'TotalRequests Limit exceeded.'), headers: this.limitHeader() };
  }

  private limitHeader(): Record<string, string> {
    // "Limit Info Header" (REST API Developer Guide): Sforce-Limit-Info: api-usage=18/5000.
    return { 'sforce-limit-info': `api-usage=${this.apiUsage}/${this.options.dailyApiLimit}` };
  }

  private async route(method: string, url: URL, headers: http.IncomingHttpHeaders, body: Buffer): Promise<Reply> {
    if (url.pathname === '/services/oauth2/token') {
      if (method !== 'POST') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      this.tokenRequests++;
      return token({ ...this.options, url: this.url }, this.tokens, headers, body);
    }
    const data = /^\/services\/data\/v(\d+)\.0(\/.*)?$/.exec(url.pathname);
    // "Versions" resource: only versions this org runs exist.
    if (!data || Number(data[1]) < 20 || Number(data[1]) > 61) return error(404, 'NOT_FOUND', 'The requested resource does not exist');
    const version = Number(data[1]);
    const path = data[2] ?? '/';
    // "Status Codes and Error Responses": 401 INVALID_SESSION_ID for a missing, expired or revoked token.
    const auth = /^(?:Bearer|OAuth) (\S+)$/.exec(headers.authorization ?? '');
    if (!auth || !this.tokens.has(auth[1]!)) return error(401, 'INVALID_SESSION_ID', 'Session expired or invalid');
    this.apiUsage++;
    if (this.apiUsage > this.options.dailyApiLimit) return this.limitExceeded();
    const reply = this.api(method, version, path, url, headers, body);
    return { ...reply, headers: { ...reply.headers, ...this.limitHeader() } };
  }

  private api(method: string, version: number, path: string, url: URL, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
    if (path === '/limits' || path === '/limits/') {
      if (method !== 'GET') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      // "Limits" resource.
      return { status: 200, body: { DailyApiRequests: { Max: this.options.dailyApiLimit, Remaining: Math.max(0, this.options.dailyApiLimit - this.apiUsage) } } };
    }
    if (path === '/sobjects' || path === '/sobjects/') return describeGlobal(this.org);
    if (path === '/query' || path === '/query/') {
      if (method !== 'GET') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      return query(this.org, version, url.searchParams.get('q') ?? '');
    }
    const sobject = /^\/sobjects\/([A-Za-z]+)\/?$/.exec(path);
    if (sobject) {
      const type = sobject[1]!;
      if (!this.org.schemas[type]) return error(404, 'NOT_FOUND', 'The requested resource does not exist');
      if (method !== 'POST') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      return create(this.org, type, headers, body);
    }
    const upsertPath = /^\/sobjects\/([A-Za-z]+)\/([A-Za-z0-9_]+)\/([^/]+)$/.exec(path);
    if (upsertPath && method === 'PATCH') return upsert(this.org, version, upsertPath[1]!, upsertPath[2]!, decodeURIComponent(upsertPath[3]!), headers, body);
    return error(404, 'NOT_FOUND', 'The requested resource does not exist');
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
