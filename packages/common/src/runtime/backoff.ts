/**
 * The one backoff of the code base, browser-safe (the SDK uses it too): exponential from
 * `initialMs`, doubling per attempt (the first retry is attempt 0), capped at `maxMs`, then
 * jittered into the upper half of that ceiling, so callers cut off together do not come back
 * together and a delay is never less than half its ceiling.
 */
export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export function backoffDelayMs(attempt: number, { initialMs, maxMs }: Backoff, random: () => number = Math.random): number {
  const exponent = Math.max(0, Math.min(attempt, 52));
  const ceiling = Math.min(maxMs, initialMs * 2 ** exponent);
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** Waits the backoff of `attempt`. */
export function sleepBackoff(attempt: number, backoff: Backoff, random?: () => number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, backoffDelayMs(attempt, backoff, random)));
}

/**
 * How long an HTTP answer's Retry-After asks to wait (RFC 9110: delay seconds or an HTTP date;
 * a date in the past is no wait); undefined when the header is missing or unreadable, so each
 * caller picks its own wait for that case.
 */
export function retryAfterMs(header: string | null | undefined, now = Date.now()): number | undefined {
  const value = header?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  // Only the date form senders must use (IMF-fixdate): Date.parse alone reads "1.5" as a date.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(value)) return undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
