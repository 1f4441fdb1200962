// Prints the plain closing lines CI reads from vitest's JSON report: each failed test (file, name,
// the first line of its error) and then "N passed, N failed, N skipped". CI keeps only the tail
// of a run's output, so the failures are named here again, last.
import { readFileSync } from 'node:fs';
import path from 'node:path';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const firstLine = (text) =>
  (text ?? '')
    .replace(/\x1b\[[0-9;]*m/g, '')
    .split('\n')
    .find((line) => line.trim() !== '')
    ?.trim()
    .slice(0, 300) ?? '';
/** The services' warnings test/support/failureReport.ts added to an error: the last three. */
const serviceLines = (text) =>
  (text ?? '')
    .split('\n')
    .filter((line) => line.startsWith('[service log]'))
    .slice(-3)
    .map((line) => `  ${line.slice(0, 240)}`);
const failures = [];
for (const file of report.testResults) {
  const where = path.relative(process.cwd(), file.name);
  const failedTests = file.assertionResults.filter((t) => t.status === 'failed');
  for (const t of failedTests) failures.push(`FAILED ${where} > ${t.fullName}: ${firstLine(t.failureMessages?.[0])}`, ...serviceLines(t.failureMessages?.[0]));
  // A file whose set-up failed names no failed test of its own: its message says why.
  if (file.status === 'failed' && failedTests.length === 0) failures.push(`FAILED ${where}: ${firstLine(file.message)}`);
}
for (const line of failures) console.log(line);
// A file whose set-up failed runs none of its tests: each of them counts as failed.
const notRun = report.testResults.filter((file) => file.status === 'failed').reduce((n, file) => n + file.assertionResults.filter((t) => t.status !== 'passed' && t.status !== 'failed').length, 0);
// Skipped and todo tests are counted too, so a run that passes by skipping shows it.
const skipped = Math.max(0, report.numPendingTests + report.numTodoTests - notRun);
console.log(`${report.numPassedTests} passed, ${report.numFailedTests + notRun} failed, ${skipped} skipped`);
