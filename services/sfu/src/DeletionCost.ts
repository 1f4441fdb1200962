import type { NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import { sfuLoadScore } from '@gateway/cluster';
import { GatewayError, backoffDelayMs, type Backoff, type Logger } from '@gateway/common';
import type { PodApi, PodApiFailure } from './kubernetes/PodApi.js';
import type { SfuObserver } from './observer.js';

/**
 * The annotation the ReplicaSet controller reads when it scales down: among pods otherwise
 * alike, those of the lowest cost go first. It is a 32-bit integer.
 */
const POD_DELETION_COST_ANNOTATION = 'controller.kubernetes.io/pod-deletion-cost';
const LOWEST_COST = -2_147_483_648;
const HIGHEST_COST = 2_147_483_647;

/**
 * What removing this node would cost: its load as placement scores it (what it carries of
 * rooms, transports and consumers), and the lowest cost of all once it drains, since it is
 * leaving anyway and takes no new room.
 */
export function podDeletionCost(load: NodeLoad, draining: boolean): number {
  return draining ? LOWEST_COST : Math.min(HIGHEST_COST, sfuLoadScore(load));
}

export interface WriteScheduleOptions {
  /** The least time between two writes (SFU_DELETION_COST_INTERVAL_SECONDS). */
  intervalMs: number;
  /** Waits after failures in a row, on top of the interval. */
  backoff: Backoff;
  /** The longest Retry-After honoured: an API server asking for more is asked again after this. */
  maxRetryAfterMs: number;
}

/**
 * When the cost is written, on a clock given by the caller: only a cost the Pod does not hold
 * yet, never twice within the interval, and after a failure not before its backoff or the
 * server's Retry-After. The API server serves the whole cluster; a pod that writes on every
 * join would be a load of its own for a figure the controller reads only when it scales down.
 */
export class WriteSchedule {
  /** The cost the Pod holds, as the last successful write left it. */
  private written: number | undefined;
  private lastAttemptAtMs = Number.NEGATIVE_INFINITY;
  private failures = 0;
  private notBeforeMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: WriteScheduleOptions) {}

  /** The earliest moment the next write may start. */
  get nextAllowedAtMs(): number {
    return Math.max(this.lastAttemptAtMs + this.options.intervalMs, this.notBeforeMs);
  }

  /** Whether `cost` is to be written at `nowMs`: the Pod does not hold it, and a write may start. */
  due(cost: number, nowMs: number): boolean {
    return cost !== this.written && nowMs >= this.nextAllowedAtMs;
  }

  /** How long to wait before looking at the cost again. */
  waitMs(cost: number, nowMs: number): number {
    const allowedIn = Math.max(0, this.nextAllowedAtMs - nowMs);
    // A cost still to write is looked at again as soon as a write may go; otherwise each interval.
    return cost !== this.written ? allowedIn : Math.max(allowedIn, this.options.intervalMs);
  }

  started(nowMs: number): void {
    this.lastAttemptAtMs = nowMs;
  }

  succeeded(cost: number): void {
    this.written = cost;
    this.failures = 0;
    this.notBeforeMs = Number.NEGATIVE_INFINITY;
  }

  /** A failed write: the next waits its backoff, or the server's Retry-After when that is longer. Returns the wait. */
  failed(nowMs: number, retryAfterMs?: number): number {
    const waitMs = Math.max(backoffDelayMs(this.failures, this.options.backoff), Math.min(retryAfterMs ?? 0, this.options.maxRetryAfterMs));
    this.failures++;
    this.notBeforeMs = nowMs + waitMs;
    return waitMs;
  }

  /** The cost the Pod holds, as far as this node knows. */
  get writtenCost(): number | undefined {
    return this.written;
  }
}

/** The longest Retry-After honoured. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;
/** The longest wait after failures in a row, in intervals: five minutes at the default 15 s. */
const MAX_BACKOFF_INTERVALS = 20;

/**
 * Keeps this node's Pod deletion cost equal to its load (podDeletionCost), so that a scale-down
 * removes the emptiest SFU first: the cost is read each interval and written when it changed
 * (WriteSchedule). A failed write is logged, counted (the observer's `deletioncostfailed`) and
 * tried again after its backoff: it never stops the node, whose media does not depend on it.
 */
export class PodDeletionCost {
  private readonly schedule: WriteSchedule;
  private timer: NodeJS.Timeout | undefined;
  private writing = false;
  private closed = false;

  constructor(
    private readonly api: PodApi,
    private readonly cost: () => number,
    private readonly intervalMs: number,
    private readonly observer: SfuObserver,
    private readonly log: Logger,
  ) {
    this.schedule = new WriteSchedule({ intervalMs, backoff: { initialMs: intervalMs, maxMs: intervalMs * MAX_BACKOFF_INTERVALS }, maxRetryAfterMs: MAX_RETRY_AFTER_MS });
  }

  start(): void {
    void this.check();
  }

  /** The cost moved in a way worth writing as soon as the interval allows (the node began draining). */
  nudge(): void {
    if (!this.writing) void this.check();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.api.close();
  }

  private async check(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.writing = true;
    let waitMs = this.intervalMs;
    try {
      const cost = this.cost();
      if (this.schedule.due(cost, Date.now())) await this.write(cost);
      waitMs = this.schedule.waitMs(this.cost(), Date.now());
    } catch (error) {
      // Nothing here may stop the node: an unexpected fault waits an interval like a failed write.
      this.log.error({ err: error }, 'pod deletion cost check failed');
    } finally {
      this.writing = false;
    }
    if (this.closed) return;
    this.timer = setTimeout(() => void this.check(), waitMs);
    this.timer.unref();
  }

  private async write(cost: number): Promise<void> {
    this.schedule.started(Date.now());
    try {
      await this.api.patchAnnotations({ [POD_DELETION_COST_ANNOTATION]: String(cost) });
      this.schedule.succeeded(cost);
      this.observer.safeEmit('deletioncost', cost);
    } catch (error) {
      // A write cut short by close() is no failure to report.
      if (this.closed) return;
      const wrapped = GatewayError.from(error);
      const failure = (wrapped.details.failure as PodApiFailure | undefined) ?? 'unreachable';
      const retryAfterMs = typeof wrapped.details.retryAfterMs === 'number' ? wrapped.details.retryAfterMs : undefined;
      const retryInMs = this.schedule.failed(Date.now(), retryAfterMs);
      this.observer.safeEmit('deletioncostfailed', failure);
      this.log.warn({ code: wrapped.code, failure, status: wrapped.details.status, retryInMs, err: wrapped.message }, 'pod deletion cost not written');
    }
  }
}
