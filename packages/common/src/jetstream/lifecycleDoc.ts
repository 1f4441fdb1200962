import { catalog, catalogSettings, catalogShape, entryName, maxBytesOf, type CatalogEntry } from './catalog.js';
import { z } from 'zod';

/**
 * The table of docs/data-lifecycle.md, rendered from the catalog: `make lifecycle-doc` writes it
 * between the markers and a test fails when the page and the catalog differ.
 */
export const LIFECYCLE_TABLE_START = '<!-- lifecycle-table: generated from packages/common/src/jetstream/catalog.ts by `make lifecycle-doc` -->';
export const LIFECYCLE_TABLE_END = '<!-- /lifecycle-table -->';

const hour = 3_600_000;
const day = 24 * hour;

function duration(ms: number | undefined): string {
  if (!ms) return 'none';
  if (ms % day === 0) return `${ms / day} d`;
  if (ms % hour === 0) return `${ms / hour} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${ms / 1000} s`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number(value.toFixed(1))} ${units[unit]}`;
}

function backstop(entry: CatalogEntry): string {
  if (entry.kind === 'kv') return entry.ttlMs ? `TTL ${duration(entry.ttlMs)}` : 'none';
  return entry.maxAgeMs ? `max age ${duration(entry.maxAgeMs)}` : 'none';
}

const kinds = { stream: 'stream', kv: 'KV bucket', objects: 'object store' } as const;

export function renderLifecycleTable(): string {
  // The sizes of the default settings (one server, the default budget); NATS_STORAGE_BUDGET and
  // NATS_STORAGE_LIMITS change them.
  const settings = catalogSettings(z.object(catalogShape).parse({}));
  const rows = catalog.map(
    (entry) =>
      `| \`${entryName(entry)}\` | ${kinds[entry.kind]} | ${entry.description} | ${entry.lifecycle.writer} | ${entry.lifecycle.deletedBy} | ${backstop(entry)} | ${bytes(maxBytesOf(entry, settings))} (${entry.share * 100} %) |`,
  );
  return [
    LIFECYCLE_TABLE_START,
    '| Name | Kind | Holds | Written by | Deleted by, when | Backstop | Size limit (share of the budget) |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    LIFECYCLE_TABLE_END,
  ].join('\n');
}

/** The page with its table replaced by the catalog's. */
export function withLifecycleTable(page: string): string {
  const start = page.indexOf(LIFECYCLE_TABLE_START);
  const end = page.indexOf(LIFECYCLE_TABLE_END);
  if (start < 0 || end < start) throw new Error('the page has no lifecycle table markers');
  return page.slice(0, start) + renderLifecycleTable() + page.slice(end + LIFECYCLE_TABLE_END.length);
}
