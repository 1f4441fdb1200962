// The admin page's two APIs: routing's directory (/v1/directory) and crm-sync's API keys
// (/v1/api-keys), on their own origins. They let this page's origin in through CORS
// (ADMIN_ALLOWED_ORIGINS, docs/using.md); every call carries the tenant's apiKey:apiSecret in an
// Authorization header, never a cookie, and nothing of it is logged or put in a URL.

const SESSION_KEY = 'gateway.admin.session';

/** An answer of an admin API that is not a success: its error code and message, as the API gave them. */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** The session of this tab (sessionStorage: gone with the tab, never shared with another). */
export const session = {
  read() {
    try {
      const value = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      return value?.apiKey && value.apiSecret && value.directoryApi && value.keysApi ? value : undefined;
    } catch {
      return undefined;
    }
  },
  write(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

/** An API's base URL as typed: its origin and path, without a trailing slash. */
export function baseUrl(value) {
  const url = new URL(value.trim());
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ApiError('BAD_INPUT', `${value} is not an http(s) URL`);
  if (url.username || url.password || url.search || url.hash) throw new ApiError('BAD_INPUT', `${value}: give the API's address only (no credentials, query or fragment)`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

export class AdminApi {
  /** @param {{apiKey: string, apiSecret: string, directoryApi: string, keysApi: string}} credentials */
  constructor(credentials) {
    this.credentials = credentials;
  }

  get apiKey() {
    return this.credentials.apiKey;
  }

  async call(base, method, path, body) {
    const { apiKey, apiSecret } = this.credentials;
    const headers = { authorization: `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(`${apiKey}:${apiSecret}`)))}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res;
    try {
      // credentials 'omit': the browser adds no cookie nor remembered login; the header above is all.
      res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' });
    } catch {
      throw new ApiError('UNREACHABLE', `${base} did not answer: is it running, and does its ADMIN_ALLOWED_ORIGINS name ${location.origin}?`);
    }
    if (res.status === 204) return undefined;
    const json = await res.json().catch(() => undefined);
    if (!res.ok) throw new ApiError(json?.error?.code || `HTTP_${res.status}`, json?.error?.message || res.statusText, res.status);
    return json;
  }

  // ---- the directory (routing) ----
  directory() {
    return this.call(this.credentials.directoryApi, 'GET', '/v1/directory');
  }
  putRecord(kind, id, record) {
    return this.call(this.credentials.directoryApi, 'PUT', `/v1/directory/${kind}/${encodeURIComponent(id)}`, record);
  }
  removeRecord(kind, id) {
    return this.call(this.credentials.directoryApi, 'DELETE', `/v1/directory/${kind}/${encodeURIComponent(id)}`);
  }

  // ---- API keys (crm-sync) ----
  async apiKeys() {
    return (await this.call(this.credentials.keysApi, 'GET', '/v1/api-keys')).apiKeys;
  }
  createKey(label) {
    return this.call(this.credentials.keysApi, 'POST', '/v1/api-keys', { label });
  }
  rotateKey(keyId, overlapSeconds) {
    return this.call(this.credentials.keysApi, 'POST', `/v1/api-keys/${encodeURIComponent(keyId)}/rotate`, { overlapSeconds });
  }
  revokeKey(keyId) {
    return this.call(this.credentials.keysApi, 'DELETE', `/v1/api-keys/${encodeURIComponent(keyId)}`);
  }
}
