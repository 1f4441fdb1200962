import { createHash, createPrivateKey } from 'node:crypto';
import { Readable } from 'node:stream';
import { SignJWT } from 'jose';
import { request, type Dispatcher } from 'undici';
import { ErrorCode, GatewayError } from '@gateway/common';
import { headerValue, ownCause } from './network.js';
import type { StreamedBody } from './streaming.js';
import type { DestinationDeps } from './types.js';
import { isSecureOrLocalUrl } from './urls.js';

/** Salesforce ids: 15 case-sensitive or 18 case-insensitive characters. */
const SALESFORCE_ID = /^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$/;
/** How long a REQUEST_LIMIT_EXCEEDED should wait at least: the limit is over a rolling 24 hours. */
const LIMIT_RETRY_AFTER_MS = 15 * 60_000;

/** What the client needs of a connector's settings (see salesforceConfigSchema). */
export interface SalesforceApiSettings {
  loginUrl: string;
  authFlow: 'client_credentials' | 'jwt_bearer';
  clientId: string;
  username?: string | undefined;
  apiVersion: string;
  requestTimeoutMs: number;
}

/** The connector's secrets (see salesforceSecretsSchema): one for each flow. */
export interface SalesforceCredentials {
  clientSecret?: string | undefined;
  privateKeyPem?: string | undefined;
}

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

export interface ApiResponse {
  status: number;
  body: unknown;
}

/** A subrequest of a Composite request; `path` is below /services/data/vXX.X, like RequestSpec's. */
export interface Subrequest {
  /** What it does, for errors: never a value from the request. */
  operation: string;
  referenceId: string;
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  body?: Record<string, unknown>;
}

/** "Composite": at most 25 subrequests in one request, at most 5 of them queries. */
export const COMPOSITE_MAX_SUBREQUESTS = 25;
export const COMPOSITE_MAX_QUERIES = 5;

export interface RequestSpec {
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

/**
 * A tenant's Salesforce org over its REST API (Salesforce REST API Developer Guide): OAuth tokens
 * (cached, replaced after a 401), the API usage Salesforce reports, and its errors reduced to
 * codes, its messages never kept (they can quote data).
 */
export class SalesforceApi {
  /** The last API usage Salesforce reported, for the caller's metrics. */
  usage: SalesforceApiUsage | undefined;
  /** The tenant's timeout, within the operator's cap: a destination that hangs holds its delivery no longer. */
  readonly requestTimeoutMs: number;
  private readonly tokenKey: string;

  constructor(
    private readonly settings: SalesforceApiSettings,
    private readonly secrets: SalesforceCredentials,
    private readonly deps: Pick<DestinationDeps, 'log' | 'checkHost'> & Partial<Pick<DestinationDeps, 'connections' | 'maxRequestTimeoutMs'>>,
    private readonly tokens: SalesforceTokenCache = sharedTokens,
  ) {
    this.requestTimeoutMs = Math.min(settings.requestTimeoutMs, deps.maxRequestTimeoutMs ?? Number.POSITIVE_INFINITY);
    const secret = settings.authFlow === 'client_credentials' ? secrets.clientSecret : secrets.privateKeyPem;
    this.tokenKey = createHash('sha256')
      .update(JSON.stringify([settings.loginUrl, settings.authFlow, settings.clientId, settings.username ?? '', secret ?? '']))
      .digest('hex');
  }

  /** "Limits": the daily API usage, which becomes `usage`; a call that also proves the credentials. */
  async readLimits(): Promise<void> {
    const limits = await this.request({ operation: 'limits', method: 'GET', path: '/limits' });
    const daily = (limits.body as { DailyApiRequests?: { Max?: number; Remaining?: number } }).DailyApiRequests;
    if (daily && typeof daily.Max === 'number' && typeof daily.Remaining === 'number') this.usage = { used: daily.Max - daily.Remaining, max: daily.Max };
  }

  /** The Id of the first record a SOQL query finds, if it looks like one. */
  async queryId(operation: string, soql: string): Promise<string | undefined> {
    const response = await this.request({ operation, method: 'GET', path: `/query?q=${encodeURIComponent(soql)}` });
    const id = (response.body as { records?: Array<{ Id?: unknown }> }).records?.[0]?.Id;
    return typeof id === 'string' && SALESFORCE_ID.test(id) ? id : undefined;
  }

  /**
   * "Send Multiple Requests Using Composite": the subrequests in one request (one API call), run
   * in order, a later one naming an earlier one's answer with `@{referenceId.field}`; answers by
   * referenceId. Without allOrNone, a failed subrequest undoes nothing and only the subrequests
   * that refer to it fail (PROCESSING_HALTED): each step here is found again by its lookup, so a
   * retry completes what is missing.
   */
  async composite(subrequests: Subrequest[], timeoutMs?: number): Promise<Map<string, ApiResponse>> {
    const operations = [...new Set(subrequests.map((s) => s.operation))];
    const operation = operations.length > 1 ? `${operations.slice(0, -1).join(', ')} and ${operations.at(-1)}` : operations[0]!;
    const response = await this.request({
      operation,
      method: 'POST',
      path: '/composite',
      json: {
        allOrNone: false,
        compositeRequest: subrequests.map(({ referenceId, method, path, body }) => ({ referenceId, method, url: `/services/data/${this.settings.apiVersion}${path}`, ...(body ? { body } : {}) })),
      },
      ...(timeoutMs ? { timeoutMs } : {}),
    });
    const results = (response.body as { compositeResponse?: Array<{ referenceId?: unknown; httpStatusCode?: unknown; body?: unknown }> } | undefined)?.compositeResponse;
    const answers = new Map<string, ApiResponse>();
    for (const result of Array.isArray(results) ? results : []) {
      if (typeof result.referenceId === 'string' && typeof result.httpStatusCode === 'number') answers.set(result.referenceId, { status: result.httpStatusCode, body: result.body });
    }
    const missing = subrequests.find((s) => !answers.has(s.referenceId));
    if (missing) throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce ${operation}: no answer for the ${missing.operation} in the composite response`, { details: { retryable: true } });
    return answers;
  }

  /**
   * The answer of a subrequest, or the failure it is (a subrequest that failed only because the
   * one it refers to failed says less than that one: `all` is searched for the first real cause).
   */
  static settled(answers: Map<string, ApiResponse>, subrequest: Subrequest, all: Subrequest[], accept: number[] = []): ApiResponse {
    const answer = answers.get(subrequest.referenceId)!;
    if ((answer.status >= 200 && answer.status < 300) || accept.includes(answer.status)) return answer;
    const failed = (s: Subrequest) => {
      const a = answers.get(s.referenceId)!;
      return !(a.status >= 200 && a.status < 300) && !accept.includes(a.status) && errorCodeOf(a.body) !== 'PROCESSING_HALTED';
    };
    const cause = errorCodeOf(answer.body) === 'PROCESSING_HALTED' ? (all.find(failed) ?? subrequest) : subrequest;
    const causeAnswer = answers.get(cause.referenceId)!;
    throw failure(cause.operation, causeAnswer.status, errorCodeOf(causeAnswer.body));
  }

  /** A REST API call with the cached token; a 401 gets a new token and one more try. */
  async request(spec: RequestSpec): Promise<ApiResponse> {
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
      const usage = this.usage ? ` (api-usage ${this.usage.used}/${this.usage.max})` : '';
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce API request limit exceeded${usage}; retrying later`, {
        details: { httpStatus: 403, errorCode: code, retryAfterMs: LIMIT_RETRY_AFTER_MS },
      });
    }
    throw failure(spec.operation, response.status, code);
  }

  private async send(spec: RequestSpec, token: AccessToken): Promise<ApiResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${token.accessToken}`, accept: 'application/json' };
    let body: RequestBody['body'];
    if (spec.json !== undefined) {
      body = JSON.stringify(spec.json);
      headers['content-type'] = 'application/json';
    } else if (spec.body) {
      // Streamed, with its length known, so no chunked encoding is asked of Salesforce.
      body = Readable.from(spec.body.open(), { objectMode: false });
      headers['content-length'] = String(spec.body.length);
      if (spec.contentType) headers['content-type'] = spec.contentType;
    }
    const timeoutMs = spec.timeoutMs ?? this.requestTimeoutMs;
    return this.requestJson(spec.operation, `${token.instanceUrl}/services/data/${this.settings.apiVersion}${spec.path}`, { method: spec.method, headers, body }, timeoutMs);
  }

  /**
   * A request with a timeout; network failures become retryable DESTINATION_FAILED errors.
   * undici's request rather than its fetch: a fraction of the work per call (no WHATWG streams,
   * Headers or Response). It follows no redirect: a 3xx is an answer like any other, and no
   * token goes to another host.
   */
  private async requestJson(operation: string, url: string, init: RequestBody, timeoutMs: number): Promise<ApiResponse> {
    try {
      // Through the dispatcher whose connections go only to checked addresses.
      const response = await request(url, { ...init, signal: AbortSignal.timeout(timeoutMs), ...(this.deps.connections ? { dispatcher: this.deps.connections.dispatcher } : {}) });
      this.recordUsage(headerValue(response.headers['sforce-limit-info']));
      const text = await response.body.text();
      let body: unknown;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = undefined;
      }
      return { status: response.statusCode, body };
    } catch (error) {
      // A refused address, or an artifact that failed its check while it was sent, says more than the request's own error.
      const own = ownCause(error);
      if (own) throw own;
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce ${operation}: ${networkReason(error, timeoutMs)}`, { cause: error, details: { retryable: true } });
    }
  }

  private recordUsage(header: string | undefined): void {
    const match = header && /api-usage=(\d+)\/(\d+)/.exec(header);
    if (!match) return;
    this.usage = { used: Number(match[1]), max: Number(match[2]) };
    this.deps.log.debug({ apiUsed: this.usage.used, apiMax: this.usage.max }, 'salesforce api usage');
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
    const { loginUrl, authFlow, clientId, username } = this.settings;
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
    const response = await this.requestJson(
      'token request',
      `${loginUrl}/services/oauth2/token`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
      },
      this.requestTimeoutMs,
    );
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

/** HTTPS only; plain HTTP only to this machine (the contract server in tests). */
function safeInstanceUrl(value: string): boolean {
  return isSecureOrLocalUrl(value);
}

/** "Status Codes and Error Responses": errors are `[{message, errorCode, fields}]`. Only the code is kept: messages can quote data. */
export function errorCodeOf(body: unknown): string {
  const first = Array.isArray(body) ? (body[0] as { errorCode?: unknown } | undefined) : undefined;
  const code = first?.errorCode;
  return typeof code === 'string' && /^[A-Z_]{1,64}$/.test(code) ? code : 'no error code';
}

/** The id of a record Salesforce created, if it looks like one. */
export function recordId(body: unknown): string | undefined {
  const id = (body as { id?: unknown } | undefined)?.id;
  return typeof id === 'string' && SALESFORCE_ID.test(id) ? id : undefined;
}

export function failure(operation: string, status: number, code: string): GatewayError {
  const retryable = status >= 500 || status === 408 || status === 429;
  return new GatewayError(ErrorCode.DESTINATION_FAILED, `Salesforce ${operation} failed: HTTP ${status} ${code}`, { details: { httpStatus: status, errorCode: code, retryable } });
}

/** What went wrong on the wire, without anything from the request. */
function networkReason(error: unknown, timeoutMs: number): string {
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return `no answer within ${timeoutMs} ms`;
  // undici's request fails with the socket's error itself (its fetch put it under `cause`).
  const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset';
  if (code) return `network error ${code}`;
  return error instanceof Error ? error.name : 'network error';
}

/** What a request sends besides its URL. */
type RequestBody = Pick<Dispatcher.RequestOptions, 'method' | 'headers' | 'body'>;
