import { describe, expect, it } from 'vitest';
import { backoffDelayMs, retryAfterMs } from './backoff.js';

describe('backoffDelayMs', () => {
  const backoff = { initialMs: 100, maxMs: 5_000 };

  it('doubles from the initial delay per attempt, within the upper half of each ceiling', () => {
    for (const [attempt, ceiling] of [
      [0, 100],
      [1, 200],
      [2, 400],
      [5, 3_200],
    ] as const) {
      expect(backoffDelayMs(attempt, backoff, () => 0)).toBe(ceiling / 2);
      expect(backoffDelayMs(attempt, backoff, () => 0.999_999)).toBe(ceiling);
    }
  });

  it('never exceeds the cap, however many attempts, and never returns a non-finite delay', () => {
    for (const attempt of [6, 20, 1_000, Number.MAX_SAFE_INTEGER]) {
      const delay = backoffDelayMs(attempt, backoff, () => 0.999_999);
      expect(delay).toBe(5_000);
    }
    expect(backoffDelayMs(-3, backoff, () => 0)).toBe(50);
  });

  it('spreads callers that fail together', () => {
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelayMs(3, backoff)));
    expect(delays.size).toBeGreaterThan(10);
  });
});

describe('retryAfterMs', () => {
  it('reads delay seconds and HTTP dates; a missing, unreadable or past value asks for nothing more', () => {
    expect(retryAfterMs('3')).toBe(3_000);
    expect(retryAfterMs(' 0 ')).toBe(0);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:30 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(30_000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:28:30 GMT'))).toBe(0);
    for (const unreadable of [null, undefined, '', 'soon', '-5', '1.5']) expect(retryAfterMs(unreadable)).toBeUndefined();
  });
});
