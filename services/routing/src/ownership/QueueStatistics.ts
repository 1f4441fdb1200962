import type { RoutingEngine } from '../engine/RoutingEngine.js';
import type { RoutingEvent } from '../engine/events.js';
import type { Contact } from '../engine/model.js';

interface Day {
  /** The UTC day these count (YYYY-MM-DD). */
  day: string;
  answered: number;
  answeredInTime: number;
  abandoned: number;
  /** Abandoned after waiting past the service-level target: they count against it. */
  abandonedLate: number;
}

/**
 * Today's figures per queue for supervisors: service level (answered within the queue's target,
 * of those answered or abandoned after it, Amazon Connect's definition) and abandon rate. Kept by
 * the tenant's owner in memory: a new owner starts counting afresh (docs/routing.md).
 */
export class QueueStatistics {
  private readonly days = new Map<string, Day>();

  constructor(private readonly now: () => number) {}

  /** A new contact asked in the queue (counted when it ends). */
  requested(queueId: string): void {
    this.dayOf(queueId);
  }

  record(event: RoutingEvent, contact: Readonly<Contact> | undefined, nowMs: number, engine: RoutingEngine): void {
    if (!contact) return;
    const target = engine.queues.get(contact.queueId)?.serviceLevelSeconds ?? 20;
    const waitedSeconds = (nowMs - contact.requestedAtMs) / 1000;
    if (event.type === 'connected' && !contact.about?.transfers?.length) {
      const day = this.dayOf(contact.queueId);
      day.answered++;
      if (waitedSeconds <= target) day.answeredInTime++;
    } else if (event.type === 'ended' && event.reason === 'abandoned') {
      const day = this.dayOf(contact.queueId);
      day.abandoned++;
      if (waitedSeconds > target) day.abandonedLate++;
    }
  }

  today(queueId: string): { serviceLevel: number; abandonRate: number; answeredToday: number; abandonedToday: number } {
    const day = this.dayOf(queueId);
    const judged = day.answered + day.abandonedLate;
    const ended = day.answered + day.abandoned;
    return {
      serviceLevel: judged === 0 ? 1 : day.answeredInTime / judged,
      abandonRate: ended === 0 ? 0 : day.abandoned / ended,
      answeredToday: day.answered,
      abandonedToday: day.abandoned,
    };
  }

  private dayOf(queueId: string): Day {
    const today = new Date(this.now()).toISOString().slice(0, 10);
    let day = this.days.get(queueId);
    if (day?.day !== today) {
      day = { day: today, answered: 0, answeredInTime: 0, abandoned: 0, abandonedLate: 0 };
      this.days.set(queueId, day);
    }
    return day;
  }
}
