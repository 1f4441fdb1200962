/**
 * A token bucket: `perSecond` sustained, `burst` at once. Each connection has one for its
 * frames and each participant one for chat. Counts rejections so a client that keeps flooding
 * after being told can be disconnected.
 */
export class RateLimiter {
  private tokens: number;
  private last = Date.now();
  private rejections: number[] = [];

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  /** Takes one token; returns 0 when allowed, else the milliseconds until one is available. */
  take(now = Date.now()): number {
    this.tokens = Math.min(this.burst, this.tokens + (Math.max(0, now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    this.rejections.push(now);
    return Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
  }

  /** True when the client ignored RATE_LIMITED answers: over 5 bursts rejected in 10 s. */
  abusive(now = Date.now()): boolean {
    this.rejections = this.rejections.filter((t) => now - t < 10_000);
    return this.rejections.length > this.burst * 5;
  }
}

/**
 * One RateLimiter per key (a participant's session, say), made on first use and gone with the
 * key: each participant has its own budget for a kind of request.
 */
export function limiterPerKey<K extends object>(perSecond: number, burst: number): (key: K) => RateLimiter {
  const limiters = new WeakMap<K, RateLimiter>();
  return (key) => {
    let limiter = limiters.get(key);
    if (!limiter) {
      limiter = new RateLimiter(perSecond, burst);
      limiters.set(key, limiter);
    }
    return limiter;
  };
}
