import type http from 'node:http';
import { drain, type LocalServer, readJsonObject, serveLocally } from '../http.js';
import { Account, type StoredAttachment, type Upload, type ZendeskComment, type ZendeskTicket, type ZendeskUser } from './account.js';
import { IdempotencyKeys } from './idempotency.js';
import { errorBody, notFound, type Reply } from './responses.js';
import { createTicket, listComments, listTickets, updateTicket } from './tickets.js';
import { attachmentContent, upload } from './uploads.js';
import { createUser, searchUsers } from './users.js';

/**
 * A local stand-in for the Zendesk Support API (developer.zendesk.com/api-reference/ticketing),
 * limited to what the crm-sync adapter calls, with Zendesk's request checks and response shapes,
 * in-memory storage (with the bytes), a clock tests can advance, a per-minute rate limit and
 * fault injection. Paths are accepted with or without the `.json` suffix, as Zendesk does. This
 * file holds what every request goes through (faults, rate limit, authentication, routing); the
 * endpoints are in users.ts, tickets.ts and uploads.ts, the records in account.ts, the idempotency
 * keys of Create Ticket in idempotency.ts.
 */

export type { ZendeskComment, ZendeskTicket, ZendeskUser } from './account.js';

export type ZendeskFault =
  | { status: number; retryAfterSeconds?: number }
  | { resetConnection: true }
  /** Handles the request, then drops the connection: the change is made, the answer is lost. */
  | { loseResponse: true }
  | { delayMs: number }
  | { rateLimited: number };

export interface ZendeskContractOptions {
  email: string;
  apiToken: string;
  /** The API user's role: Show Self answers with it. */
  role?: 'admin' | 'agent' | 'end-user';
  /** "Upload Files": 50 MB per file. */
  maxUploadBytes?: number;
  /** "Rate limits": requests per minute for the account (Enterprise: 700). */
  requestsPerMinute?: number;
}

interface Injected {
  fault: ZendeskFault;
  skip: number;
  remaining: number;
  path?: string | RegExp;
  method?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  /** Its Idempotency-Key header, if it had one, and the x-idempotency-lookup of its answer (sent or lost). */
  idempotencyKey?: string;
  idempotencyLookup?: string;
  /** When the request arrived (wall clock), for tests of back-off. */
  atMs: number;
}

export class ZendeskContractServer {
  readonly users: Map<number, ZendeskUser>;
  readonly tickets: Map<number, ZendeskTicket>;
  readonly comments: Map<number, ZendeskComment[]>;
  readonly attachments: Map<number, StoredAttachment>;
  readonly uploads: Map<string, Upload>;
  readonly requests: RecordedRequest[] = [];
  private readonly faults: Injected[] = [];
  private window = { startMs: 0, count: 0 };
  private readonly account: Account;
  private readonly idempotencyKeys: IdempotencyKeys;
  private readonly options: Required<ZendeskContractOptions>;
  private server: LocalServer | undefined;

  private constructor(options: ZendeskContractOptions) {
    this.options = { role: 'admin', maxUploadBytes: 50 * 1024 * 1024, requestsPerMinute: 700, ...options };
    this.account = new Account({ email: options.email, role: this.options.role });
    this.users = this.account.users;
    this.tickets = this.account.tickets;
    this.comments = this.account.comments;
    this.attachments = this.account.attachments;
    this.uploads = this.account.uploads;
    this.idempotencyKeys = new IdempotencyKeys(this.account);
  }

  static async start(options: ZendeskContractOptions): Promise<ZendeskContractServer> {
    const contract = new ZendeskContractServer(options);
    contract.server = await serveLocally(
      (req, res) => contract.handle(req, res),
      (res) => {
        if (!res.headersSent) contract.send(res, 500, errorBody('InternalError', 'contract server failure'));
        else res.destroy();
      },
    );
    contract.account.url = contract.server.url;
    return contract;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    return this.account.url;
  }

  /** TCP connections accepted so far. */
  get connections(): number {
    return this.server?.connections ?? 0;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  /** The server's clock (upload expiry, rate-limit windows). */
  now(): number {
    return this.account.now();
  }

  advanceClock(ms: number): void {
    this.account.advanceClock(ms);
  }

  /**
   * The next `times` requests matching `path` (a prefix of the path without `.json`, or a
   * pattern) and `method`, after the first `skip` of them, get this fault.
   */
  inject(fault: ZendeskFault, options: { times?: number; skip?: number; path?: string | RegExp; method?: string } = {}): void {
    this.faults.push({ fault, skip: options.skip ?? 0, remaining: options.times ?? 1, path: options.path, method: options.method });
  }

  /** Lowers or raises the per-minute limit (and starts a fresh window). */
  setRequestsPerMinute(limit: number): void {
    this.options.requestsPerMinute = limit;
    this.window = { startMs: this.now(), count: 0 };
  }

  ticketsByExternalId(externalId: string): ZendeskTicket[] {
    return [...this.tickets.values()].filter((t) => t.external_id === externalId);
  }

  /** Every attachment of a ticket's comments, with its bytes, in order. */
  ticketAttachments(ticketId: number): StoredAttachment[] {
    return (this.comments.get(ticketId) ?? []).flatMap((c) => c.attachments.map((a) => this.attachments.get(a.id)!));
  }

  count(method: string, path: RegExp): number {
    return this.requests.filter((r) => r.method === method && path.test(r.path)).length;
  }

  private send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(Buffer.isBuffer(body) ? body : JSON.stringify(body));
  }

  private takeFault(method: string, path: string): ZendeskFault | undefined {
    const match = this.faults.find((f) => f.remaining > 0 && (!f.method || f.method === method) && (!f.path || (typeof f.path === 'string' ? path.startsWith(f.path) : f.path.test(path))));
    if (!match) return undefined;
    if (match.skip > 0) {
      match.skip--;
      return undefined;
    }
    match.remaining--;
    if (match.remaining === 0) this.faults.splice(this.faults.indexOf(match), 1);
    return match.fault;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const method = req.method ?? 'GET';
    // "Making requests to the Zendesk API": `.json` is optional on every endpoint.
    const path = url.pathname.replace(/\.json$/, '');
    const key = req.headers['idempotency-key'];
    const record: RecordedRequest = { method, path, query: Object.fromEntries(url.searchParams), status: 0, atMs: Date.now(), ...(typeof key === 'string' ? { idempotencyKey: key } : {}) };
    this.requests.push(record);
    res.on('finish', () => (record.status = res.statusCode));

    const fault = this.takeFault(method, path);
    if (fault && 'resetConnection' in fault) {
      req.socket.destroy();
      return;
    }
    if (fault && 'delayMs' in fault) await new Promise((r) => setTimeout(r, fault.delayMs));
    if (fault && 'status' in fault) {
      await drain(req);
      const headers: Record<string, string> = fault.retryAfterSeconds ? { 'retry-after': String(fault.retryAfterSeconds) } : {};
      return this.send(res, fault.status, fault.status >= 500 ? errorBody('ServiceUnavailable', 'injected failure') : errorBody('Injected', 'injected failure'), headers);
    }
    if (fault && 'rateLimited' in fault) {
      await drain(req);
      return this.rateLimited(res, fault.rateLimited);
    }

    // "Rate limits": a fixed one-minute window per account; over it, 429 with Retry-After (seconds).
    const now = this.now();
    if (now - this.window.startMs >= 60_000) this.window = { startMs: now, count: 0 };
    this.window.count++;
    const rateHeaders = { 'x-rate-limit': String(this.options.requestsPerMinute), 'x-rate-limit-remaining': String(Math.max(0, this.options.requestsPerMinute - this.window.count)) };
    if (this.window.count > this.options.requestsPerMinute) {
      await drain(req);
      return this.rateLimited(res, Math.max(1, Math.ceil((this.window.startMs + 60_000 - now) / 1000)));
    }

    const authenticated = this.authenticate(req.headers.authorization);
    // "Show Self": without valid credentials Zendesk answers 200 with an anonymous user (id null).
    if (method === 'GET' && path === '/api/v2/users/me') {
      const user = authenticated ? this.account.agent : { id: null, url: null, name: 'Anonymous user', email: 'invalid@example.com', external_id: null, role: 'end-user', active: true };
      return this.send(res, 200, { user }, rateHeaders);
    }
    if (!authenticated) {
      await drain(req);
      // "Security and authentication": bad or missing credentials get 401 with this body.
      return this.send(res, 401, { error: "Couldn't authenticate you" }, { 'www-authenticate': 'Basic realm="Web Password"' });
    }
    if (this.account.agent.role === 'end-user' && !(method === 'POST' && path === '/api/v2/uploads')) {
      await drain(req);
      return this.send(res, 403, errorBody('Forbidden', 'You do not have access to this page. Please contact the account owner of this help desk for further help.'));
    }

    const result = await this.route(method, path, url.searchParams, req);
    const lookup = result.headers?.['x-idempotency-lookup'];
    if (lookup) record.idempotencyLookup = lookup;
    if (fault && 'loseResponse' in fault) {
      req.socket.destroy();
      return;
    }
    this.send(res, result.status, result.body, { ...rateHeaders, ...result.headers });
  }

  private rateLimited(res: http.ServerResponse, seconds: number): void {
    this.send(res, 429, errorBody('APIRateLimitExceeded', 'Number of allowed API requests per minute exceeded'), { 'retry-after': String(seconds) });
  }

  /** "API token": Basic base64(`{email}/token:{api_token}`). */
  private authenticate(header: string | undefined): boolean {
    if (!header?.startsWith('Basic ')) return false;
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    return decoded === `${this.options.email}/token:${this.options.apiToken}`;
  }

  private async route(method: string, path: string, query: URLSearchParams, req: http.IncomingMessage): Promise<Reply> {
    const account = this.account;
    let match: RegExpExecArray | null;
    if (method === 'GET' && path === '/api/v2/users/search') return searchUsers(account, query);
    if (method === 'POST' && path === '/api/v2/users') return createUser(account, await readJsonObject(req));
    if (method === 'POST' && path === '/api/v2/uploads') return upload(account, query, req, this.options.maxUploadBytes);
    if (method === 'GET' && path === '/api/v2/tickets') return listTickets(account, query);
    if (method === 'POST' && path === '/api/v2/tickets') {
      const key = req.headers['idempotency-key'];
      if (typeof key === 'string' && key !== '') return this.idempotencyKeys.once(key, req, (body) => createTicket(account, body));
      return createTicket(account, await readJsonObject(req));
    }
    if ((match = /^\/api\/v2\/tickets\/(\d+)$/.exec(path))) {
      const ticket = this.tickets.get(Number(match[1]));
      if (!ticket) return notFound();
      if (method === 'GET') return { status: 200, body: { ticket } };
      if (method === 'PUT') return updateTicket(account, ticket, await readJsonObject(req));
    }
    if (method === 'GET' && (match = /^\/api\/v2\/tickets\/(\d+)\/comments$/.exec(path))) return listComments(account, Number(match[1]), query, path);
    if (method === 'GET' && (match = /^\/attachments\/token\/([a-z0-9]+)\/$/.exec(path))) return attachmentContent(account, match[1]!);
    await drain(req);
    return notFound('InvalidEndpoint');
  }
}
