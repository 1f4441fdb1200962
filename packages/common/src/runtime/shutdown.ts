import type { Logger } from 'pino';
import { shutdownTelemetry } from '../telemetry/tracing.js';
import { newReference } from './clientErrors.js';

/**
 * SIGTERM asks for a graceful stop (drain, finish work), SIGINT for a quick one. A second
 * signal while stopping forces exit. `stop` receives which one was asked for.
 */
export type StopMode = 'graceful' | 'immediate';

export function handleSignals(log: Logger, stop: (mode: StopMode) => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal while stopping, exiting now');
      process.exit(1);
    }
    stopping = true;
    const mode: StopMode = signal === 'SIGTERM' ? 'graceful' : 'immediate';
    log.info({ signal, mode }, 'stopping');
    // Spans still buffered are exported before the exit (bounded: a collector that is down waits 2 s at most).
    stop(mode).then(
      () => shutdownTelemetry().then(() => process.exit(0)),
      (error: unknown) => {
        log.error({ err: error }, 'error while stopping');
        void shutdownTelemetry().then(() => process.exit(1));
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  containRejections(log);
}

/**
 * A promise that rejects with nobody waiting for it (a background refresh, a fire-and-forget
 * publish) is logged under a reference instead of ending the process, as Node would by default:
 * it failed on its own, and every connection and room of the process would go with it.
 */
export function containRejections(log: Logger): void {
  process.on('unhandledRejection', (reason: unknown) => {
    log.error({ err: reason, reference: newReference() }, 'unhandled rejection contained');
  });
}

/** Runs a service's main: config errors and start-up failures print a clear message and exit 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`fatal: ${message}\n`);
    if (process.env.LOG_LEVEL === 'debug' && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    process.exit(1);
  });
}

/**
 * What a draining service waits for: its last room or job to end, or the grace period,
 * whichever comes first. The service calls `check()` whenever work ends.
 */
export class DrainWait {
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly idle: () => boolean) {}

  /** Resolves once nothing is left, or after `graceMs`. */
  wait(graceMs: number): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, graceMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  /** Work ended: the wait ends when nothing is left. */
  check(): void {
    if (this.idle()) for (const wake of this.waiters.splice(0)) wake();
  }
}
