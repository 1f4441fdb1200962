import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Logger } from '@gateway/common';
import { TypedEmitter, backoffDelayMs } from '@gateway/common';

/**
 * The bandwidth estimator's settings (libwebrtc field trials): mediasoup's default
 * (AlrLimitedBackoff) plus probing every 2 s instead of 5 s while the sender is application
 * limited, which is how a receiver held on a low simulcast layer finds out its link widened:
 * with 5 s it took two or three probes, 10 to 15 s, to climb back to the top layer. A probe for
 * what the consumers want (the worker's own, every 3 s while the estimate is below it) is one
 * burst at that bitrate, not a second at twice it: on a link narrowed to a few hundred kilobits
 * the two overflowed its queue each time and froze the picture for 0.5 to 0.87 s.
 */
const BWE_FIELD_TRIALS = 'WebRTC-Bwe-AlrLimitedBackoff/Enabled/WebRTC-Bwe-AlrProbing/alr_interval:2s,alr_scale:2/WebRTC-Bwe-ProbingConfiguration/alloc_p2/';

export interface WorkerPoolOptions {
  size: number;
  rtcPortMin: number;
  listenIp: string;
  announcedAddress: string;
  logLevel: types.WorkerLogLevel;
}

/**
 * The UDP socket of a worker's WebRtcServer carries every WebRTC transport of the worker. At the
 * kernel's default (net.core.rmem_default, 208 KiB: about 90 packets) a worker that waits for a
 * core for 30 ms at a few thousand packets per second overflows it, and the lost packets reach
 * every receiver of the streams. The kernel caps this at net.core.rmem_max / wmem_max
 * (docs/operations.md).
 */
const UDP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** A worker and its WebRtcServer: every WebRTC transport of the worker shares one port. */
export interface PooledWorker {
  index: number;
  worker: types.Worker;
  webRtcServer: types.WebRtcServer;
  port: number;
  /** Rooms placed on this worker, maintained by the node. */
  rooms: number;
  consumers: number;
}

type PoolEvents = {
  /** A worker died; its rooms must be closed. A replacement is being started. */
  workerdied: [index: number, error: Error];
  workerreplaced: [worker: PooledWorker];
};

/**
 * One mediasoup worker per core, each with one WebRtcServer on its own port. A worker that
 * dies is replaced on the same port, so the node keeps serving.
 */
export class WorkerPool extends TypedEmitter<PoolEvents> {
  private readonly slots: Array<PooledWorker | undefined> = [];
  private closed = false;
  deaths = 0;

  private constructor(
    private readonly options: WorkerPoolOptions,
    private readonly log: Logger,
  ) {
    super();
  }

  static async create(options: WorkerPoolOptions, log: Logger): Promise<WorkerPool> {
    const pool = new WorkerPool(options, log);
    try {
      for (let index = 0; index < options.size; index++) pool.slots[index] = await pool.startWorker(index);
    } catch (error) {
      pool.close();
      throw error;
    }
    return pool;
  }

  get workers(): PooledWorker[] {
    return this.slots.filter((w): w is PooledWorker => w !== undefined);
  }

  get aliveCount(): number {
    return this.workers.filter((w) => !w.worker.closed).length;
  }

  /** The live worker with the least load: consumers weigh most, rooms break ties. */
  leastLoaded(): PooledWorker {
    const candidates = this.workers.filter((w) => !w.worker.closed && !w.worker.died);
    if (candidates.length === 0) throw new Error('no live mediasoup worker');
    return candidates.reduce((best, w) => (w.consumers * 10 + w.rooms < best.consumers * 10 + best.rooms ? w : best));
  }

  private async startWorker(index: number): Promise<PooledWorker> {
    const { listenIp, announcedAddress, rtcPortMin, logLevel } = this.options;
    const port = rtcPortMin + index;
    const worker = await mediasoup.createWorker({ logLevel, libwebrtcFieldTrials: BWE_FIELD_TRIALS, appData: { index } });
    try {
      const webRtcServer = await worker.createWebRtcServer({
        listenInfos: [
          { protocol: 'udp', ip: listenIp, announcedAddress, port, recvBufferSize: UDP_SOCKET_BUFFER_BYTES, sendBufferSize: UDP_SOCKET_BUFFER_BYTES },
          { protocol: 'tcp', ip: listenIp, announcedAddress, port },
        ],
      });
      const pooled: PooledWorker = { index, worker, webRtcServer, port, rooms: 0, consumers: 0 };
      worker.on('died', (error) => this.onWorkerDied(index, error));
      this.log.info({ worker: index, pid: worker.pid, port }, 'mediasoup worker started');
      return pooled;
    } catch (error) {
      worker.close();
      throw error;
    }
  }

  private onWorkerDied(index: number, error: Error): void {
    this.deaths++;
    this.slots[index] = undefined;
    this.log.error({ worker: index, err: error }, 'mediasoup worker died; replacing it');
    this.safeEmit('workerdied', index, error);
    void this.replace(index);
  }

  private async replace(index: number): Promise<void> {
    // The dead worker's port may take a moment to be released: retry with backoff.
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        const pooled = await this.startWorker(index);
        if (this.closed) {
          pooled.worker.close();
          return;
        }
        this.slots[index] = pooled;
        this.safeEmit('workerreplaced', pooled);
        return;
      } catch (error) {
        const delay = backoffDelayMs(attempt, { initialMs: 100, maxMs: 5_000 });
        this.log.warn({ worker: index, err: error, retryInMs: delay }, 'replacing mediasoup worker failed');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.workers) w.worker.close();
    this.slots.length = 0;
  }
}
