import type { types } from 'mediasoup';
import { judgeQuality, TypedEmitter, type ConnectionQuality } from '@gateway/common';
import type { MediaAppData } from './mediaTypes.js';

/** One participant's two sides: what this node receives of it, and what it receives. */
export interface ParticipantQuality {
  upstream: ConnectionQuality;
  downstream: ConnectionQuality;
}

export interface RoomQualityOptions {
  /** At most one announcement per participant this often. */
  minIntervalMs: number;
  /** How often the round trip and bandwidth estimate of receiving participants are read. */
  sampleIntervalMs: number;
}

export const defaultQualityOptions: RoomQualityOptions = { minIntervalMs: 2_000, sampleIntervalMs: 5_000 };

type RoomQualityEvents = {
  changed: [participantId: string, quality: ParticipantQuality];
};

/** What the room holds, as the judge reads it. */
export interface QualitySources {
  transports(): Iterable<types.WebRtcTransport<MediaAppData>>;
  producers(): Iterable<types.Producer<MediaAppData>>;
  consumers(): Iterable<types.Consumer<MediaAppData>>;
}

interface Tracked {
  /** What was last said: nothing yet is 'unknown' both ways, as clients start. */
  announced: ParticipantQuality;
  announcedAt: number;
  timer: NodeJS.Timeout | undefined;
  /** Announce at the next evaluation even if unchanged: someone new receives the participant. */
  force: boolean;
  rttMs: number | undefined;
  availableBitrateBps: number | undefined;
}

const BAD_ICE = new Set(['disconnected', 'closed']);

/**
 * Judges the connection quality of the room's participants on this node (those whose
 * transports are here) from mediasoup's stream scores, their transports' ICE state, the round
 * trip of what they receive and the bandwidth estimate towards them, and says when a level
 * changes: change-driven (score events), at most once per participant per `minIntervalMs`.
 * Producers imported from other nodes are judged by their own node.
 */
export class RoomQuality extends TypedEmitter<RoomQualityEvents> {
  private readonly tracked = new Map<string, Tracked>();
  private readonly sampler: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly sources: QualitySources,
    private readonly options: RoomQualityOptions = defaultQualityOptions,
  ) {
    super();
    this.sampler = setInterval(() => void this.sample(), options.sampleIntervalMs);
    this.sampler.unref();
  }

  watchTransport(transport: types.WebRtcTransport<MediaAppData>): void {
    const participantId = transport.appData.participantId;
    this.track(participantId);
    transport.on('icestatechange', () => this.schedule(participantId));
    transport.observer.once('close', () => {
      // The participant is gone from this node when its last transport is.
      if (![...this.sources.transports()].some((t) => t !== transport && !t.closed && t.appData.participantId === participantId)) this.forget(participantId);
      else this.schedule(participantId);
    });
  }

  watchProducer(producer: types.Producer<MediaAppData>): void {
    if (producer.appData.importedFrom) return;
    const participantId = producer.appData.participantId;
    const changed = () => this.schedule(participantId);
    producer.on('score', changed);
    producer.observer.on('pause', changed);
    producer.observer.on('resume', changed);
    producer.observer.once('close', changed);
  }

  watchConsumer(consumer: types.Consumer<MediaAppData>, producerOwner: string): void {
    const participantId = consumer.appData.participantId;
    const changed = () => this.schedule(participantId);
    consumer.on('score', changed);
    consumer.observer.on('pause', changed);
    consumer.observer.on('resume', changed);
    consumer.observer.once('close', changed);
    // Someone new receives the owner: told its level, which may not change for a long while.
    const owner = this.tracked.get(producerOwner);
    if (owner) {
      owner.force = true;
      this.schedule(producerOwner);
    }
  }

  /** The participant's levels now, from what the room holds. */
  judge(participantId: string): ParticipantQuality {
    const state = this.tracked.get(participantId);
    const own = <T extends { appData: MediaAppData }>(items: Iterable<T>) => [...items].filter((item) => item.appData.participantId === participantId);
    const transports = own(this.sources.transports()).filter((t) => !t.closed);
    const connected = (direction: 'send' | 'recv') => transports.filter((t) => t.appData.direction === direction).every((t) => !BAD_ICE.has(t.iceState));
    const producers = own(this.sources.producers()).filter((p) => !p.closed && !p.paused && !p.appData.importedFrom);
    // A simulcast producer is as good as its best layer: the others may be off for bandwidth.
    const producerScores = producers.filter((p) => p.score.length > 0).map((p) => Math.max(...p.score.map((s) => s.score)));
    const consumers = own(this.sources.consumers()).filter((c) => !c.closed && !c.paused && !c.producerPaused);
    return {
      upstream: judgeQuality({ connected: connected('send'), scores: producerScores, rttMs: state?.rttMs, video: producers.some((p) => p.kind === 'video') }),
      downstream: judgeQuality({
        connected: connected('recv'),
        scores: consumers.map((c) => c.score.score),
        rttMs: state?.rttMs,
        availableBitrateBps: state?.availableBitrateBps,
        video: consumers.some((c) => c.kind === 'video'),
      }),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sampler);
    for (const state of this.tracked.values()) clearTimeout(state.timer);
    this.tracked.clear();
  }

  private track(participantId: string): Tracked {
    let state = this.tracked.get(participantId);
    if (!state) {
      state = { announced: { upstream: 'unknown', downstream: 'unknown' }, announcedAt: 0, timer: undefined, force: false, rttMs: undefined, availableBitrateBps: undefined };
      this.tracked.set(participantId, state);
    }
    return state;
  }

  private forget(participantId: string): void {
    clearTimeout(this.tracked.get(participantId)?.timer);
    this.tracked.delete(participantId);
  }

  /** Evaluates soon: at once, or when the participant's last announcement is old enough. */
  private schedule(participantId: string): void {
    const state = this.tracked.get(participantId);
    if (this.closed || !state || state.timer) return;
    const delay = Math.max(0, state.announcedAt + this.options.minIntervalMs - Date.now());
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.evaluate(participantId, state);
    }, delay);
    state.timer.unref();
  }

  private evaluate(participantId: string, state: Tracked): void {
    if (this.closed || this.tracked.get(participantId) !== state) return;
    const now = this.judge(participantId);
    const same = state.announced.upstream === now.upstream && state.announced.downstream === now.downstream;
    const force = state.force;
    state.force = false;
    // Nothing known is nothing to tell, even to someone new.
    if (same && (!force || (now.upstream === 'unknown' && now.downstream === 'unknown'))) return;
    state.announced = now;
    state.announcedAt = Date.now();
    this.safeEmit('changed', participantId, now);
  }

  /**
   * The round trip of what each receiving participant gets (RTCP receiver reports of one of its
   * consumers) and the send-side bandwidth estimate of its receive transport; a participant
   * whose figures cross a threshold is judged again.
   */
  private async sample(): Promise<void> {
    for (const [participantId, state] of this.tracked) {
      const consumer = [...this.sources.consumers()].find((c) => c.appData.participantId === participantId && !c.closed && !c.paused && !c.producerPaused);
      const transport = [...this.sources.transports()].find((t) => t.appData.participantId === participantId && t.appData.direction === 'recv' && !t.closed);
      if (!consumer || !transport) continue;
      try {
        const [consumerStats, transportStats] = await Promise.all([consumer.getStats(), transport.getStats()]);
        const rtt = consumerStats.find((s) => s.type === 'outbound-rtp')?.roundTripTime;
        state.rttMs = rtt !== undefined && rtt > 0 ? rtt : undefined;
        state.availableBitrateBps = transportStats[0]?.availableOutgoingBitrate;
      } catch {
        // Closed meanwhile: its close event judges it again.
        continue;
      }
      this.schedule(participantId);
    }
  }
}
