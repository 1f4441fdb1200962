import { createHash, createPrivateKey, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import { fetch, type RequestInit } from 'undici';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '@gateway/common';
import { ownCause } from './network.js';
import { base64Length, base64Of, bodyOf, type StreamedBody } from './streaming.js';
import type { ArtifactContent, Delivery, DeliveryArtifact, Destination, DestinationDeps } from './types.js';
import { isSecureOrLocalUrl } from './urls.js';

/**
 * Salesforce over its REST API (Salesforce REST API Developer Guide). Each delivery becomes a
 * `Task` on the end user's `Contact` and one `ContentVersion` (a Salesforce File) per artifact,
 * published to that contact. Every write is preceded by a lookup of its idempotency key, so a
 * redelivery after a crash, a timeout or a lost response creates nothing twice:
 *   - Contact: the customer's external id field (`contactExternalIdField`), cached in the
 *     ContactMap;
 *   - Task: `CallObject` = the delivery id;
 *   - ContentVersion: `Title` ending with our artifact id, on the same `FirstPublishLocationId`.
 */

const MB = 1024 * 1024;
/** "Insert or Update Blob Data": a JSON body holds at most 37.5 MB of base64-encoded data. */
const JSON_BLOB_LIMIT_BYTES = 37.5 * MB;
/** Salesforce ids: 15 case-sensitive or 18 case-insensitive characters. */
const SALESFORCE_ID = /^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$/;
/** A Contact id starts with its key prefix 003; anything else in `crmContactId` belongs to another CRM. */
const CONTACT_ID = /^003[a-zA-Z0-9]{12}(?:[a-zA-Z0-9]{3})?$/;
/** External id values sent in a URL path (upsert). Others (dots, slashes, quotes) take query + create. */
const PATH_SAFE_VALUE = /^[A-Za-z0-9_-]{1,255}$/;
/** How long a REQUEST_LIMIT_EXCEEDED should wait at least: the limit is over a rolling 24 hours. */
const LIMIT_RETRY_AFTER_MS = 15 * 60_000;

/** HTTPS only; plain HTTP only to this machine (the contract server in tests). */
const acceptableOrigin = isSecureOrLocalUrl;

export const salesforceConfigSchema = z
  .object({
    /** The My Domain URL (client credentials) or login.salesforce.com / test.salesforce.com (JWT bearer). */
    loginUrl: z.url().refine(acceptableOrigin, 'must be an https URL').transform((u) => u.replace(/\/+$/, '')),
    authFlow: z.enum(['client_credentials', 'jwt_bearer']),
    /** The connected app's consumer key. */
    clientId: z.string().min(1).max(256),
    /** The integration user (JWT bearer only). */
    username: z.string().min(1).max(256).optional(),
    apiVersion: z.string().regex(/^v\d{2,3}\.0$/).default('v60.0'),
    /** An External ID field on Contact holding the customer's id of the end user. Interpolated into SOQL and URLs, hence the strict form. */
    contactExternalIdField: z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,79}$/).default('Gateway_External_Id__c'),
    /** Files up to this size go as JSON (base64); larger ones as multipart. */
    jsonUploadMaxBytes: z.number().int().positive().max(JSON_BLOB_LIMIT_BYTES).default(30 * MB),
    /** Per request; uploads get one more second per MB (1 MB/s) on top. */
    requestTimeoutMs: z.number().int().min(50).max(600_000).default(60_000),
  })
  .refine((c) => c.authFlow !== 'jwt_bearer' || c.username, { message: 'username is required for jwt_bearer', path: ['username'] });

export const salesforceSecretsSchema = z
  .object({
    /** The connected app's consumer secret (client credentials). */
    clientSecret: z.string().min(1).optional(),
    /** The private key whose certificate is on the connected app (JWT bearer): PKCS#8 or PKCS#1 PEM. */
    privateKeyPem: z.string().regex(/-----BEGIN (?:RSA )?PRIVATE KEY-----/, 'must be a PEM private key').optional(),
  })
  .refine((s) => s.clientSecret || s.privateKeyPem, { message: 'clientSecret (client_credentials) or privateKeyPem (jwt_bearer) is required' });

export type SalesforceConfig = z.infer<typeof salesforceConfigSchema>;
export type SalesforceSecrets = z.infer<typeof salesforceSecretsSchema>;

interface AccessToken {
  accessToken: string;
  instanceUrl: string;
  obtainedAtMs: number;
}

/**
 * Access tokens by credentials. Deliveries open a destination per delivery, so the cache lives
 * outside it: one token request per connector rather than per delivery. Salesforce does not
 * say when a token expires (the org's session timeout does); a 401 replaces it, and an hour
 * is the longest we keep one.
 */
export class SalesforceTokenCache {
  private readonly tokens = new Map<string, AccessToken>();
  private readonly pending = new Map<string, Promise<AccessToken>>();
  constructor(private readonly maxAgeMs = 60 * 60_000) {}

  async get(key: string, fetchToken: () => Promise<AccessToken>): Promise<AccessToken> {
    const cached = this.tokens.get(key);
    if (cached && Date.now() - cached.obtainedAtMs < this.maxAgeMs) return cached;
    let pending = this.pending.get(key);
    if (!pending) {
      pending = fetchToken()
        .then((token) => {
          this.tokens.set(key, token);
          return token;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    return pending;
  }

  /** Drops the token if it is still the one that was refused. */
  invalidate(key: string, token: AccessToken): void {
    if (this.tokens.get(key) === token) this.tokens.delete(key);
  }
}

const sharedTokens = new SalesforceTokenCache();

/** API usage from the last `Sforce-Limit-Info: api-usage=NN/MMMM` header. */
export interface SalesforceApiUsage {
  used: number;
  max: number;
}

/** A SOQL string literal ("Quoted String Escape Sequences", SOQL and SOSL Reference). */
export function soqlString(value: string): string {
  const escapes: Record<string, string> = { '\\': '\\\\', "'": "\\'", '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };
  return `'${value.replace(/[\\'"\n\r\t\b\f]/g, (c) => escapes[c]!)}'`;
}

const subjects: Record<Delivery['kind'], string> = { recording: 'Call recording', transcript: 'Chat transcript', attachment: 'Attachment', session: 'Support session' };
const extensions: Record<string, string> = {
  'audio/ogg': 'ogg', 'audio/webm': 'webm', 'audio/mpeg': 'mp3', 'audio/wav': 'wav', 'video/webm': 'webm', 'video/mp4': 'mp4',
  'application/json': 'json', 'text/plain': 'txt', 'application/pdf': 'pdf', 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp',
};

interface ApiResponse {
  status: number;
  body: unknown;
}

interface RequestSpec {
  /** What we were doing, for errors and logs: never a value from the request. */
  operation: string;
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  json?: unknown;
  /** Streamed from the artifact; opened again for a retry. */
  body?: StreamedBody;
  contentType?: string;
  timeoutMs?: number;
  /** Statuses handled by the caller instead of becoming errors. */
  accept?: number[];
}

/** A tenant's Salesforce org. */
export class SalesforceDestination implements Destination {
  /** The last API usage Salesforce reported, for the caller's metrics. */
  apiUsage: SalesforceApiUsage | undefined;
  private readonly tokenKey: string;
  private readonly tokens: SalesforceTokenCache;
  /** The tenant's timeout, within the operator's cap: a destination that hangs holds its delivery no longer. */
  private readonly requestTimeoutMs: number;

  constructor(
    private readonly config: SalesforceConfig,
    private readonly secrets: SalesforceSecrets,
    private readonly deps: Pick<DestinationDeps, 'contacts' | 'log' | 'checkHost'> & Partial<Pick<DestinationDeps, 'connections' | 'maxRequestTimeoutMs'>>,
    options: { tokens?: SalesforceTokenCache } = {},
  ) {
    this.tokens = options.tokens ?? sharedTokens;
    this.requestTimeoutMs = Math.min(config.requestTimeoutMs, deps.maxRequestTimeoutMs ?? Number.POSITIVE_INFINITY);
    const secret = config.authFlow === 'client_credentials' ? secrets.clientSecret : secrets.privateKeyPem;
    this.tokenKey = createHash('sha256').update(JSON.stringify([config.loginUrl, config.authFlow, config.clientId, config.username ?? '', secret ?? ''])).digest('hex');
  }

  async test(): Promise<void> {
    const limits = await this.request({ operation: 'limits', method: 'GET', path: '/limits' });
    const daily = (limits.body as { DailyApiRequests?: { Max?: number; Remaining?: number } }).DailyApiRequests;
    if (daily && typeof daily.Max === 'number' && typeof daily.Remaining === 'number') this.apiUsage = { used: daily.Max - daily.Remaining, max: daily.Max };
  }

  async deliver(delivery: Delivery): Promise<void> {
    // A Task has one WhoId and a file one FirstPublishLocationId: the first end user is the contact.
    const endUser = delivery.contacts.find((c) => c.role === 'end_user' && c.externalId);
    const contactId = !endUser ? undefined : CONTACT_ID.test(endUser.crmContactId) ? endUser.crmContactId : await this.contactFor(endUser.externalId);
    const taskId = await this.ensureTask(delivery, contactId);
    // Files go on the end user's contact; without one, on the Task, so they are never orphans.
    for (const artifact of delivery.artifacts) await this.ensureFile(delivery, artifact, contactId ?? taskId);
  }

  async close(): Promise<void> {
    // fetch keeps no per-destination state; the token stays cached for the next delivery.
  }

  /** The Contact of an end user: cached, else found by the external id field, else created. */
  private async contactFor(externalId: string): Promise<string> {
    const cached = await this.deps.contacts.get(externalId);
    if (cached) return cached;
    const field = this.config.contactExternalIdField;
    const lookup = `SELECT Id FROM Contact WHERE ${field} = ${soqlString(externalId)} LIMIT 1`;
    let id = await this.queryId('contact lookup', lookup);
    if (!id) {
      id = PATH_SAFE_VALUE.test(externalId) ? await this.upsertContact(externalId) : await this.createContact(externalId);
      id ??= await this.queryId('contact lookup', lookup);
      if (!id) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Salesforce created a Contact that cannot be found by its external id');
    }
    await this.deps.contacts.set(externalId, id);
    return id;
  }

  /**
   * "Upsert Records Using sObject Rows by External ID": atomic, so two replicas creating the same
   * end user make one Contact. 201 created; 200 {created:false} (API 46.0+) or 204 (older)
   * when it matched, which only happens if it was created since our lookup.
   */
  private async upsertContact(externalId: string): Promise<string | undefined> {
    const field = this.config.contactExternalIdField;
    const response = await this.request({
      operation: 'contact upsert',
      method: 'PATCH',
      path: `/sobjects/Contact/${field}/${encodeURIComponent(externalId)}`,
      json: { LastName: 'Gateway end user' },
      accept: [300],
    });
    if (response.status === 300) throw new GatewayError(ErrorCode.DESTINATION_FAILED, `several Salesforce Contacts have the same ${field}`, { details: { httpStatus: 300 } });
    return recordId(response.body);
  }

  /** External ids that cannot go in a URL path: create with a POST (DUPLICATE_VALUE if a unique field was filled meanwhile). */
  private async createContact(externalId: string): Promise<string | undefined> {
    const response = await this.request({
      operation: 'contact create',
      method: 'POST',
      path: '/sobjects/Contact',
      json: { LastName: 'Gateway end user', [this.config.contactExternalIdField]: externalId },
      accept: [400],
    });
    if (response.status === 400) {
      const code = errorCodeOf(response.body);
      if (code === 'DUPLICATE_VALUE') return undefined;
      throw failure('contact create', 400, code);
    }
    return recordId(response.body);
  }

  /** The Task that logs the call or chat, once per delivery (`CallObject` = delivery id). */
  private async ensureTask(delivery: Delivery, contactId: string | undefined): Promise<string> {
    const existing = await this.queryId('task lookup', `SELECT Id FROM Task WHERE CallObject = ${soqlString(delivery.deliveryId)} LIMIT 1`);
    if (existing) return existing;
    const task: Record<string, unknown> = {
      Subject: subjects[delivery.kind],
      Status: 'Completed',
      Priority: 'Normal',
      CallObject: delivery.deliveryId,
      ActivityDate: new Date(delivery.startedAtMs || Date.now()).toISOString().slice(0, 10),
      Description: `Delivered by Gateway (${delivery.kind} ${delivery.deliveryId}, ${delivery.artifacts.length} file(s)).`,
    };
    if (contactId) task.WhoId = contactId;
    if (delivery.kind === 'recording') {
      task.TaskSubtype = 'Call';
      if (delivery.endedAtMs > delivery.startedAtMs) task.CallDurationInSeconds = Math.round((delivery.endedAtMs - delivery.startedAtMs) / 1000);
    }
    const created = await this.request({ operation: 'task create', method: 'POST', path: '/sobjects/Task', json: task });
    const id = recordId(created.body);
    if (!id) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Salesforce created a Task without returning its id');
    return id;
  }

  /**
   * One ContentVersion per artifact. Its Title ends with our artifact id (unique, ours, not
   * personal data) and it is published to `parentId`: the pair is looked up before uploading.
   * A custom field would need the customer to add it; Title and FirstPublishLocationId are
   * standard, filterable and set by us. (Someone renaming the file within the retry window is
   * the one way this can make a second copy.)
   */
  private async ensureFile(delivery: Delivery, artifact: DeliveryArtifact, parentId: string): Promise<void> {
    const title = `${subjects[delivery.kind]} ${artifact.artifactId}`;
    const existing = await this.queryId('file lookup', `SELECT Id FROM ContentVersion WHERE Title = ${soqlString(title)} AND FirstPublishLocationId = ${soqlString(parentId)} LIMIT 1`);
    if (existing) return;
    const content = await artifact.open();
    const pathOnClient = `${artifact.artifactId.replace(/[^A-Za-z0-9_.-]/g, '_')}.${extensions[artifact.contentType] ?? 'bin'}`;
    const fields = { Title: title, PathOnClient: pathOnClient, FirstPublishLocationId: parentId, Description: `Gateway ${artifact.kind}, part ${artifact.part}` };
    // Uploads get one more millisecond per kilobyte: time for 1 MB/s.
    const timeoutMs = this.requestTimeoutMs + Math.floor(content.size / 1000);
    // The bytes are streamed into the body (a retry after a 401 reads the artifact again).
    let first: ArtifactContent | undefined = content;
    const chunks = async function* () {
      const source = first ?? (await artifact.open());
      first = undefined;
      yield* source.chunks;
    };
    if (content.size <= this.config.jsonUploadMaxBytes) {
      // {"Title":…,"VersionData":"<base64>"}: the JSON up to the value's opening quote, the base64 block by block, then the end.
      const head = JSON.stringify({ ...fields, VersionData: '' }).slice(0, -2);
      const body: StreamedBody = { length: Buffer.byteLength(head) + base64Length(content.size) + 2, open: () => bodyOf(head, base64Of(chunks()), '"}') };
      await this.request({ operation: 'file upload', method: 'POST', path: '/sobjects/ContentVersion', body, contentType: 'application/json', timeoutMs });
      return;
    }
    // "Insert or Update Blob Data": the fields as JSON first, then the bytes.
    const boundary = `gateway-${randomBytes(16).toString('hex')}`;
    const head =
      `--${boundary}\r\nContent-Disposition: form-data; name="entity_content"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(fields)}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="VersionData"; filename="${pathOnClient}"\r\nContent-Type: ${artifact.contentType.replace(/[^\w./+-]/g, '') || 'application/octet-stream'}\r\n\r\n`;
    const tail = `\r\n--${boundary}--\r\n`;
    const body: StreamedBody = { length: Buffer.byteLength(head) + content.size + Buffer.byteLength(tail), open: () => bodyOf(head, chunks(), tail) };
    await this.request({ operation: 'file upload', method: 'POST', path: '/sobjects/ContentVersion', body, contentType: `multipart/form-data; boundary="${boundary}"`, timeoutMs });
  }

  private async queryId(operation: string, soql: string): Promise<string | undefined> {
    const response = await this.request({ operation, method: 'GET', path: `/query?q=${encodeURIComponent(soql)}` });
    const id = (response.body as { records?: Array<{ Id?: unknown }> }).records?.[0]?.Id;
    return typeof id === 'string' && SALESFORCE_ID.test(id) ? id : undefined;
  }

  /** A REST API call with the cached token; a 401 gets a new token and one more try. */
  private async request(spec: RequestSpec): Promise<ApiResponse> {
    let token = await this.token();
    let response = await this.send(spec, token);
    if (response.status === 401) {
      this.tokens.invalidate(this.tokenKey, token);
      token = await this.token();
      response = await this.send(spec, token);
    }
    if ((response.status >= 200 && response.status < 300) || spec.accept?.includes(response.status)) return response;
    const code = errorCodeOf(response.body);
    if (response.status === 403 && code === 'REQUEST_LIMIT_EXCEEDED') {
      const usage = this.apiUsage ? ` (api-usage ${this.apiUsage.used}/${this.apiUsage.max})` : '';
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce API request limit exceeded${usage}; retrying later`, {
        details: { httpStatus: 403, errorCode: code, retryAfterMs: LIMIT_RETRY_AFTER_MS },
      });
    }
    throw failure(spec.operation, response.status, code);
  }

  private async send(spec: RequestSpec, token: AccessToken): Promise<ApiResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${token.accessToken}`, accept: 'application/json' };
    let body: RequestInit['body'];
    if (spec.json !== undefined) {
      body = JSON.stringify(spec.json);
      headers['content-type'] = 'application/json';
    } else if (spec.body) {
      // Streamed, with its length known, so no chunked encoding is asked of Salesforce.
      body = spec.body.open();
      headers['content-length'] = String(spec.body.length);
      if (spec.contentType) headers['content-type'] = spec.contentType;
    }
    const timeoutMs = spec.timeoutMs ?? this.requestTimeoutMs;
    return this.fetchJson(spec.operation, `${token.instanceUrl}/services/data/${this.config.apiVersion}${spec.path}`, { method: spec.method, headers, body, ...(spec.body ? { duplex: 'half' as const } : {}) }, timeoutMs);
  }

  /** fetch with a timeout; network failures become retryable DESTINATION_FAILED errors. */
  private async fetchJson(operation: string, url: string, init: RequestInit, timeoutMs: number): Promise<ApiResponse> {
    try {
      // Through the dispatcher whose connections go only to checked addresses.
      const response = await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(timeoutMs), ...(this.deps.connections ? { dispatcher: this.deps.connections.dispatcher } : {}) });
      this.recordUsage(response.headers.get('sforce-limit-info'));
      const text = await response.text();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
      }
      return { status: response.status, body };
    } catch (error) {
      // A refused address, or an artifact that failed its check while it was sent, says more than "fetch failed".
      const own = ownCause(error);
      if (own) throw own;
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce ${operation}: ${networkReason(error, timeoutMs)}`, { cause: error, details: { retryable: true } });
    }
  }

  private recordUsage(header: string | null): void {
    const match = header && /api-usage=(\d+)\/(\d+)/.exec(header);
    if (!match) return;
    this.apiUsage = { used: Number(match[1]), max: Number(match[2]) };
    this.deps.log.debug({ apiUsed: this.apiUsage.used, apiMax: this.apiUsage.max }, 'salesforce api usage');
  }

  private token(): Promise<AccessToken> {
    return this.tokens.get(this.tokenKey, () => this.requestToken());
  }

  /**
   * "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration" and "OAuth 2.0 JWT
   * Bearer Flow for Server-to-Server Integration" (Salesforce Help): a form POST to
   * /services/oauth2/token answering {access_token, instance_url, token_type, issued_at, ...}.
   */
  private async requestToken(): Promise<AccessToken> {
    const { loginUrl, authFlow, clientId, username } = this.config;
    const form = new URLSearchParams();
    if (authFlow === 'client_credentials') {
      if (!this.secrets.clientSecret) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the connector has no clientSecret for the client_credentials flow');
      form.set('grant_type', 'client_credentials');
      form.set('client_id', clientId);
      form.set('client_secret', this.secrets.clientSecret);
    } else {
      if (!this.secrets.privateKeyPem) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the connector has no privateKeyPem for the jwt_bearer flow');
      let key;
      try {
        key = createPrivateKey(this.secrets.privateKeyPem);
      } catch (error) {
        throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the connector privateKeyPem cannot be read', { cause: error });
      }
      // The assertion may live at most 3 minutes.
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg: 'RS256' })
        .setIssuer(clientId)
        .setSubject(username!)
        .setAudience(loginUrl)
        .setExpirationTime(Math.floor(Date.now() / 1000) + 170)
        .sign(key);
      form.set('grant_type', 'urn:ietf:params:oauth:grant-type:jwt-bearer');
      form.set('assertion', assertion);
    }
    const response = await this.fetchJson('token request', `${loginUrl}/services/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
    }, this.requestTimeoutMs);
    const body = (response.body ?? {}) as { access_token?: unknown; instance_url?: unknown; error?: unknown };
    if (response.status !== 200) {
      // OAuth error codes (invalid_client, invalid_grant...) are safe to show; descriptions are not needed.
      const code = typeof body.error === 'string' && /^[a-z_]{1,64}$/.test(body.error) ? body.error : 'no error code';
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce refused the token request: HTTP ${response.status} ${code}`, { details: { httpStatus: response.status, errorCode: code } });
    }
    if (typeof body.access_token !== 'string' || typeof body.instance_url !== 'string' || !safeInstanceUrl(body.instance_url)) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'Salesforce answered the token request without a usable access_token and instance_url');
    }
    await this.deps.checkHost(new URL(body.instance_url).hostname);
    return { accessToken: body.access_token, instanceUrl: body.instance_url.replace(/\/+$/, ''), obtainedAtMs: Date.now() };
  }
}

function safeInstanceUrl(value: string): boolean {
  return acceptableOrigin(value);
}

/** "Status Codes and Error Responses": errors are `[{message, errorCode, fields}]`. Only the code is kept: messages can quote data. */
function errorCodeOf(body: unknown): string {
  const first = Array.isArray(body) ? (body[0] as { errorCode?: unknown } | undefined) : undefined;
  const code = first?.errorCode;
  return typeof code === 'string' && /^[A-Z_]{1,64}$/.test(code) ? code : 'no error code';
}

function recordId(body: unknown): string | undefined {
  const id = (body as { id?: unknown } | undefined)?.id;
  return typeof id === 'string' && SALESFORCE_ID.test(id) ? id : undefined;
}

function failure(operation: string, status: number, code: string): GatewayError {
  const retryable = status >= 500 || status === 408 || status === 429;
  return new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce ${operation} failed: HTTP ${status} ${code}`, { details: { httpStatus: status, errorCode: code, retryable } });
}

/** What went wrong on the wire, without anything from the request. */
function networkReason(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return `no answer within ${timeoutMs} ms`;
  const cause = (error as { cause?: { code?: string; name?: string } }).cause;
  if (cause?.code === 'ECONNRESET' || cause?.code === 'UND_ERR_SOCKET') return 'connection reset';
  if (cause?.code) return `network error ${cause.code}`;
  return error instanceof Error ? error.name : 'network error';
}
