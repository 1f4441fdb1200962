// Prints the plain closing line CI reads ("N passed, N failed, N skipped") from vitest's JSON report.
import { readFileSync } from 'node:fs';

const report = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// A file whose set-up failed runs none of its tests: each of them counts as failed.
const notRun = report.testResults.filter((file) => file.status === 'failed').reduce((n, file) => n + file.assertionResults.filter((t) => t.status !== 'passed' && t.status !== 'failed').length, 0);
// Skipped and todo tests are counted too, so a run that passes by skipping shows it.
const skipped = Math.max(0, report.numPendingTests + report.numTodoTests - notRun);
console.log(`${report.numPassedTests} passed, ${report.numFailedTests + notRun} failed, ${skipped} skipped`);
