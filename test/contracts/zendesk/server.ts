import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

/**
 * A local stand-in for the Zendesk Support API (developer.zendesk.com/api-reference/ticketing),
 * limited to what the crm-sync adapter calls, with Zendesk's request checks and response shapes,
 * in-memory storage (with the bytes), a clock tests can advance, a per-minute rate limit and
 * fault injection. Paths are accepted with or without the `.json` suffix, as Zendesk does.
 */

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

export interface ZendeskUser {
  id: number;
  url: string;
  name: string;
  email: string | null;
  external_id: string | null;
  role: 'end-user' | 'agent' | 'admin';
  active: boolean;
  created_at: string;
  updated_at: string;
}

export interface ZendeskAttachment {
  id: number;
  url: string;
  file_name: string;
  content_url: string;
  mapped_content_url: string;
  content_type: string;
  size: number;
  width: null;
  height: null;
  inline: boolean;
  deleted: boolean;
  thumbnails: [];
}

export interface ZendeskComment {
  id: number;
  type: 'Comment';
  author_id: number;
  body: string;
  html_body: string;
  plain_body: string;
  public: boolean;
  attachments: ZendeskAttachment[];
  audit_id: number;
  via: { channel: 'api' };
  created_at: string;
}

export interface ZendeskTicket {
  id: number;
  url: string;
  external_id: string | null;
  subject: string;
  raw_subject: string;
  description: string;
  status: 'new' | 'open' | 'pending' | 'solved' | 'closed';
  requester_id: number;
  submitter_id: number;
  assignee_id: null;
  tags: string[];
  via: { channel: 'api' };
  created_at: string;
  updated_at: string;
}

interface Upload {
  token: string;
  expiresAtMs: number;
  attachmentIds: number[];
  used: boolean;
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
  /** When the request arrived (wall clock), for tests of back-off. */
  atMs: number;
}

/** Zendesk's error bodies: `{error, description}`, with `details` for validation (422). */
const errorBody = (error: string, description: string, details?: Record<string, Array<{ error: string; description: string }>>) => ({ error, description, ...(details ? { details } : {}) });

export class ZendeskContractServer {
  readonly users = new Map<number, ZendeskUser>();
  readonly tickets = new Map<number, ZendeskTicket>();
  readonly comments = new Map<number, ZendeskComment[]>();
  readonly attachments = new Map<number, ZendeskAttachment & { bytes: Buffer }>();
  readonly uploads = new Map<string, Upload>();
  readonly requests: RecordedRequest[] = [];
  url = '';
  private readonly faults: Injected[] = [];
  private nextId = 1000;
  private clockOffsetMs = 0;
  private window = { startMs: 0, count: 0 };
  private readonly agent: ZendeskUser;
  private readonly options: Required<ZendeskContractOptions>;
  private readonly server: http.Server;

  private constructor(options: ZendeskContractOptions) {
    this.options = { role: 'admin', maxUploadBytes: 50 * 1024 * 1024, requestsPerMinute: 700, ...options };
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch(() => {
        if (!res.headersSent) this.send(res, 500, errorBody('InternalError', 'contract server failure'));
        else res.destroy();
      });
    });
    this.agent = this.addUser({ name: 'API agent', email: options.email, external_id: null, role: this.options.role });
  }

  static async start(options: ZendeskContractOptions): Promise<ZendeskContractServer> {
    const server = new ZendeskContractServer(options);
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', () => resolve()));
    server.url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    return server;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The server's clock (upload expiry, rate-limit windows). */
  now(): number {
    return Date.now() + this.clockOffsetMs;
  }

  advanceClock(ms: number): void {
    this.clockOffsetMs += ms;
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
  ticketAttachments(ticketId: number): Array<ZendeskAttachment & { bytes: Buffer }> {
    return (this.comments.get(ticketId) ?? []).flatMap((c) => c.attachments.map((a) => this.attachments.get(a.id)!));
  }

  count(method: string, path: RegExp): number {
    return this.requests.filter((r) => r.method === method && path.test(r.path)).length;
  }

  private addUser(fields: Pick<ZendeskUser, 'name' | 'email' | 'external_id' | 'role'>): ZendeskUser {
    const id = this.nextId++;
    const at = new Date(this.now()).toISOString();
    const user: ZendeskUser = { id, url: `${this.url}/api/v2/users/${id}.json`, active: true, created_at: at, updated_at: at, ...fields };
    this.users.set(id, user);
    return user;
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
    const record: RecordedRequest = { method, path, query: Object.fromEntries(url.searchParams), status: 0, atMs: Date.now() };
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
      const user = authenticated ? this.agent : { id: null, url: null, name: 'Anonymous user', email: 'invalid@example.com', external_id: null, role: 'end-user', active: true };
      return this.send(res, 200, { user }, rateHeaders);
    }
    if (!authenticated) {
      await drain(req);
      // "Security and authentication": bad or missing credentials get 401 with this body.
      return this.send(res, 401, { error: "Couldn't authenticate you" }, { 'www-authenticate': 'Basic realm="Web Password"' });
    }
    if (this.agent.role === 'end-user' && !(method === 'POST' && path === '/api/v2/uploads')) {
      await drain(req);
      return this.send(res, 403, errorBody('Forbidden', 'You do not have access to this page. Please contact the account owner of this help desk for further help.'));
    }

    const result = await this.route(method, path, url.searchParams, req);
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

  private async route(method: string, path: string, query: URLSearchParams, req: http.IncomingMessage): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> {
    let match: RegExpExecArray | null;
    if (method === 'GET' && path === '/api/v2/users/search') return this.searchUsers(query);
    if (method === 'POST' && path === '/api/v2/users') return this.createUser(await readJson(req));
    if (method === 'POST' && path === '/api/v2/uploads') return this.upload(query, req);
    if (method === 'GET' && path === '/api/v2/tickets') return this.listTickets(query);
    if (method === 'POST' && path === '/api/v2/tickets') return this.createTicket(await readJson(req));
    if ((match = /^\/api\/v2\/tickets\/(\d+)$/.exec(path))) {
      const ticket = this.tickets.get(Number(match[1]));
      if (!ticket) return { status: 404, body: errorBody('RecordNotFound', 'Not found') };
      if (method === 'GET') return { status: 200, body: { ticket } };
      if (method === 'PUT') return this.updateTicket(ticket, await readJson(req));
    }
    if (method === 'GET' && (match = /^\/api\/v2\/tickets\/(\d+)\/comments$/.exec(path))) {
      const comments = this.comments.get(Number(match[1]));
      if (!comments) return { status: 404, body: errorBody('RecordNotFound', 'Not found') };
      return { status: 200, body: this.page('comments', comments, query, path) };
    }
    if (method === 'GET' && (match = /^\/attachments\/token\/([a-z0-9]+)\/$/.exec(path))) {
      const attachment = [...this.attachments.values()].find((a) => a.content_url.includes(`/token/${match![1]}/`));
      if (!attachment) return { status: 404, body: errorBody('RecordNotFound', 'Not found') };
      return { status: 200, body: attachment.bytes, headers: { 'content-type': attachment.content_type } };
    }
    await drain(req);
    return { status: 404, body: errorBody('InvalidEndpoint', 'Not found') };
  }

  /** Offset pagination ("Pagination"): `per_page` up to 100, `page`, `next_page` as a full URL. */
  private page<K extends string, T>(key: K, all: T[], query: URLSearchParams, path: string): Record<K, T[]> & { next_page: string | null; previous_page: string | null; count: number } {
    const perPage = Math.min(100, Math.max(1, Number(query.get('per_page') ?? 100) || 100));
    const page = Math.max(1, Number(query.get('page') ?? 1) || 1);
    const at = (n: number) => {
      const next = new URL(`${path}.json`, this.url);
      for (const [k, v] of query) next.searchParams.set(k, v);
      next.searchParams.set('page', String(n));
      return next.toString();
    };
    return {
      [key]: all.slice((page - 1) * perPage, page * perPage),
      next_page: page * perPage < all.length ? at(page + 1) : null,
      previous_page: page > 1 ? at(page - 1) : null,
      count: all.length,
    } as Record<K, T[]> & { next_page: string | null; previous_page: string | null; count: number };
  }

  /** "Search Users": `external_id` matches exactly (case-sensitive); one of query or external_id is required. */
  private searchUsers(query: URLSearchParams) {
    const externalId = query.get('external_id');
    if (externalId === null && query.get('query') === null) return { status: 400, body: errorBody('InvalidParameter', 'query or external_id is required') };
    const users = [...this.users.values()].filter((u) => externalId !== null && u.external_id === externalId);
    return { status: 200, body: this.page('users', users, query, '/api/v2/users/search') };
  }

  /** "Create User": name is mandatory; external_id is unique in the account. */
  private createUser(body: unknown) {
    const input = (body as { user?: Record<string, unknown> } | undefined)?.user;
    if (!input || typeof input !== 'object') return { status: 400, body: errorBody('InvalidParameter', 'user is required') };
    const details: Record<string, Array<{ error: string; description: string }>> = {};
    const name = typeof input.name === 'string' ? input.name.trim() : '';
    if (!name) details.name = [{ error: 'BlankValue', description: 'Name: cannot be blank' }];
    const externalId = input.external_id === undefined || input.external_id === null ? null : String(input.external_id);
    if (externalId !== null && [...this.users.values()].some((u) => u.external_id === externalId)) {
      details.external_id = [{ error: 'DuplicateValue', description: `External ${externalId} has already been taken` }];
    }
    const role = input.role ?? 'end-user';
    if (role !== 'end-user' && role !== 'agent' && role !== 'admin') details.role = [{ error: 'InvalidValue', description: `Role ${String(role)} is invalid` }];
    if (Object.keys(details).length > 0) return { status: 422, body: errorBody('RecordInvalid', 'Record validation errors', details) };
    const user = this.addUser({ name, email: typeof input.email === 'string' ? input.email : null, external_id: externalId, role: role as ZendeskUser['role'] });
    return { status: 201, body: { user }, headers: { location: user.url } };
  }

  /**
   * "Upload Files": `POST /api/v2/uploads?filename=&token=` with the raw bytes and their
   * Content-Type; 201 with the token (valid 60 minutes) and the attachment. Passing a previous
   * token adds the file to that upload. Over 50 MB: 413 (the documentation gives the limit but
   * not the status; a body over the limit is refused before it is stored).
   */
  private async upload(query: URLSearchParams, req: http.IncomingMessage) {
    const fileName = query.get('filename');
    if (!fileName) {
      await drain(req);
      return { status: 400, body: errorBody('InvalidParameter', 'filename is required') };
    }
    const bytes = await readBody(req, this.options.maxUploadBytes);
    if (!bytes) return { status: 413, body: errorBody('RequestEntityTooLarge', `Attachments are limited to ${this.options.maxUploadBytes} bytes`) };
    let upload: Upload | undefined;
    const token = query.get('token');
    if (token) {
      upload = this.uploads.get(token);
      if (!upload || upload.used || upload.expiresAtMs <= this.now()) return { status: 404, body: errorBody('RecordNotFound', 'Not found') };
    } else {
      upload = { token: randomBytes(12).toString('hex').slice(0, 25), expiresAtMs: this.now() + 60 * 60_000, attachmentIds: [], used: false };
      this.uploads.set(upload.token, upload);
    }
    const id = this.nextId++;
    const contentType = (req.headers['content-type'] ?? 'application/binary').split(';')[0]!.trim();
    const contentToken = randomBytes(12).toString('hex');
    const contentUrl = `${this.url}/attachments/token/${contentToken}/?name=${encodeURIComponent(fileName)}`;
    const attachment = {
      id,
      url: `${this.url}/api/v2/attachments/${id}.json`,
      file_name: fileName,
      content_url: contentUrl,
      mapped_content_url: contentUrl,
      content_type: contentType,
      size: bytes.length,
      width: null,
      height: null,
      inline: false,
      deleted: false,
      thumbnails: [] as [],
    };
    this.attachments.set(id, { ...attachment, bytes });
    upload.attachmentIds.push(id);
    return {
      status: 201,
      body: {
        upload: {
          token: upload.token,
          expires_at: new Date(upload.expiresAtMs).toISOString(),
          attachment,
          attachments: upload.attachmentIds.map((a) => publicAttachment(this.attachments.get(a)!)),
        },
      },
    };
  }

  /** "List Tickets": `external_id` filters (external ids need not be unique). Deleted tickets are not listed. */
  private listTickets(query: URLSearchParams) {
    const externalId = query.get('external_id');
    const tickets = [...this.tickets.values()].filter((t) => externalId === null || t.external_id === externalId);
    return { status: 200, body: this.page('tickets', tickets, query, '/api/v2/tickets') };
  }

  /**
   * The attachments an upload token names, consumed. "Attaching files": a token that expired (or
   * was already used) no longer names anything: its files are not attached, without an error.
   */
  private takeUploads(tokens: unknown): ZendeskAttachment[] {
    if (!Array.isArray(tokens)) return [];
    return tokens.flatMap((token) => {
      const upload = typeof token === 'string' ? this.uploads.get(token) : undefined;
      if (!upload || upload.used || upload.expiresAtMs <= this.now()) return [];
      upload.used = true;
      return upload.attachmentIds.map((id) => publicAttachment(this.attachments.get(id)!));
    });
  }

  private addComment(ticket: ZendeskTicket, input: Record<string, unknown>): ZendeskComment {
    const body = String(input.body ?? input.html_body ?? '');
    const comment: ZendeskComment = {
      id: this.nextId++,
      type: 'Comment',
      author_id: this.agent.id,
      body,
      html_body: `<div class="zd-comment"><p>${body.replace(/[<>&]/g, '')}</p></div>`,
      plain_body: body,
      public: input.public !== false,
      attachments: this.takeUploads(input.uploads),
      audit_id: this.nextId++,
      via: { channel: 'api' },
      created_at: new Date(this.now()).toISOString(),
    };
    const list = this.comments.get(ticket.id) ?? [];
    list.push(comment);
    this.comments.set(ticket.id, list);
    return comment;
  }

  /** "Create Ticket": a comment is mandatory; the requester must exist; 201 with the ticket and its Location. */
  private createTicket(body: unknown) {
    const input = (body as { ticket?: Record<string, unknown> } | undefined)?.ticket;
    if (!input || typeof input !== 'object') return { status: 400, body: errorBody('InvalidParameter', 'ticket is required') };
    const comment = input.comment as Record<string, unknown> | undefined;
    const details: Record<string, Array<{ error: string; description: string }>> = {};
    if (!comment || typeof comment !== 'object' || !String(comment.body ?? comment.html_body ?? '').trim())
      details.description = [{ error: 'BlankValue', description: 'Description: cannot be blank' }];
    const requesterId = input.requester_id === undefined ? this.agent.id : Number(input.requester_id);
    if (!this.users.has(requesterId)) details.requester = [{ error: 'InvalidValue', description: `Requester ${String(input.requester_id)} is invalid` }];
    if (Object.keys(details).length > 0) return { status: 422, body: errorBody('RecordInvalid', 'Record validation errors', details) };
    const id = this.nextId++;
    const at = new Date(this.now()).toISOString();
    const subject = typeof input.subject === 'string' ? input.subject : '';
    const ticket: ZendeskTicket = {
      id,
      url: `${this.url}/api/v2/tickets/${id}.json`,
      external_id: input.external_id === undefined || input.external_id === null ? null : String(input.external_id),
      subject,
      raw_subject: subject,
      description: String(comment!.body ?? ''),
      status: 'new',
      requester_id: requesterId,
      submitter_id: this.agent.id,
      assignee_id: null,
      tags: Array.isArray(input.tags) ? input.tags.map(String) : [],
      via: { channel: 'api' },
      created_at: at,
      updated_at: at,
    };
    this.tickets.set(id, ticket);
    this.addComment(ticket, comment!);
    return { status: 201, body: { ticket }, headers: { location: ticket.url } };
  }

  /** "Update Ticket": adds a comment; a closed ticket cannot be updated (422). */
  private updateTicket(ticket: ZendeskTicket, body: unknown) {
    const input = (body as { ticket?: Record<string, unknown> } | undefined)?.ticket;
    if (!input || typeof input !== 'object') return { status: 400, body: errorBody('InvalidParameter', 'ticket is required') };
    if (ticket.status === 'closed')
      return { status: 422, body: errorBody('RecordInvalid', 'Record validation errors', { status: [{ error: 'InvalidValue', description: 'Status: closed prevents ticket update' }] }) };
    const comment = input.comment as Record<string, unknown> | undefined;
    if (comment && typeof comment === 'object') {
      this.addComment(ticket, comment);
      if (ticket.status === 'new') ticket.status = 'open';
    }
    ticket.updated_at = new Date(this.now()).toISOString();
    return { status: 200, body: { ticket, audit: { ticket_id: ticket.id, author_id: this.agent.id } } };
  }
}

function publicAttachment(a: ZendeskAttachment & { bytes?: Buffer }): ZendeskAttachment {
  const { bytes: _bytes, ...rest } = a;
  return rest;
}

async function drain(req: http.IncomingMessage): Promise<void> {
  for await (const _ of req) {
    // discard
  }
}

/** The body, or undefined once it passes `limit` bytes (the rest is discarded). */
async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) over = true;
    if (!over) chunks.push(chunk as Buffer);
  }
  return over ? undefined : Buffer.concat(chunks);
}

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const body = await readBody(req, 1024 * 1024);
  if (!body) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}
