import { createHmac, type KeyObject, randomBytes } from 'node:crypto';
import type http from 'node:http';
import { jwtVerify } from 'jose';
import type { Reply } from './reply.js';

/**
 * The token endpoint, `POST /services/oauth2/token`: "OAuth 2.0 Client Credentials Flow for
 * Server-to-Server Integration" and "OAuth 2.0 JWT Bearer Flow for Server-to-Server
 * Integration": form-encoded POST; errors are {error, error_description} with HTTP 400.
 */

/** The connected app the org knows, and the org's own URL (the JWT audience and the instance URL). */
export interface ConnectedApp {
  clientId: string;
  /** Client credentials flow: the connected app's consumer secret. */
  clientSecret?: string;
  /** JWT bearer flow: the pre-authorized user and the certificate's public key. */
  jwt?: { username: string; publicKey: KeyObject };
  url: string;
}

/** Grants an access token, which is added to `tokens`, or answers the OAuth error. */
export async function token(app: ConnectedApp, tokens: Set<string>, headers: http.IncomingHttpHeaders, body: Buffer): Promise<Reply> {
  const oauthError = (code: string, description: string): Reply => ({ status: 400, body: { error: code, error_description: description } });
  if (!(headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) return oauthError('invalid_request', 'unsupported content type');
  const form = new URLSearchParams(body.toString());
  const grant = form.get('grant_type');
  let username: string;
  if (grant === 'client_credentials') {
    if (form.get('client_id') !== app.clientId || !app.clientSecret || form.get('client_secret') !== app.clientSecret) {
      return oauthError('invalid_client', 'invalid client credentials');
    }
    username = 'integration@example.invalid';
  } else if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    const jwt = app.jwt;
    const assertion = form.get('assertion');
    if (!jwt || !assertion) return oauthError('invalid_grant', 'invalid assertion');
    try {
      // iss = consumer key, sub = username, aud = the login URL, exp at most 3 minutes away, RS256.
      const { payload } = await jwtVerify(assertion, jwt.publicKey, { algorithms: ['RS256'], issuer: app.clientId, subject: jwt.username, audience: app.url });
      if (typeof payload.exp !== 'number' || payload.exp - Date.now() / 1000 > 180 + 5) return oauthError('invalid_grant', 'expiration is too far in the future');
    } catch {
      return oauthError('invalid_grant', 'invalid assertion');
    }
    username = jwt.username;
  } else {
    return oauthError('unsupported_grant_type', 'grant type not supported');
  }
  const accessToken = `00D5g000000TEST!${randomBytes(32).toString('base64url')}`;
  tokens.add(accessToken);
  const id = `${app.url}/id/00D5g000000TESTEAA/0055g000000USEREAA`;
  const issuedAt = String(Date.now());
  return {
    status: 200,
    body: {
      access_token: accessToken,
      instance_url: app.url,
      id,
      token_type: 'Bearer',
      issued_at: issuedAt,
      // HMAC-SHA256 of id + issued_at with the consumer secret (documented response field).
      signature: createHmac('sha256', app.clientSecret ?? username)
        .update(id + issuedAt)
        .digest('base64'),
      scope: 'api',
    },
  };
}
