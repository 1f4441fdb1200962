import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ResidueReport, ResidueSummary } from './report.js';
import { scanResidue, type ResidueOptions } from './scan.js';
import { StoreReader } from './storeReader.js';
import { sweepResidue } from './sweep.js';

/**
 * The residue scanner: what NATS still holds after its purpose ended (docs/data-lifecycle.md).
 * It reads every store it knows the lifecycle of and reports, per store and kind, how many
 * entries are residue and how old the oldest is (scan.ts); `sweep` removes exactly those
 * (sweep.ts).
 */
export class Residue {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly reader: StoreReader,
  ) {}

  static async open(nc: NatsConnection): Promise<Residue> {
    const jsm = await jetstreamManager(nc);
    return new Residue(nc, jsm, new StoreReader(jetstream(nc), jsm));
  }

  scan(options: ResidueOptions = {}): Promise<ResidueReport> {
    return scanResidue(this.reader, options);
  }

  /**
   * Removes what a scan found; what was written since the scan stays. Returns what was removed.
   */
  sweep(report: ResidueReport): Promise<ResidueSummary[]> {
    return sweepResidue(this.nc, this.jsm, report);
  }
}
