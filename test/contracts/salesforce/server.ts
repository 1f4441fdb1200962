import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHmac, randomBytes, type KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import { boundaryOf, MultipartError, parseMultipart } from './multipart.js';
import { parseSoql, SoqlError } from './soql.js';

/**
 * A local stand-in for a Salesforce org, following the documented REST API for what the
 * Gateway adapter uses: OAuth 2.0 token endpoint (client credentials, JWT bearer), sObject
 * create, upsert by external id, the SOQL query resource, ContentVersion uploads as JSON or
 * multipart, /limits, and the error shapes and headers around them. Records live in memory.
 * Faults are injected on demand. The doc page each behaviour follows is named where it is.
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

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

type SObjectRecord = Record<string, unknown> & { Id: string };

/** A field of the sObjects we model ("Object Reference for the Salesforce Platform"). */
interface FieldSpec {
  type: 'string' | 'textarea' | 'picklist' | 'reference' | 'int' | 'date' | 'base64';
  length?: number;
  values?: string[];
  required?: boolean;
  createOnly?: boolean;
}

const keyPrefixes: Record<string, string> = { Contact: '003', Task: '00T', ContentVersion: '068', ContentDocument: '069' };

/** A faithful 18-character id: key prefix, pod, counter, and the case-insensitivity suffix. */
function salesforceId(prefix: string, n: number): string {
  const id15 = `${prefix}5g00000${n.toString(36).toUpperCase().padStart(5, '0')}`.slice(0, 15);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) if (/[A-Z]/.test(id15[chunk * 5 + i]!)) bits |= 1 << i;
    suffix += alphabet[bits];
  }
  return id15 + suffix;
}

const error = (status: number, errorCode: string, message: string, fields: string[] = []): Reply => ({ status, body: [{ message, errorCode, fields }] });

export class SalesforceContractServer {
  url = '';
  /** Every request, in order (counting is how tests see caching). */
  readonly requests: LoggedRequest[] = [];
  tokenRequests = 0;
  apiUsage = 0;
  private readonly server: http.Server;
  private readonly options: Required<Omit<SalesforceContractOptions, 'clientSecret' | 'jwt'>> & SalesforceContractOptions;
  private readonly tokens = new Set<string>();
  private readonly records = new Map<string, Map<string, SObjectRecord>>();
  private readonly faults: Array<{ fault: Fault; remaining: number; options: FaultOptions }> = [];
  private nextId = 1;
  private readonly schemas: Record<string, Record<string, FieldSpec>>;

  private constructor(options: SalesforceContractOptions) {
    this.options = { dailyApiLimit: 15_000, externalIdField: 'Gateway_External_Id__c', externalIdUnique: true, jsonBlobLimitBytes: 37.5 * 1024 * 1024, ...options };
    this.schemas = {
      Contact: { LastName: { type: 'string', length: 80, required: true }, FirstName: { type: 'string', length: 40 }, [this.options.externalIdField]: { type: 'string', length: 255 } },
      Task: {
        Subject: { type: 'string', length: 255 },
        Status: { type: 'picklist', values: ['Not Started', 'In Progress', 'Completed', 'Waiting on someone else', 'Deferred'] },
        Priority: { type: 'picklist', values: ['High', 'Normal', 'Low'] },
        WhoId: { type: 'reference' },
        WhatId: { type: 'reference' },
        CallObject: { type: 'string', length: 255 },
        CallDurationInSeconds: { type: 'int' },
        CallType: { type: 'picklist', values: ['Internal', 'Inbound', 'Outbound'] },
        ActivityDate: { type: 'date' },
        Description: { type: 'textarea', length: 32_000 },
        TaskSubtype: { type: 'picklist', values: ['Task', 'Email', 'ListEmail', 'Cadence', 'Call', 'LinkedIn'], createOnly: true },
      },
      ContentVersion: {
        Title: { type: 'string', length: 255 },
        PathOnClient: { type: 'string', length: 500, required: true },
        VersionData: { type: 'base64' },
        FirstPublishLocationId: { type: 'reference', createOnly: true },
        Description: { type: 'textarea', length: 1000 },
        ReasonForChange: { type: 'string', length: 1000 },
        ContentDocumentId: { type: 'reference' },
      },
    };
    for (const type of Object.keys(this.schemas)) this.records.set(type, new Map());
    // A client that drops its request midway (its body cut short) gets its connection closed.
    this.server = http.createServer((req, res) => void this.handle(req, res).catch(() => res.destroy()));
  }

  static async start(options: SalesforceContractOptions): Promise<SalesforceContractServer> {
    const server = new SalesforceContractServer(options);
    await new Promise<void>((resolve) => server.server.listen(0, '127.0.0.1', resolve));
    server.url = `http://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
    return server;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
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
    return [...this.records.get(type)!.values()];
  }

  /** A record made by someone else in the org (e.g. an existing Contact). */
  seed(type: 'Contact' | 'Task', fields: Record<string, unknown>): string {
    const id = salesforceId(keyPrefixes[type]!, this.nextId++);
    this.records.get(type)!.set(id, { ...fields, Id: id });
    return id;
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
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
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
      return this.token(headers, body);
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

  /**
   * "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration" and "OAuth 2.0 JWT
   * Bearer Flow for Server-to-Server Integration": form-encoded POST; errors are
   * {error, error_description} with HTTP 400.
   */
  private async token(headers: http.IncomingHttpHeaders, body: Buffer): Promise<Reply> {
    this.tokenRequests++;
    const oauthError = (code: string, description: string): Reply => ({ status: 400, body: { error: code, error_description: description } });
    if (!(headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return oauthError('invalid_request', 'unsupported content type');
    const form = new URLSearchParams(body.toString());
    const grant = form.get('grant_type');
    let username: string;
    if (grant === 'client_credentials') {
      if (form.get('client_id') !== this.options.clientId || !this.options.clientSecret || form.get('client_secret') !== this.options.clientSecret) {
        return oauthError('invalid_client', 'invalid client credentials');
      }
      username = 'integration@example.invalid';
    } else if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      const jwt = this.options.jwt;
      const assertion = form.get('assertion');
      if (!jwt || !assertion) return oauthError('invalid_grant', 'invalid assertion');
      try {
        // iss = consumer key, sub = username, aud = the login URL, exp at most 3 minutes away, RS256.
        const { payload } = await jwtVerify(assertion, jwt.publicKey, { algorithms: ['RS256'], issuer: this.options.clientId, subject: jwt.username, audience: this.url });
        if (typeof payload.exp !== 'number' || payload.exp - Date.now() / 1000 > 180 + 5) return oauthError('invalid_grant', 'expiration is too far in the future');
      } catch {
        return oauthError('invalid_grant', 'invalid assertion');
      }
      username = jwt.username;
    } else {
      return oauthError('unsupported_grant_type', 'grant type not supported');
    }
    const accessToken = `00D5g000000TEST!${randomBytes(32).toString('base64url')}`;
    this.tokens.add(accessToken);
    const id = `${this.url}/id/00D5g000000TESTEAA/0055g000000USEREAA`;
    const issuedAt = String(Date.now());
    return {
      status: 200,
      body: {
        access_token: accessToken,
        instance_url: this.url,
        id,
        token_type: 'Bearer',
        issued_at: issuedAt,
        // HMAC-SHA256 of id + issued_at with the consumer secret (documented response field).
        signature: createHmac('sha256', this.options.clientSecret ?? username)
          .update(id + issuedAt)
          .digest('base64'),
        scope: 'api',
      },
    };
  }

  private api(method: string, version: number, path: string, url: URL, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
    if (path === '/limits' || path === '/limits/') {
      if (method !== 'GET') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      // "Limits" resource.
      return { status: 200, body: { DailyApiRequests: { Max: this.options.dailyApiLimit, Remaining: Math.max(0, this.options.dailyApiLimit - this.apiUsage) } } };
    }
    if (path === '/sobjects' || path === '/sobjects/') {
      // "Describe Global".
      return {
        status: 200,
        body: { encoding: 'UTF-8', maxBatchSize: 200, sobjects: Object.keys(this.schemas).map((name) => ({ name, createable: true, queryable: true, keyPrefix: keyPrefixes[name] })) },
      };
    }
    if (path === '/query' || path === '/query/') {
      if (method !== 'GET') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      return this.query(version, url.searchParams.get('q') ?? '');
    }
    const sobject = /^\/sobjects\/([A-Za-z]+)\/?$/.exec(path);
    if (sobject) {
      const type = sobject[1]!;
      if (!this.schemas[type]) return error(404, 'NOT_FOUND', 'The requested resource does not exist');
      if (method !== 'POST') return error(405, 'METHOD_NOT_ALLOWED', 'HTTP Method not allowed');
      return this.create(type, headers, body);
    }
    const upsert = /^\/sobjects\/([A-Za-z]+)\/([A-Za-z0-9_]+)\/([^/]+)$/.exec(path);
    if (upsert && method === 'PATCH') return this.upsert(version, upsert[1]!, upsert[2]!, decodeURIComponent(upsert[3]!), headers, body);
    return error(404, 'NOT_FOUND', 'The requested resource does not exist');
  }

  /** "Query" resource: {totalSize, done, records: [{attributes: {type, url}, ...fields}]}. */
  private query(version: number, soql: string): Reply {
    let parsed;
    try {
      parsed = parseSoql(soql);
    } catch (cause) {
      return error(400, 'MALFORMED_QUERY', cause instanceof SoqlError ? cause.message : 'malformed query');
    }
    const schema = this.schemas[parsed.object];
    if (!schema) return error(400, 'INVALID_TYPE', `sObject type '${parsed.object}' is not supported.`);
    const queryable = new Set(['Id', ...Object.keys(schema).filter((f) => f !== 'VersionData')]);
    for (const field of [...parsed.fields, ...parsed.where.map((w) => w.field)]) {
      if (!queryable.has(field)) return error(400, 'INVALID_FIELD', `No such column '${field}' on entity '${parsed.object}'.`);
    }
    const matches = [...this.records.get(parsed.object)!.values()].filter((record) => parsed.where.every(({ field, value }) => equalsSoql(schema[field]?.type ?? 'reference', record[field], value)));
    const records = matches.slice(0, parsed.limit ?? matches.length).map((record) => ({
      attributes: { type: parsed.object, url: `/services/data/v${version}.0/sobjects/${parsed.object}/${record.Id}` },
      ...Object.fromEntries(parsed.fields.map((f) => [f, record[f] ?? null])),
    }));
    return { status: 200, body: { totalSize: records.length, done: true, records } };
  }

  /** "sObject Basic Information" POST, and "Insert or Update Blob Data" for multipart ContentVersion. */
  private create(type: string, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
    const contentType = headers['content-type'] ?? '';
    let fields: Record<string, unknown>;
    let blob: Buffer | undefined;
    const boundary = boundaryOf(contentType);
    if (boundary) {
      if (type !== 'ContentVersion') return error(400, 'INVALID_MULTIPART_REQUEST', 'This sObject has no blob field');
      let parts;
      try {
        parts = parseMultipart(body, boundary);
      } catch (cause) {
        return error(400, 'INVALID_MULTIPART_REQUEST', cause instanceof MultipartError ? cause.message : 'invalid multipart request');
      }
      // The first part holds the non-binary fields as JSON, the second the blob field's bytes.
      const [entity, binary] = parts;
      if (parts.length !== 2 || entity?.name !== 'entity_content' || !entity.contentType?.startsWith('application/json') || binary?.name !== 'VersionData') {
        return error(400, 'INVALID_MULTIPART_REQUEST', 'expecting an entity_content JSON part then a VersionData part');
      }
      const parsed = parseJson(entity.data);
      if (!parsed.ok) return error(400, 'JSON_PARSER_ERROR', 'Unexpected character in entity_content');
      fields = parsed.value;
      if ('VersionData' in fields) return error(400, 'INVALID_MULTIPART_REQUEST', 'VersionData belongs in its own part');
      blob = binary.data;
    } else if (contentType.startsWith('application/json')) {
      const parsed = parseJson(body);
      if (!parsed.ok) return error(400, 'JSON_PARSER_ERROR', 'Unexpected character in the request body');
      fields = parsed.value;
    } else {
      return error(415, 'UNSUPPORTED_MEDIA_TYPE', 'Content type not supported');
    }
    const record = this.validate(type, fields, 'create');
    if ('reply' in record) return record.reply as Reply;
    if (type === 'ContentVersion') {
      if (blob === undefined) {
        if (typeof fields.VersionData !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(fields.VersionData))
          return error(400, 'REQUIRED_FIELD_MISSING', 'Required fields are missing: [VersionData]', ['VersionData']);
        blob = Buffer.from(fields.VersionData, 'base64');
        // The documented 37.5 MB base64 limit; which code Salesforce answers is not documented: this is our stand-in.
        if (blob.length > this.options.jsonBlobLimitBytes) return error(400, 'STRING_TOO_LONG', 'VersionData too large for a JSON body: use multipart', ['VersionData']);
      }
      record.VersionData = blob;
      record.Title ??= String(record.PathOnClient).replace(/\.[^.]*$/, '');
      record.ContentDocumentId = salesforceId(keyPrefixes.ContentDocument!, this.nextId++);
      record.IsLatest = true;
    }
    if (type === 'Contact' && this.options.externalIdUnique) {
      const field = this.options.externalIdField;
      if (record[field] !== undefined && this.list('Contact').some((c) => equalsSoql('string', c[field], String(record[field])))) {
        return error(400, 'DUPLICATE_VALUE', `duplicate value found: ${field} duplicates value on record with id: ...`, [field]);
      }
    }
    if (type === 'Task') {
      record.Status ??= 'Not Started';
      record.Priority ??= 'Normal';
    }
    const id = salesforceId(keyPrefixes[type]!, this.nextId++);
    this.records.get(type)!.set(id, { ...record, Id: id });
    return { status: 201, body: { id, success: true, errors: [] }, headers: { location: `/services/data/v60.0/sobjects/${type}/${id}` } };
  }

  /**
   * "Upsert Records Using sObject Rows by External ID": 201 when created; when matched, 200 with
   * {created: false} from API 46.0 on, 204 before; 300 when several records match; the external
   * id field and Id must not be in the body.
   */
  private upsert(version: number, type: string, field: string, value: string, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
    if (!this.schemas[type]) return error(404, 'NOT_FOUND', 'The requested resource does not exist');
    if (field !== this.options.externalIdField || type !== 'Contact') return error(404, 'NOT_FOUND', `Provided external ID field does not exist or is not accessible: ${field}`);
    if (!(headers['content-type'] ?? '').startsWith('application/json')) return error(415, 'UNSUPPORTED_MEDIA_TYPE', 'Content type not supported');
    const parsed = parseJson(body);
    if (!parsed.ok) return error(400, 'JSON_PARSER_ERROR', 'Unexpected character in the request body');
    if ('Id' in parsed.value || field in parsed.value) return error(400, 'INVALID_FIELD', `Field ${field} is the external id and cannot be in the body`, [field]);
    const matches = this.list('Contact').filter((c) => equalsSoql('string', c[field], value));
    if (matches.length > 1) return { status: 300, body: matches.map((m) => `/services/data/v${version}.0/sobjects/${type}/${m.Id}`) };
    if (matches.length === 1) {
      const record = this.validate(type, parsed.value, 'update');
      if ('reply' in record) return record.reply as Reply;
      Object.assign(matches[0]!, record);
      return version >= 46 ? { status: 200, body: { id: matches[0]!.Id, success: true, errors: [], created: false } } : { status: 204 };
    }
    const record = this.validate(type, { ...parsed.value, [field]: value }, 'create');
    if ('reply' in record) return record.reply as Reply;
    const id = salesforceId(keyPrefixes[type]!, this.nextId++);
    this.records.get(type)!.set(id, { ...record, Id: id });
    return { status: 201, body: { id, success: true, errors: [], created: true } };
  }

  /** Field checks as Salesforce makes them; an error Reply or the record's fields. */
  private validate(type: string, fields: Record<string, unknown>, mode: 'create' | 'update'): Record<string, unknown> | { reply: Reply } {
    const schema = this.schemas[type]!;
    const record: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(fields)) {
      const spec = schema[name];
      if (!spec) return { reply: error(400, 'INVALID_FIELD', `No such column '${name}' on sobject of type ${type}`, [name]) };
      if (mode === 'update' && spec.createOnly) return { reply: error(400, 'INVALID_FIELD_FOR_INSERT_UPDATE', `Unable to create/update fields: ${name}`, [name]) };
      if (value === null) continue;
      switch (spec.type) {
        case 'string':
        case 'textarea':
          if (typeof value !== 'string') return { reply: error(400, 'JSON_PARSER_ERROR', `Cannot deserialize instance of string for ${name}`, [name]) };
          if (spec.length && value.length > spec.length) return { reply: error(400, 'STRING_TOO_LONG', `${name}: data value too large`, [name]) };
          break;
        case 'picklist':
          if (typeof value !== 'string' || !spec.values!.includes(value))
            return { reply: error(400, 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST', `bad value for restricted picklist field: ${name}`, [name]) };
          break;
        case 'int':
          if (!Number.isInteger(value)) return { reply: error(400, 'JSON_PARSER_ERROR', `Cannot deserialize instance of int for ${name}`, [name]) };
          break;
        case 'date':
          if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return { reply: error(400, 'JSON_PARSER_ERROR', `Cannot deserialize instance of date for ${name}`, [name]) };
          break;
        case 'reference':
          if (typeof value !== 'string' || !/^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$/.test(value)) return { reply: error(400, 'MALFORMED_ID', `${name}: id value of incorrect type`, [name]) };
          if (!this.find(value)) return { reply: error(400, 'INVALID_CROSS_REFERENCE_KEY', `invalid cross reference id`, [name]) };
          break;
        case 'base64':
          break;
      }
      record[name] = value;
    }
    if (mode === 'create') {
      const missing = Object.entries(schema)
        .filter(([name, spec]) => spec.required && record[name] === undefined)
        .map(([name]) => name);
      if (missing.length) return { reply: error(400, 'REQUIRED_FIELD_MISSING', `Required fields are missing: [${missing.join(', ')}]`, missing) };
    }
    return record;
  }

  private find(id: string): SObjectRecord | undefined {
    for (const records of this.records.values()) for (const record of records.values()) if (sameId(record.Id, id)) return record;
    return undefined;
  }
}

/** SOQL `=` on text is case-insensitive; on ids, 15- and 18-character forms are equal. */
function equalsSoql(type: FieldSpec['type'], actual: unknown, value: string): boolean {
  if (typeof actual !== 'string') return false;
  if (type === 'reference') return sameId(actual, value);
  return actual.toLowerCase() === value.toLowerCase();
}

function sameId(a: string, b: string): boolean {
  return a.slice(0, 15) === b.slice(0, 15);
}

function parseJson(body: Buffer): { ok: true; value: Record<string, unknown> } | { ok: false } {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? { ok: true, value: value as Record<string, unknown> } : { ok: false };
  } catch {
    return { ok: false };
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
