// Writes the table of docs/data-lifecycle.md from the catalog (packages/common/src/jetstream/catalog.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import { withLifecycleTable } from '../packages/common/src/jetstream/lifecycleDoc.js';

const page = new URL('../docs/data-lifecycle.md', import.meta.url);
writeFileSync(page, withLifecycleTable(readFileSync(page, 'utf8')));
