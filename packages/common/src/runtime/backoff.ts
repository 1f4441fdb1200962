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
