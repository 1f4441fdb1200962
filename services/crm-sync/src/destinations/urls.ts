const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Credentials and communications only travel encrypted: a destination's URL must be https, or
 * plain http to a server on the same host (a local test server, a sidecar).
 */
export function isSecureOrLocal(url: URL): boolean {
  return url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname));
}

/** A URL, or undefined for one that does not parse (schemas' refinements run on any string). */
export function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/** https, or http to this host: for settings given as URLs. */
export function isSecureOrLocalUrl(value: string): boolean {
  const url = parseUrl(value);
  return url !== undefined && isSecureOrLocal(url);
}
