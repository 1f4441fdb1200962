import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { catalog, entryName } from './catalog.js';
import { withLifecycleTable } from './lifecycleDoc.js';

describe('docs/data-lifecycle.md', () => {
  const page = readFileSync(new URL('../../../../docs/data-lifecycle.md', import.meta.url), 'utf8');

  it('holds the table the catalog renders (run `make lifecycle-doc` after changing the catalog)', () => {
    expect(page).toBe(withLifecycleTable(page));
  });

  it('gives every stream, bucket and object store an owner, an end and a size limit; everything of a contact a backstop', () => {
    for (const entry of catalog) {
      expect(entry.lifecycle.writer, entryName(entry)).not.toBe('');
      expect(entry.lifecycle.deletedBy, entryName(entry)).not.toBe('');
      expect(entry.share, entryName(entry)).toBeGreaterThan(0);
    }
    // Kept by design until erasure or removal (device keys, connectors, webhook endpoints, API keys, contact ids, routing directories), or kept (audit).
    const unbounded = catalog.filter((e) => (e.kind === 'kv' ? !e.ttlMs : !e.maxAgeMs)).map(entryName);
    expect(unbounded.sort()).toEqual(['GATEWAY_AUDIT', 'gateway_api_keys', 'gateway_connectors', 'gateway_crm_contacts', 'gateway_device_keys', 'gateway_routing_directory', 'gateway_webhooks']);
  });
});
