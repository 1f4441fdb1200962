import { Gauge, type Registry } from 'prom-client';
import type { ResidueReport } from './report.js';

/**
 * `gateway_residue_items{store,kind}` and the age of the oldest, from the last scan; an alert
 * fires on anything above zero (k8s/base/alerts.yaml). A kind that is gone reads 0 again.
 */
export function residueMetrics(registry: Registry): (report: ResidueReport) => void {
  const items = new Gauge({
    name: 'gateway_residue_items',
    help: 'entries that outlived their purpose at the last residue scan, by store and kind',
    labelNames: ['store', 'kind'],
    registers: [registry],
  });
  const oldest = new Gauge({
    name: 'gateway_residue_oldest_age_seconds',
    help: 'age of the oldest residue entry at the last scan, by store and kind',
    labelNames: ['store', 'kind'],
    registers: [registry],
  });
  const markers = new Gauge({
    name: 'gateway_residue_delete_markers',
    help: 'delete markers at the last residue scan, by store (swept once 15 minutes old; not residue)',
    labelNames: ['store'],
    registers: [registry],
  });
  const scanned = new Gauge({ name: 'gateway_residue_scan_timestamp_seconds', help: 'when the last residue scan ran', registers: [registry] });
  const duration = new Gauge({ name: 'gateway_residue_scan_duration_seconds', help: 'how long the last residue scan took', registers: [registry] });
  return (report) => {
    items.reset();
    oldest.reset();
    for (const { store, kind, count, oldestAgeMs } of report.summary) {
      items.set({ store, kind }, count);
      oldest.set({ store, kind }, oldestAgeMs / 1000);
    }
    markers.reset();
    for (const { store, count } of report.markers) markers.set({ store }, count);
    scanned.set(report.scannedAtMs / 1000);
    duration.set(report.durationMs / 1000);
  };
}
