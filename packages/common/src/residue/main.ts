// The residue scanner from the command line (`make residue`, the Kubernetes CronJob): prints
// what NATS still holds after its purpose ended, per store and kind, as JSON; --sweep removes it,
// --list also prints the keys found (names and ids only, no values). Connects as the residue
// identity (docs/security.md).
import { z } from 'zod';
import { env, loadConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { connectNats, natsShape, readNatsSettings } from '../nats/connection.js';
import { MARKER_GRACE_MS } from './markers.js';
import { Residue } from './Residue.js';
import { DEAD_RECORDER_MS, OBJECT_WRITE_MS } from './scan.js';

const shape = {
  ...natsShape,
  LOG_LEVEL: env.logLevel(),
  /** Nothing younger than this is residue (writes in progress). */
  RESIDUE_GRACE_SECONDS: z.coerce.number().int().min(0).default(120),
  /** A recording record not refreshed for this long has no recorder left (recorders refresh every 5 s and recover each other's after 15 s). */
  RESIDUE_DEAD_RECORDER_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .default(DEAD_RECORDER_MS / 1000),
  /** The longest an object write may go without storing a chunk: older chunks no object names are a write's leftovers. */
  RESIDUE_OBJECT_WRITE_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .default(OBJECT_WRITE_MS / 1000),
  /** Delete markers younger than this stay (every reader of a store sees a delete first). */
  RESIDUE_MARKER_GRACE_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .default(MARKER_GRACE_MS / 1000),
  /** How long events may wait for delivery (crm-sync's longest retention); older ones outlived it. */
  RESIDUE_RETENTION_DAYS: z.coerce.number().positive().max(365).default(365),
};

const args = new Set(process.argv.slice(2));
const unknown = [...args].filter((a) => !['--sweep', '--list'].includes(a));
if (unknown.length > 0) {
  process.stderr.write(`unknown arguments: ${unknown.join(' ')} (use --sweep, --list)\n`);
  process.exit(2);
}
const config = loadConfig(shape, process.env);
const log = createLogger('residue', config.LOG_LEVEL);
const nc = await connectNats(readNatsSettings(config, 'residue'), 'residue', log);
try {
  const residue = await Residue.open(nc);
  const options = {
    graceMs: config.RESIDUE_GRACE_SECONDS * 1000,
    deadRecorderMs: config.RESIDUE_DEAD_RECORDER_SECONDS * 1000,
    objectWriteMs: config.RESIDUE_OBJECT_WRITE_SECONDS * 1000,
    retentionMs: () => config.RESIDUE_RETENTION_DAYS * 86_400_000,
  };
  const report = await residue.scan(options);
  const swept = args.has('--sweep') ? await residue.sweep(report) : undefined;
  const markersPurged = args.has('--sweep') ? await residue.sweepMarkers(report, config.RESIDUE_MARKER_GRACE_SECONDS * 1000) : undefined;
  const out = {
    scannedAt: new Date(report.scannedAtMs).toISOString(),
    durationMs: report.durationMs,
    entries: report.entries,
    residue: report.summary,
    markers: report.markers,
    ...(swept ? { swept, markersPurged } : {}),
    ...(args.has('--list') ? { items: report.items } : {}),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
} finally {
  await nc.drain().catch(() => undefined);
}
