import type { RoutingIndexes } from './RoutingIndexes.js';

/**
 * Which queues the next pass looks at. Only queues where something changed since the last pass
 * (a contact came or came back, an agent who serves them became free) can have a new offer to
 * make, so a pass looks only at these. Queues some profile serves with a delay are always looked
 * at, since waiting alone makes their contacts eligible. Everything is looked at after a change
 * of queues, profiles or agents' skills, and after a takeover.
 */
export class PassScope {
  private readonly dirty = new Set<string>();
  /** Agents who became free since the last pass: a contact transferred to one of them by name is looked at wherever it waits. */
  private readonly freed = new Set<string>();
  private everything = true;
  private delayed = new Set<string>();

  /** A contact came or came back to the queue. */
  queueChanged(queueId: string): void {
    this.dirty.add(queueId);
  }

  /** An agent became free (or freer): the queues they serve, and contacts transferred to them by name. */
  agentFreed(agentId: string, served: ReadonlyArray<{ queueId: string }>): void {
    this.freed.add(agentId);
    for (const { queueId } of served) this.dirty.add(queueId);
  }

  /** Queues, profiles or skills changed, or the state was replaced: the next pass looks at every queue. */
  lookAtEverything(): void {
    this.everything = true;
  }

  /** The queues some profile serves with a delay, looked at by every pass. */
  setDelayed(queueIds: Iterable<string>): void {
    this.delayed = new Set(queueIds);
  }

  /** The queues this pass looks at (with `full`, all of them), and a fresh start for the next. */
  take(indexes: RoutingIndexes, full: boolean): Iterable<string> {
    // Named for an agent now free, who may serve none of the queue's changes.
    for (const contact of indexes.targeted.values()) if (contact.state === 'waiting' && contact.targetAgentId && this.freed.has(contact.targetAgentId)) this.dirty.add(contact.queueId);
    this.freed.clear();
    const looked = this.everything || full ? indexes.queued.keys() : new Set([...this.dirty, ...this.delayed]);
    this.everything = false;
    this.dirty.clear();
    return looked;
  }
}
