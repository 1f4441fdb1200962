import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, jetstream, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { Registry } from 'prom-client';
import { GatewayError, streams, type ArtifactStore, type Keyring, type Logger, type NatsConnection, backoffDelayMs, type WebhookEvents } from '@gateway/common';
import type { Confirmations } from './Confirmations.js';
import type { ConnectorStore } from './connectors/ConnectorStore.js';
import { DeliveryAttempts, keepInProgress, type AttemptOptions } from './deliveries/attempt.js';
import { createDeliveryMetrics, type DeliveryMetrics } from './deliveries/metrics.js';
import { Purge } from './deliveries/purge.js';
import { TenantSlots } from './deliveries/TenantSlots.js';
import type { Delivery } from './destinations/types.js';
import { deliveryOf } from './events.js';

export interface DeliveryOptions extends AttemptOptions {
  /** Deliveries running at once, all tenants together. */
  concurrency: number;
  /** Deliveries of one tenant running at once (per replica). */
  tenantConcurrency: number;
  /** Events waiting for a slot, all tenants together (per replica); by default 4,000. */
  backlog?: number;
  /** Events of one tenant waiting for a slot (per replica); by default 1,000. */
  tenantBacklog?: number;
  /** How long deliveries under way get to finish once crm-sync stops; by default 20 s. */
  stopGraceMs?: number;
}

const DEFAULT_BACKLOG = 4_000;
const DEFAULT_TENANT_BACKLOG = 1_000;
const DEFAULT_STOP_GRACE_MS = 20_000;

/** The durable consumers crm-sync takes events from, shared by its replicas. */
export const deliveryConsumers = [
  { stream: streams.recordings.name, durable: 'crm-sync-recordings' },
  { stream: streams.transcripts.name, durable: 'crm-sync-transcripts' },
  { stream: streams.sessions.name, durable: 'crm-sync-sessions' },
] as const;

/**
 * Events asked of JetStream at once, per slot. The consumer asks again once a quarter of a batch
 * came: with 8 slots and batches of 8 that was a pull request every other event; with 32, one
 * every 8. Each event is taken into a slot or the backlog as it comes, so a larger batch adds no
 * wait (the backlog's bounds still apply).
 */
const PULL_BATCH_PER_SLOT = 4;

/** A message of a busy tenant comes back after this (growing with its deliveries, with jitter). */
const DEFER_BASE_MS = 1_000;
const DEFER_MAX_MS = 30_000;

interface Waiting {
  message: JsMsg;
  delivery: Delivery;
  keepAlive?: NodeJS.Timeout;
}

/**
 * Durable JetStream consumers of everything a session leaves behind. Each event is one delivery
 * attempt (deliveries/attempt.ts: to every destination with their confirmations, then the purge),
 * run when its tenant has a free slot (deliveries/TenantSlots.ts).
 *
 * A message whose tenant (or the whole replica) is at its limit waits for a slot in the
 * replica's backlog (bounded per tenant and in all), marked in progress meanwhile so JetStream
 * does not hand it out again; beyond that bound it is handed back at once with a short delay (a
 * nak), so it neither holds a slot nor waits unacknowledged and unmarked past the ack wait. The consumers take any number of messages in
 * flight (handed-back ones stay pending until they come back), so a large backlog of one tenant
 * cannot keep the others' new events from being handed out. A handed-back message counts as a
 * delivery for JetStream: one deferred often retries its failures at longer intervals, within
 * CRM_SYNC_RETRY_MAX_SECONDS.
 */
export class Deliveries {
  private readonly slots: TenantSlots<Waiting>;
  private readonly tasks = new Set<Promise<void>>();
  private readonly stops: Array<() => void> = [];
  private closed = false;
  private readonly metrics: DeliveryMetrics;
  private readonly purge: Purge;
  private readonly attempts: DeliveryAttempts;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    connectors: ConnectorStore,
    private readonly artifacts: ArtifactStore,
    keyring: Keyring,
    confirmations: Confirmations,
    private readonly options: DeliveryOptions,
    registry: Registry,
    private readonly log: Logger,
    webhooks?: WebhookEvents,
  ) {
    // A tenant's backlog is held here, up to a bound, rather than handed back to JetStream and
    // read again and again: slots go round the tenants with work, so a busy tenant's backlog
    // delays no one else's events.
    const backlog = options.backlog ?? DEFAULT_BACKLOG;
    this.slots = new TenantSlots<Waiting>({
      concurrency: options.concurrency,
      tenantConcurrency: options.tenantConcurrency,
      tenantWaitingLimit: Math.min(options.tenantBacklog ?? DEFAULT_TENANT_BACKLOG, backlog),
      waitingLimit: backlog,
    });
    this.metrics = createDeliveryMetrics(registry, () => ({ running: this.slots.runningCount, waiting: this.slots.waitingCount }));
    this.purge = new Purge(jsm, artifacts, confirmations, this.metrics, options, log);
    this.attempts = new DeliveryAttempts({ nc, jsm, keyring, connectors, confirmations, purge: this.purge, metrics: this.metrics, options, log, webhooks });
  }

  async start(): Promise<void> {
    for (const { stream, durable } of deliveryConsumers) {
      const config = { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: this.options.ackWaitMs * 1e6, max_deliver: -1, max_ack_pending: -1 };
      await this.jsm.consumers.add(stream, config).catch(async (error) => {
        if (!(await this.jsm.consumers.info(stream, durable).catch(() => undefined))) throw error;
        // Made by an earlier version with a limit on messages in flight: lifted (see above).
        await this.jsm.consumers.update(stream, durable, { max_ack_pending: -1, ack_wait: config.ack_wait }).catch((updateError: unknown) => {
          this.log.warn({ err: updateError, durable }, 'could not update the consumer; its limit on messages in flight stays');
        });
      });
      void this.consume(stream, durable);
    }
  }

  /** Takes a consumer's messages for as long as the service runs, starting again after an error. */
  private async consume(stream: string, durable: string): Promise<void> {
    while (!this.closed) {
      let messages: ConsumerMessages | undefined;
      try {
        const consumer = await jetstream(this.nc).consumers.get(stream, durable);
        messages = await consumer.consume({ max_messages: this.options.concurrency * PULL_BATCH_PER_SLOT });
        this.stops.push(() => messages?.stop());
        // Nothing in here waits: each message is started, queued or handed back at once.
        for await (const message of messages) this.accept(message);
      } catch (error) {
        if (this.closed) return;
        this.log.error({ err: error, durable }, 'taking events failed; starting again');
      }
      if (!this.closed) await sleep(1_000);
    }
  }

  private accept(message: JsMsg): void {
    let delivery: Delivery;
    try {
      delivery = deliveryOf(message.subject, message.data, this.artifacts, (seconds) => this.metrics.stage.observe({ stage: 'read' }, seconds));
    } catch (error) {
      // An event that cannot be read never will be: keep it out of the way, loudly (by code:
      // the message may quote what the event held).
      this.log.error({ code: GatewayError.from(error).code, reason: GatewayError.from(error).message, stream: message.info.stream, seq: message.seq }, 'malformed event terminated');
      this.purge.terminate(message);
      return;
    }
    if (this.closed) {
      message.nak();
      return;
    }
    const waiting: Waiting = { message, delivery };
    switch (this.slots.offer(delivery.tenant, waiting)) {
      case 'run':
        this.run(waiting);
        return;
      case 'wait':
        // Marked in progress while it waits, so it is not handed out again meanwhile.
        waiting.keepAlive = keepInProgress(message, this.options.ackWaitMs);
        return;
      case 'full':
        this.metrics.deferred.inc();
        message.nak(backoffDelayMs(message.info.deliveryCount - 1, { initialMs: DEFER_BASE_MS, maxMs: Math.min(DEFER_MAX_MS, this.options.retryMaxMs) }));
    }
  }

  /** Runs a delivery holding a slot; when it ends, the slot goes to the waiting ones. */
  private run({ message, delivery }: Waiting): void {
    const tenant = delivery.tenant;
    const task = this.attempts
      .handle(message, delivery)
      .catch((error: unknown) => {
        // handle() answers every message itself; this is a last resort that keeps the process up.
        this.log.error({ err: error, deliveryId: delivery.deliveryId, tenant }, 'delivery ended unexpectedly; will retry');
        message.nak(this.options.retryBaseMs);
      })
      .finally(() => {
        this.tasks.delete(task);
        for (const { item } of this.slots.release(tenant)) {
          clearInterval(item.keepAlive);
          this.run(item);
        }
      });
    this.tasks.add(task);
  }

  /**
   * Stops taking events; waiting ones are handed back at once, running ones get `graceMs` to
   * finish (one stuck on a destination, or on a NATS that is gone, must not keep the process
   * from stopping: unacknowledged, it is handed out again). Safe to repeat.
   */
  async close(graceMs = this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS): Promise<void> {
    this.closed = true;
    for (const stop of this.stops.splice(0)) stop();
    for (const { message, keepAlive } of this.slots.drain()) {
      clearInterval(keepAlive);
      message.nak();
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.tasks]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }
}
