import { describe, expect, it } from 'vitest';
import { buckets } from '../nats/subjects.js';
import { catalog, catalogEntry, entryName, maxBytesOf, STORAGE_HEADROOM_SHARE, storagePlan, storageProblem, type CatalogSettings } from './catalog.js';

const GiB = 1024 ** 3;
const settings = (budgetBytes: number, limits: CatalogSettings['limits'] = {}): CatalogSettings => ({ replicas: 1, budgetBytes, limits });

/**
 * Artifacts and the hot state of live calls share one JetStream volume: the limits must keep
 * them apart, so a full artifact store refuses its own writes and never a heartbeat or a join.
 */
describe('storage limits of the catalog', () => {
  it('marks the registries, placement, sessions and leases as hot state, and no object store', () => {
    const hot = catalog.filter((entry) => entry.hot).map(entryName);
    for (const bucket of [buckets.sfuNodes, buckets.recorderNodes, buckets.roomPlacement, buckets.signalingReplicas, buckets.participants, buckets.roomSessions, buckets.routingLeases]) {
      expect(hot, bucket).toContain(bucket);
    }
    expect(catalog.filter((entry) => entry.kind === 'objects' && entry.hot)).toEqual([]);
  });

  it("shares out no more than the budget less the headroom, so hot state's limits plus the artifacts' always fit", () => {
    const shares = catalog.reduce((sum, entry) => sum + entry.share, 0);
    expect(shares).toBeLessThanOrEqual(1 - STORAGE_HEADROOM_SHARE);
    // Small budgets too, where the 1 MiB floor of an entry weighs most (dev's 4 GiB, a test's 1 GiB).
    for (const budget of [1 * GiB, 2 * GiB, 4 * GiB, 40 * GiB, 400 * GiB]) {
      const plan = storagePlan(settings(budget));
      expect(plan.hotBytes, `hot state at ${budget}`).toBeGreaterThan(0);
      expect(plan.artifactBytes, `artifacts at ${budget}`).toBeGreaterThan(0);
      expect(plan.hotBytes + plan.artifactBytes + plan.otherBytes, `all at ${budget}`).toBeLessThanOrEqual(budget * (1 - STORAGE_HEADROOM_SHARE));
      expect(storageProblem(settings(budget))).toBeUndefined();
      // Each hot entry has a limit of its own, which no artifact can take.
      for (const entry of catalog.filter((e) => e.hot)) expect(maxBytesOf(entry, settings(budget)), entryName(entry)).toBeGreaterThan(0);
    }
  });

  it('reports limits set by name that together leave the budget, naming artifacts and hot state', () => {
    const greedy = settings(40 * GiB, { [buckets.artifacts]: { maxBytes: 39 * GiB } });
    expect(storageProblem(greedy)).toMatch(/add up to \d+ bytes \(artifacts \d+, hot state \d+, the rest \d+\), more than \d+ of NATS_STORAGE_BUDGET/);
    // Lowering a limit always fits.
    expect(storageProblem(settings(40 * GiB, { [buckets.artifacts]: { maxBytes: 1 * GiB } }))).toBeUndefined();
    expect(catalogEntry(buckets.artifacts)?.kind).toBe('objects');
  });
});
