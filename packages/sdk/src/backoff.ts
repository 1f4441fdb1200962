/**
 * The SDK's reconnect backoff, on its own so that one formula serves signaling reconnection
 * and ICE restarts (and can later be unified with the services' own).
 */

/** Exponential backoff with jitter, so clients cut off together do not come back together. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** attempt);
  return Math.round(ceiling * (0.5 + random() / 2));
}
