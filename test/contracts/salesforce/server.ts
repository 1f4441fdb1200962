import type http from 'node:http';
import type { KeyObject } from 'node:crypto';
import { type LocalServer, parseJsonObject, readBody, serveLocally } from '../http.js';
import { token } from './oauth.js';
import { Org, type SObjectRecord } from './org.js';
import { error, type Reply } from './reply.js';
import { create, describeGlobal, query, upsert } from './sobjects.js';

/**
 * A local stand-in for a Salesforce org, following the documented REST API for what the
 * Gateway adapter uses: OAuth 2.0 token endpoint (client credentials, JWT bearer), sObject
 * create, upsert by external id, the SOQL query resource, ContentVersion uploads as JSON or
 * multipart, /limits, Composite (several of these in one request), and the error shapes and
 * headers around them. Records live in memory.
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
  /** A subrequest of the Composite request logged just before it. */
  composite?: boolean;
}

/** "Composite": at most 25 subrequests, of which at most 5 queries. */
const COMPOSITE_MAX_SUBREQUESTS = 25;
const COMPOSITE_MAX_QUERIES = 5;
/** "Composite Subrequest Result": referenceIds hold letters, digits and underscores only. */
const REFERENCE_ID = /^[A-Za-z0-9_]{1,80}$/;
type Subrequest = { method: string; url: string; referenceId: string; body?: Record<string, unknown> };

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

  /** TCP connections accepted so far. */
  get connections(): number {
    return this.server.connections;
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
    if (reply.resetConnection) return void req.socket.destroy();
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
    // A Composite request counts as one call, whatever it holds.
    this.apiUsage++;
    if (this.apiUsage > this.options.dailyApiLimit) return this.limitExceeded();
    const reply = path === '/composite' || path === '/composite/' ? await this.composite(method, version, headers, body) : this.api(method, version, path, url, headers, body);
    return { ...reply, headers: { ...reply.headers, ...this.limitHeader() } };
  }

  /**
   * "Send Multiple Requests Using Composite": subrequests run in order; `@{referenceId.path}` in a
   * url or body is a value from an earlier subrequest's answer (PROCESSING_HALTED when there is
   * none, e.g. that subrequest failed). With allOrNone, the first failure rolls every change back
   * and every other subrequest answers 400 ("Composite Subrequest Result"). Faults match
   * subrequests as they match requests.
   */
  private async composite(method: string, version: number, headers: http.IncomingHttpHeaders, body: Buffer): Promise<Reply> {
    if (method !== 'POST') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
    if (!(headers['content-type'] ?? '').startsWith('application/json')) return error(415, 'UNSUPPORTED_MEDIA_TYPE', 'Content type not supported');
    const request = parseJsonObject(body);
    const subrequests = request?.compositeRequest;
    // Which codes Salesforce gives a malformed Composite body is not documented: these are our stand-ins, all 400 before anything runs.
    if (!Array.isArray(subrequests) || subrequests.length === 0) return error(400, 'JSON_PARSER_ERROR', 'compositeRequest must be a non-empty array');
    if (subrequests.length > COMPOSITE_MAX_SUBREQUESTS) return error(400, 'INVALID_INPUT', `A composite request can have at most ${COMPOSITE_MAX_SUBREQUESTS} subrequests`);
    const seen = new Set<string>();
    let queries = 0;
    for (const sub of subrequests as Array<Partial<Subrequest>>) {
      const versioned = typeof sub?.url === 'string' ? /^\/services\/data\/v(\d+)\.0(\/[^?]*)/.exec(sub.url) : null;
      if (typeof sub?.referenceId !== 'string' || !REFERENCE_ID.test(sub.referenceId) || seen.has(sub.referenceId))
        return error(400, 'INVALID_INPUT', 'each subrequest needs a unique referenceId of letters, digits and underscores');
      if (!versioned || Number(versioned[1]) > version || !['GET', 'POST', 'PATCH', 'DELETE'].includes(String(sub.method)))
        return error(400, 'INVALID_INPUT', `subrequest ${sub.referenceId}: a method and a url of this or an older API version are required`);
      if (sub.body !== undefined && (typeof sub.body !== 'object' || sub.body === null || Array.isArray(sub.body)))
        return error(400, 'JSON_PARSER_ERROR', `subrequest ${sub.referenceId}: the body must be an object`);
      seen.add(sub.referenceId);
      if (/^\/query\/?$/.test(versioned[2]!)) queries++;
    }
    if (queries > COMPOSITE_MAX_QUERIES) return error(400, 'INVALID_INPUT', `A composite request can have at most ${COMPOSITE_MAX_QUERIES} query subrequests`);

    const allOrNone = request!.allOrNone === true;
    const before = allOrNone ? this.org.snapshot() : undefined;
    const answers = new Map<string, unknown>();
    const results: Array<{ body: unknown; httpHeaders: Record<string, string>; httpStatusCode: number; referenceId: string }> = [];
    let failed = false;
    let resetConnection = false;
    for (const sub of subrequests as Subrequest[]) {
      const rolledBack = error(400, 'PROCESSING_HALTED', 'The transaction was rolled back since another operation in the same transaction failed.');
      if (failed && allOrNone) {
        results.push({ body: rolledBack.body, httpHeaders: {}, httpStatusCode: 400, referenceId: sub.referenceId });
        continue;
      }
      const reply = await this.subrequest(sub, answers);
      if (reply.resetConnection) resetConnection = true;
      results.push({ body: reply.body ?? null, httpHeaders: reply.headers ?? {}, httpStatusCode: reply.status, referenceId: sub.referenceId });
      if (reply.status >= 200 && reply.status < 300) answers.set(sub.referenceId, reply.body);
      else failed = true;
      if (resetConnection) break;
    }
    if (failed && allOrNone) {
      this.org.restore(before!);
      for (const result of results) {
        if (result.httpStatusCode >= 200 && result.httpStatusCode < 300)
          Object.assign(result, {
            httpStatusCode: 400,
            httpHeaders: {},
            body: error(400, 'PROCESSING_HALTED', 'The transaction was rolled back since another operation in the same transaction failed.').body,
          });
      }
    }
    return { status: 200, body: { compositeResponse: results }, resetConnection };
  }

  /** One Composite subrequest, its references resolved, logged and open to faults like a request of its own. */
  private async subrequest(sub: Subrequest, answers: Map<string, unknown>): Promise<Reply> {
    const missing: string[] = [];
    const resolve = (text: string) =>
      text.replace(/@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}/g, (whole, id: string, path: string) => {
        let value: unknown = answers.get(id);
        for (const step of path.match(/[A-Za-z0-9_]+/g)!) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[step] : undefined;
        if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return String(value);
        missing.push(whole);
        return '';
      });
    const url = new URL(resolve(sub.url), this.url);
    const json = sub.body === undefined ? '' : resolve(JSON.stringify(sub.body));
    const [, subVersion, path] = /^\/services\/data\/v(\d+)\.0(\/.*)$/.exec(url.pathname)!;
    const logged: LoggedRequest = { method: sub.method, path: path!, contentType: 'application/json', atMs: Date.now(), composite: true };
    if (/^\/query\/?$/.test(path!)) logged.soql = url.searchParams.get('q') ?? undefined;
    this.requests.push(logged);
    if (missing.length > 0) {
      logged.status = 400;
      return error(400, 'PROCESSING_HALTED', `Invalid reference specified. No value for ${missing[0]} found.`);
    }
    const injected = this.takeFault(sub.method, url.pathname);
    const fault = injected?.fault;
    const after = injected?.options.afterProcessing === true;
    if (fault && !after) {
      if ('resetConnection' in fault) return { status: 500, resetConnection: true };
      if ('delayMs' in fault) await sleep(fault.delayMs);
    }
    let reply: Reply;
    if (fault && 'status' in fault) reply = error(fault.status, fault.errorCode ?? (fault.status >= 500 ? 'SERVER_UNAVAILABLE' : 'UNKNOWN_EXCEPTION'), 'injected fault');
    else if (fault && 'limitExceeded' in fault) reply = this.limitExceeded();
    else reply = this.api(sub.method, Number(subVersion), path!, url, { 'content-type': 'application/json' }, Buffer.from(json));
    if (fault && after) {
      if ('delayMs' in fault) await sleep(fault.delayMs);
      if ('resetConnection' in fault) reply = { ...reply, resetConnection: true };
    }
    logged.status = reply.status;
    return reply;
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
