import { ErrorCode, GatewayError } from '../errors.js';

/** The signaling WebSocket URL for a ws(s) URL or an http(s) base. */
export function signalingUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new GatewayError(ErrorCode.BAD_REQUEST, 'url must be ws(s):// or http(s)://');
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  u.hash = '';
  return u.toString();
}

/**
 * The HTTP base of the signaling server (uploads, attachment URLs) for the URL given to
 * connect(): https for wss, http for ws, without the `/ws` path, query or hash, no trailing slash.
 */
export function signalingHttpBase(url: string): string {
  const u = new URL(signalingUrl(url));
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = u.pathname.replace(/\/ws\/?$/, '');
  u.search = '';
  u.hash = '';
  return u.toString().replace(/\/$/, '');
}

/** The desk WebSocket URL (contact center: `/v1/desk` beside the room's `/ws`) for the same url as connect()'s. */
export function deskUrl(url: string): string {
  const u = new URL(signalingHttpBase(url));
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/$/, '')}/v1/desk`;
  return u.toString();
}
