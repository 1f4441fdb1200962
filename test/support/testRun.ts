import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_RUN_PKI_ENV } from '@gateway/testing';

/**
 * Vitest's global set-up of the files that start processes: a folder for the certificates the
 * whole run shares (`testRunPki`), named to the test files through the environment they
 * inherit, and removed once the run is over.
 */
export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-test-run-'));
  process.env[TEST_RUN_PKI_ENV] = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
