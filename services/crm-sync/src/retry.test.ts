import { describe, expect, it } from 'vitest';
import { retryDelayMs } from './retry.js';

describe('retryDelayMs', () => {
  it('doubles from the base, stays within half and all of the ceiling, and stops at the maximum', () => {
    expect(retryDelayMs(1, 2_000, 600_000, () => 0)).toBe(1_000);
    expect(retryDelayMs(1, 2_000, 600_000, () => 1)).toBe(2_000);
    expect(retryDelayMs(4, 2_000, 600_000, () => 1)).toBe(16_000);
    expect(retryDelayMs(30, 2_000, 600_000, () => 1)).toBe(600_000);
    for (let i = 0; i < 100; i++) {
      const d = retryDelayMs(3, 2_000, 600_000);
      expect(d).toBeGreaterThanOrEqual(4_000);
      expect(d).toBeLessThanOrEqual(8_000);
    }
  });
});
