import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { configDefaults, defineConfig } from 'vitest/config';

const include = ['packages/*/src/**/*.test.ts', 'services/*/src/**/*.test.ts', 'test/**/*.test.ts'];

/**
 * What a test file uses to start a process or a real server (nats-server, a service, mediasoup,
 * Chromium, a command line tool), directly or through the harness.
 */
const startsProcesses = /@gateway\/testing|child_process|mediasoup|playwright|spawn|execFile|NatsServer|createWorker|startSfu|support\/(shell|browser|netns)/;

/**
 * Test files that start nothing (they import and call code, at most an HTTP server in their own
 * process). Their time is mostly spent importing; run side by side they take half as long. The
 * integration and end-to-end folders are never among them: their support helpers start stacks.
 */
function filesThatStartNothing(): string[] {
  const roots = [...['packages', 'services'].flatMap((dir) => readdirSync(dir).map((name) => join(dir, name, 'src'))), 'test'];
  return roots
    .flatMap((root) => {
      try {
        return (readdirSync(root, { recursive: true }) as string[]).map((file) => join(root, file));
      } catch {
        return []; // a package without sources
      }
    })
    .filter((file) => file.endsWith('.test.ts') && !/^test\/(integration|e2e)\//.test(file))
    .filter((file) => !startsProcesses.test(readFileSync(file, 'utf8')));
}
const unitFiles = filesThatStartNothing();

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests start real servers and mediasoup workers; on two cores running those
    // files one at a time keeps timings sane (one fork at a time). Files that start nothing run
    // first, on a thread per core, and are done before the first server starts: nothing runs
    // beside a media test.
    poolOptions: {
      forks: { maxForks: 1, minForks: 1 },
      threads: { maxThreads: availableParallelism(), minThreads: 1 },
    },
    projects: [
      { extends: true, test: { name: 'unit', include: unitFiles, pool: 'threads', sequence: { groupOrder: 0 } } },
      {
        extends: true,
        test: {
          name: 'processes',
          include,
          exclude: [...configDefaults.exclude, ...unitFiles],
          pool: 'forks',
          sequence: { groupOrder: 1 },
          // Certificates made once for the run rather than once per file (test/support/testRun.ts).
          globalSetup: ['test/support/testRun.ts'],
          // A failed test's error quotes the warnings of the services it ran (for CI's short tail).
          setupFiles: ['test/support/failureReport.ts'],
        },
      },
    ],
  },
});
