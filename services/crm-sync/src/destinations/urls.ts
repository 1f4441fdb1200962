const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Credentials and communications only travel encrypted: a destination's URL must be https, or
 * plain http to a server on the same host (a local test server, a sidecar).
 */
export function isSecureOrLocal(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname));
}
