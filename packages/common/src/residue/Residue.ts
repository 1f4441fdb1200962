import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { MARKER_GRACE_MS, findDeleteMarkers, summarizeMarkers, sweepDeleteMarkers } from './markers.js';
import type { ResidueReport, ResidueSummary } from './report.js';
import { scanResidue, type ResidueOptions } from './scan.js';
import { StoreReader } from './storeReader.js';
import { sweepResidue } from './sweep.js';

/**
 * The residue scanner: what NATS still holds after its purpose ended (docs/data-lifecycle.md).
 * It reads every store it knows the lifecycle of and reports, per store and kind, how many
 * entries are residue and how old the oldest is (scan.ts); `sweep` removes exactly those
 * (sweep.ts), `sweepMarkers` the delete markers that deletes leave (markers.ts).
 */
export class Residue {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly reader: StoreReader,
  ) {}

  static async open(nc: NatsConnection): Promise<Residue> {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    return new Residue(nc, js, jsm, new StoreReader(js, jsm));
  }

  async scan(options: ResidueOptions = {}): Promise<ResidueReport> {
    const started = performance.now();
    const report = await scanResidue(this.reader, options);
    const deleteMarkers = await findDeleteMarkers(this.js, this.jsm, options.now?.());
    return { ...report, durationMs: Math.round(performance.now() - started), markers: summarizeMarkers(deleteMarkers), deleteMarkers };
  }

  /**
   * Removes what a scan found; what was written since the scan stays. Returns what was removed.
   */
  sweep(report: ResidueReport): Promise<ResidueSummary[]> {
    return sweepResidue(this.nc, this.jsm, this.reader, report);
  }

  /** Purges the scan's delete markers older than `graceMs`; returns how many went. */
  sweepMarkers(report: ResidueReport, graceMs = MARKER_GRACE_MS): Promise<number> {
    return sweepDeleteMarkers(this.jsm, report.deleteMarkers, graceMs);
  }
}
