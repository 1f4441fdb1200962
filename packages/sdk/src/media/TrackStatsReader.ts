import type { Publisher } from './Publisher.js';
import type { Subscriber } from './Subscriber.js';
import { normaliseTrackStats, type TrackCounters, type TrackStats } from './trackStats.js';

/** What reading the room's track statistics needs of it. */
export interface TrackStatsSources {
  publisher: Pick<Publisher, 'getSendStats'>;
  subscriber: Pick<Subscriber, 'getReceiveStats'>;
  localParticipantId(): string;
}

/**
 * room.getTrackStats(): every sent and received track's figures, with rates and loss over the
 * time since the previous call, which is why it keeps each track's counters in between.
 */
export class TrackStatsReader {
  private counters = new Map<string, TrackCounters>();

  constructor(private readonly sources: TrackStatsSources) {}

  async read(): Promise<TrackStats[]> {
    const [sent, received] = await Promise.all([this.sources.publisher.getSendStats(), this.sources.subscriber.getReceiveStats()]);
    const me = this.sources.localParticipantId();
    const inputs = [
      ...sent.map((s) => ({ trackId: s.trackId, participantId: me, source: s.source, kind: s.kind, direction: 'send' as const, report: s.stats.values() })),
      ...received.map((r) => ({ trackId: r.trackId, participantId: r.participantId, source: r.source, kind: r.kind, direction: 'receive' as const, report: r.stats.values() })),
    ];
    const next = new Map<string, TrackCounters>();
    const out: TrackStats[] = [];
    for (const input of inputs) {
      const key = `${input.direction}/${input.trackId}`;
      const { stats, counters } = normaliseTrackStats(input, this.counters.get(key));
      next.set(key, counters);
      out.push(stats);
    }
    // Tracks gone since are forgotten.
    this.counters = next;
    return out;
  }
}
