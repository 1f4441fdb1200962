import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { residueMetrics } from './metrics.js';
import type { ResidueReport } from './report.js';

const report = (summary: ResidueReport['summary'], markers: ResidueReport['markers'] = []): ResidueReport => ({
  scannedAtMs: 1_700_000_000_000,
  durationMs: 1_500,
  entries: 10,
  summary,
  items: [],
  markers,
  deleteMarkers: [],
});

describe('gateway_residue_items', () => {
  it('holds the last scan: counts and oldest ages by store and kind, and a kind that is gone reads nothing', async () => {
    const registry = new Registry();
    const record = residueMetrics(registry);
    record(report([{ store: 'gateway_room_placement', kind: 'room-ended', count: 3, oldestAgeMs: 90_000 }], [{ store: 'gateway_participants', count: 7, oldestAgeMs: 60_000 }]));
    let text = await registry.metrics();
    expect(text).toContain('gateway_residue_items{store="gateway_room_placement",kind="room-ended"} 3');
    expect(text).toContain('gateway_residue_oldest_age_seconds{store="gateway_room_placement",kind="room-ended"} 90');
    expect(text).toContain('gateway_residue_scan_duration_seconds 1.5');
    // Delete markers apart: under traffic there are always some, and the residue alert reads only items.
    expect(text).toContain('gateway_residue_delete_markers{store="gateway_participants"} 7');
    expect(text).not.toContain('gateway_residue_items{store="gateway_participants"');
    record(report([]));
    text = await registry.metrics();
    expect(text).not.toContain('gateway_residue_items{');
    expect(text).not.toContain('gateway_residue_delete_markers{');
    expect(text).toContain('gateway_residue_scan_timestamp_seconds 1700000000');
  });
});
