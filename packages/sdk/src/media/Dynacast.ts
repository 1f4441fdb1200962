import type { types } from 'mediasoup-client';
import { warn } from '../log.js';

/**
 * A layer nobody receives is switched off only once that has held this long: a receiver that
 * resizes or scrolls its video back within it finds the layer still there.
 */
export const DISABLE_DELAY_MS = 3_000;

/** What switching needs of a producer (mediasoup-client's Producer). */
export type LayeredProducer = Pick<types.Producer, 'id' | 'kind' | 'closed' | 'rtpParameters' | 'setMaxSpatialLayer'>;

interface Timers {
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (run, ms) => setTimeout(run, ms),
  clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

/**
 * Dynacast on the publishing side: the SFU says which simulcast layers of a video anyone
 * receives (videoLayersWanted), and the encodings above them are switched off (RTCRtpSender
 * encodings[i].active, through mediasoup-client's setMaxSpatialLayer), saving the publisher's
 * CPU and uplink. A layer wanted again is switched on at once; one no longer wanted after
 * DISABLE_DELAY_MS. The lowest layer is never switched off.
 */
export class Dynacast {
  /** The highest layer each producer encodes, as last set (every layer when not in the map). */
  private readonly active = new Map<string, number>();
  private readonly pending = new Map<string, unknown>();

  constructor(
    private readonly delayMs = DISABLE_DELAY_MS,
    private readonly timers: Timers = realTimers,
  ) {}

  /** The highest layer anyone receives of `producer` is now `maxSpatialLayer`. */
  wanted(producer: LayeredProducer, maxSpatialLayer: number): void {
    const layerCount = producer.rtpParameters.encodings?.length ?? 1;
    if (producer.kind !== 'video' || producer.closed || layerCount < 2) return;
    const top = layerCount - 1;
    const target = Math.min(top, Math.max(0, Math.floor(maxSpatialLayer)));
    const current = this.active.get(producer.id) ?? top;
    this.timers.clearTimeout(this.pending.get(producer.id));
    this.pending.delete(producer.id);
    if (target === current) return;
    if (target > current) {
      void this.apply(producer, target);
      return;
    }
    this.pending.set(
      producer.id,
      this.timers.setTimeout(() => {
        this.pending.delete(producer.id);
        void this.apply(producer, target);
      }, this.delayMs),
    );
  }

  /** Every layer on again (the connection was cut: what the SFU says meanwhile is lost; it says it again when it changes). */
  reset(producers: Iterable<LayeredProducer>): void {
    for (const producer of producers) {
      const top = (producer.rtpParameters.encodings?.length ?? 1) - 1;
      if (this.active.has(producer.id) || this.pending.has(producer.id)) this.wanted(producer, top);
    }
  }

  /** A producer closed: forget it. */
  forget(producerId: string): void {
    this.timers.clearTimeout(this.pending.get(producerId));
    this.pending.delete(producerId);
    this.active.delete(producerId);
  }

  private async apply(producer: LayeredProducer, layer: number): Promise<void> {
    if (producer.closed) return;
    this.active.set(producer.id, layer);
    await producer.setMaxSpatialLayer(layer).catch((error: unknown) => warn('could not switch simulcast layers', error));
  }
}
