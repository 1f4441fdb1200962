import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { residueMetrics } from './metrics.js';
import type { ResidueReport } from './report.js';

const report = (summary: ResidueReport['summary']): ResidueReport => ({ scannedAtMs: 1_700_000_000_000, durationMs: 1_500, entries: 10, summary, items: [] });

describe('gateway_residue_items', () => {
  it('holds the last scan: counts and oldest ages by store and kind, and a kind that is gone reads nothing', async () => {
    const registry = new Registry();
    const record = residueMetrics(registry);
    record(report([{ store: 'gateway_room_placement', kind: 'room-ended', count: 3, oldestAgeMs: 90_000 }]));
    let text = await registry.metrics();
    expect(text).toContain('gateway_residue_items{store="gateway_room_placement",kind="room-ended"} 3');
    expect(text).toContain('gateway_residue_oldest_age_seconds{store="gateway_room_placement",kind="room-ended"} 90');
    expect(text).toContain('gateway_residue_scan_duration_seconds 1.5');
    record(report([]));
    text = await registry.metrics();
    expect(text).not.toContain('gateway_residue_items{');
    expect(text).toContain('gateway_residue_scan_timestamp_seconds 1700000000');
  });
});
