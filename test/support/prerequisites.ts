import type { TestContext } from 'vitest';

/**
 * Skips a test whose prerequisite is missing on this machine, naming it. Under CI (`CI=true`)
 * the test fails instead: there a skip would be counted apart and pass unnoticed, although CI
 * is meant to have every prerequisite.
 */
export function skipForMissing(context: TestContext, prerequisite: string): never {
  const message = `missing prerequisite: ${prerequisite}`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI runs every test, so it fails rather than skips)`);
  return context.skip(message);
}
