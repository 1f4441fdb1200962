import type { JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { ArtifactStore, Logger } from '@gateway/common';
import type { Confirmations } from '../Confirmations.js';
import type { Delivery } from '../destinations/types.js';
import type { DeliveryMetrics } from './metrics.js';

/**
 * What crm-sync deletes of a communication once it is done with it: the artifacts
 * (crypto-shredding: the wrapped data keys first, so every copy is unreadable from then on, then
 * the bytes), the event that announced it, and the destinations' confirmations.
 */
export class Purge {
  constructor(
    private readonly jsm: JetStreamManager,
    private readonly artifactStore: ArtifactStore,
    private readonly confirmations: Confirmations,
    private readonly metrics: Pick<DeliveryMetrics, 'terminated'>,
    private readonly options: { retryBaseMs: number },
    private readonly log: Logger,
  ) {}

  /** Our copies go once every destination has them: keys first, then bytes. */
  async artifacts(delivery: Delivery): Promise<void> {
    for (const artifact of delivery.artifacts) {
      await this.artifactStore.delete(delivery.tenant, artifact.artifactId, artifact.space);
    }
  }

  /**
   * Erases a settled event from its stream, then acknowledges it: the event names the end user
   * (their external id), and the command must not outlive the communication it carried. Erasing
   * first means a crash or a lost connection in between leaves the event to be handed out again
   * (and erased then), never acknowledged but still stored. Returns whether it was acknowledged.
   */
  async settle(message: JsMsg): Promise<boolean> {
    try {
      await this.jsm.streams.deleteMessage(message.info.stream, message.seq, true);
    } catch (error) {
      // Gone already (a data-subject erasure, a duplicate) is fine; not knowing is not.
      const stillThere = await this.jsm.streams.getMessage(message.info.stream, { seq: message.seq }).then(
        (found) => found !== null,
        () => true,
      );
      if (stillThere) {
        this.log.warn({ err: error, seq: message.seq }, 'erasing a settled event failed; will retry');
        message.nak(this.options.retryBaseMs);
        return false;
      }
    }
    message.ack();
    return true;
  }

  /**
   * Confirmations go once their event is settled. `known`: the connectors the attempt knows
   * confirmed (it read them and recorded its own), deleted by key without listing them again;
   * without it, whatever is stored. Left over, they expire with their bucket (30 days).
   */
  async clearConfirmations(delivery: Delivery, known?: ReadonlySet<string>): Promise<void> {
    const clearing = known ? this.confirmations.clearKnown(delivery.tenant, delivery.deliveryId, known) : this.confirmations.clear(delivery.tenant, delivery.deliveryId);
    await clearing.catch((error: unknown) => {
      this.log.warn({ err: error, deliveryId: delivery.deliveryId, tenant: delivery.tenant }, 'clearing delivery confirmations failed');
    });
  }

  /**
   * A malformed event is never delivered: it is erased from its stream (it may hold personal
   * data, and nothing will ever take it) and terminated.
   */
  terminate(message: JsMsg): void {
    this.metrics.terminated.inc();
    void this.jsm.streams
      .deleteMessage(message.info.stream, message.seq, true)
      .catch(() => undefined)
      .finally(() => message.term());
  }
}
