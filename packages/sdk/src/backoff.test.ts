import { describe, expect, it } from 'vitest';
import { backoffDelay } from './backoff.js';

describe('backoffDelay', () => {
  it('backs off exponentially with jitter, up to the cap', () => {
    expect(backoffDelay(0, 250, 5_000, () => 0)).toBe(125);
    expect(backoffDelay(0, 250, 5_000, () => 1)).toBe(250);
    expect(backoffDelay(3, 250, 5_000, () => 1)).toBe(2_000);
    expect(backoffDelay(10, 250, 5_000, () => 1)).toBe(5_000);
    expect(backoffDelay(10, 250, 5_000, () => 0)).toBe(2_500);
  });

  it('stays between half the ceiling and the ceiling', () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const ceiling = Math.min(15_000, 2_000 * 2 ** attempt);
      const delay = backoffDelay(attempt, 2_000, 15_000);
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    }
  });
});
