import { beforeEach } from 'vitest';
import { ServiceProcess } from '@gateway/testing';

/** What marks a service's line in a failed test's error (scripts/test-summary.mjs prints them again). */
const MARK = '[service log]';

/**
 * A failed test's error ends with the last warnings and errors of the services it had running:
 * a failure that only a loaded CI machine shows (a timeout, mostly) is otherwise unexplained,
 * and CI keeps only the tail of a run.
 */
beforeEach(({ onTestFailed }) => {
  onTestFailed(({ task }) => {
    const said = [...ServiceProcess.running].flatMap((service) => service.warnings().map((line) => `${MARK} ${service.name} ${service.pid}: ${line}`));
    const error = task.result?.errors?.[0];
    if (said.length === 0 || !error) return;
    const added = `\n${said.join('\n')}`;
    error.message = `${error.message}${added}`;
    // The JSON report takes the stack: the lines go after its first line (the message's).
    if (error.stack) {
      const [first, ...rest] = error.stack.split('\n');
      error.stack = [first + added, ...rest].join('\n');
    }
  });
});
