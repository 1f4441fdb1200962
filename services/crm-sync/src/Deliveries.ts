import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, jetstream, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ArtifactMissing, DeliveryExpired } from '@gateway/proto/gateway/events/v1/events';
import {
  ErrorCode,
  GatewayError,
  SpanKind,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  streams,
  subjects,
  type ArtifactStore,
  type Keyring,
  type Logger,
  type NatsConnection,
  type Span,
} from '@gateway/common';
import type { Confirmations } from './Confirmations.js';
import type { ConnectorStore } from './connectors/ConnectorStore.js';
import type { Delivery } from './destinations/types.js';
import { deliveryOf, openContacts } from './events.js';

export interface DeliveryOptions {
  /** Deliveries running at once, all tenants together. */
  concurrency: number;
  /** Deliveries of one tenant running at once (per replica). */
  tenantConcurrency: number;
  retryBaseMs: number;
  retryMaxMs: number;
  ackWaitMs: number;
  /** How long a communication may wait for delivery before it is deleted undelivered, per tenant. */
  retentionMs(tenant: string): number;
  /** The clock retention is measured with (tests move it forward). */
  now?: () => number;
}

/** Exponential backoff with full jitter in its upper half: base·2^(n-1), capped, times 0.5-1. */
export function retryDelayMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** The durable consumers crm-sync takes events from, shared by its replicas. */
export const deliveryConsumers = [
  { stream: streams.recordings.name, durable: 'crm-sync-recordings' },
  { stream: streams.transcripts.name, durable: 'crm-sync-transcripts' },
  { stream: streams.sessions.name, durable: 'crm-sync-sessions' },
] as const;

/** A message of a busy tenant comes back after this (growing with its deliveries, with jitter). */
const DEFER_BASE_MS = 1_000;
const DEFER_MAX_MS = 30_000;

interface Waiting {
  message: JsMsg;
  delivery: Delivery;
  keepAlive: NodeJS.Timeout;
}

/**
 * Durable JetStream consumers of everything a session leaves behind. Each event goes to every
 * destination of its tenant; each destination's confirmation is recorded as it comes; once all
 * have confirmed, the artifacts are deleted from our platform (wrapped keys first:
 * crypto-shredding), the event is erased and acknowledged, and the confirmations go. A failure
 * is retried with backoff; nothing is acknowledged before it is delivered.
 *
 * Scheduling keeps tenants apart. A tenant's destination may hang for as long as its timeouts
 * allow, so a tenant has at most `tenantConcurrency` deliveries running, and only running
 * deliveries hold a slot of `concurrency`. A message whose tenant (or the whole replica) is at
 * its limit waits for a slot in a short queue, marked in progress meanwhile so JetStream does not
 * hand it out again; beyond that queue it is handed back at once with a short delay (a nak), so
 * it neither holds a slot nor waits unacknowledged and unmarked past the ack wait. A tenant whose
 * destination hangs thus holds its own slots and nothing else: the others' events are taken,
 * and started, as they come. Slots that free up go to the waiting tenants in turn. The consumers
 * take any number of messages in flight (handed-back ones stay pending until they come back), so
 * a large backlog of one tenant cannot keep the others' new events from being handed out.
 * A handed-back message counts as a delivery for JetStream: one deferred often retries its
 * failures at longer intervals, within CRM_SYNC_RETRY_MAX_SECONDS.
 */
export class Deliveries {
  private readonly running = new Map<string, number>();
  private runningTotal = 0;
  /** Messages waiting for a slot, by tenant; the map's order is the order tenants are served in. */
  private readonly waiting = new Map<string, Waiting[]>();
  private waitingTotal = 0;
  private readonly tasks = new Set<Promise<void>>();
  private readonly stops: Array<() => void> = [];
  private closed = false;
  private readonly metrics: ReturnType<typeof createMetrics>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly connectors: ConnectorStore,
    private readonly artifacts: ArtifactStore,
    private readonly keyring: Keyring,
    private readonly confirmations: Confirmations,
    private readonly options: DeliveryOptions,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.metrics = createMetrics(registry, () => ({ running: this.runningTotal, waiting: this.waitingTotal }));
  }

  /** Messages waiting for a slot at most, per tenant and in all. */
  private get tenantWaitingLimit(): number {
    return this.options.tenantConcurrency;
  }

  private get waitingLimit(): number {
    return this.options.concurrency;
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
        messages = await consumer.consume({ max_messages: this.options.concurrency });
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
      delivery = deliveryOf(message.subject, message.data, this.artifacts);
    } catch (error) {
      // An event that cannot be read never will be: keep it out of the way, loudly (by code:
      // the message may quote what the event held).
      this.log.error({ code: GatewayError.from(error).code, reason: GatewayError.from(error).message, stream: message.info.stream, seq: message.seq }, 'malformed event terminated');
      this.terminate(message);
      return;
    }
    if (this.closed) {
      message.nak();
      return;
    }
    const tenant = delivery.tenant;
    if (this.hasSlot(tenant)) {
      this.run(message, delivery);
      return;
    }
    const queue = this.waiting.get(tenant) ?? [];
    if (queue.length < this.tenantWaitingLimit && this.waitingTotal < this.waitingLimit) {
      // Marked in progress while it waits, so it is not handed out again meanwhile.
      const keepAlive = setInterval(() => message.working(), Math.max(1_000, this.options.ackWaitMs / 3));
      queue.push({ message, delivery, keepAlive });
      this.waiting.set(tenant, queue);
      this.waitingTotal++;
      return;
    }
    this.metrics.deferred.inc();
    message.nak(retryDelayMs(message.info.deliveryCount, DEFER_BASE_MS, Math.min(DEFER_MAX_MS, this.options.retryMaxMs)));
  }

  /**
   * A malformed event is never delivered: it is erased from its stream (it may hold personal
   * data, and nothing will ever take it) and terminated.
   */
  private terminate(message: JsMsg): void {
    this.metrics.terminated.inc();
    void this.jsm.streams
      .deleteMessage(message.info.stream, message.seq, true)
      .catch(() => undefined)
      .finally(() => message.term());
  }

  private hasSlot(tenant: string): boolean {
    return this.runningTotal < this.options.concurrency && (this.running.get(tenant) ?? 0) < this.options.tenantConcurrency;
  }

  private run(message: JsMsg, delivery: Delivery): void {
    const tenant = delivery.tenant;
    this.runningTotal++;
    this.running.set(tenant, (this.running.get(tenant) ?? 0) + 1);
    const task = this.handleInSpan(message, delivery)
      .catch((error: unknown) => {
        // handle() answers every message itself; this is a last resort that keeps the process up.
        this.log.error({ err: error, deliveryId: delivery.deliveryId, tenant }, 'delivery ended unexpectedly; will retry');
        message.nak(this.options.retryBaseMs);
      })
      .finally(() => {
        this.runningTotal--;
        const left = (this.running.get(tenant) ?? 1) - 1;
        if (left > 0) this.running.set(tenant, left);
        else this.running.delete(tenant);
        this.tasks.delete(task);
        this.startWaiting();
      });
    this.tasks.add(task);
  }

  /** Gives free slots to waiting messages, one tenant after another. */
  private startWaiting(): void {
    let started = true;
    while (started && this.runningTotal < this.options.concurrency) {
      started = false;
      for (const tenant of [...this.waiting.keys()]) {
        if (!this.hasSlot(tenant)) continue;
        const queue = this.waiting.get(tenant)!;
        const next = queue.shift()!;
        clearInterval(next.keepAlive);
        this.waitingTotal--;
        // Served: to the back of the line.
        this.waiting.delete(tenant);
        if (queue.length > 0) this.waiting.set(tenant, queue);
        this.run(next.message, next.delivery);
        started = true;
      }
    }
  }

  /**
   * Each attempt is a trace of its own, linked to the trace that published the event (a session
   * ending, a recording stopping) rather than continuing it: attempts wait behind the tenant's
   * other deliveries and are retried with backoff for as long as the retention allows, so as
   * children they would stretch a call's trace over hours or days, once per attempt.
   */
  private handleInSpan(message: JsMsg, delivery: Delivery): Promise<void> {
    const attributes = {
      'messaging.system': 'nats',
      'messaging.operation.type': 'process',
      'messaging.destination.name': message.info.stream,
      'messaging.consumer.group.name': message.info.consumer,
      'gateway.tenant': delivery.tenant,
      'gateway.room': delivery.room,
      'gateway.delivery_kind': delivery.kind,
      'gateway.delivery_id': delivery.deliveryId,
      'gateway.delivery_attempt': message.info.deliveryCount,
    };
    return inSpan(`deliver ${delivery.kind}`, { kind: SpanKind.CONSUMER, root: true, links: linksFromNatsHeaders(message.headers), attributes }, (span) => this.handle(message, delivery, span));
  }

  private async handle(message: JsMsg, sealed: Delivery, span?: Span): Promise<void> {
    let delivery: Delivery;
    try {
      delivery = await openContacts(this.keyring, sealed);
    } catch (error) {
      if (span) markFailed(span, error);
      if (GatewayError.from(error).code === ErrorCode.MALFORMED_MESSAGE) {
        this.log.error({ deliveryId: sealed.deliveryId, tenant: sealed.tenant, reason: GatewayError.from(error).message }, "a session event's participants are malformed; terminated");
        this.terminate(message);
        return;
      }
      this.log.error({ code: GatewayError.from(error).code, deliveryId: sealed.deliveryId, tenant: sealed.tenant }, 'a session event does not open with the tenant key; will retry');
      message.nak(retryDelayMs(message.info.deliveryCount, this.options.retryBaseMs, this.options.retryMaxMs));
      return;
    }
    const started = performance.now();
    const context = { kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempt: message.info.deliveryCount };
    const storedAtMs = Math.floor(message.info.timestampNanos / 1e6);
    if ((this.options.now ?? Date.now)() - storedAtMs > this.options.retentionMs(delivery.tenant)) {
      await this.expire(message, delivery, storedAtMs).catch((error: unknown) => {
        this.log.error({ err: error, ...context }, 'purging an expired delivery failed; will retry');
        message.nak(this.options.retryBaseMs);
      });
      return;
    }
    // A long upload must not be handed to another replica meanwhile: tell JetStream it is in progress.
    const inProgress = setInterval(() => message.working(), Math.max(1_000, this.options.ackWaitMs / 3));
    try {
      const connectors = await this.connectors.list(delivery.tenant);
      if (connectors.length === 0) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the tenant has no destination connected');
      // Destinations that confirmed on an earlier attempt have it already.
      const confirmed = await this.confirmations.confirmed(delivery.tenant, delivery.deliveryId);
      let delivered = 0;
      // Every destination is tried on each attempt, so one that fails (for hours, perhaps) does not
      // hold the delivery back from the others; each confirmation is recorded as it comes.
      const failures: GatewayError[] = [];
      for (const connector of connectors) {
        if (confirmed.has(connector.name)) {
          delivered++;
          continue;
        }
        try {
          if (await this.deliverTo(delivery, connector)) delivered++;
        } catch (error) {
          const failure = GatewayError.from(error);
          failures.push(failure);
          this.log.warn({ ...context, adapter: connector.type, code: failure.code, reason: failure.message }, 'a destination failed the delivery');
          // An artifact gone is gone for every destination: no use trying the others.
          if (failure.details.artifactGone === true) break;
        }
      }
      if (failures.length > 0) throw failedDelivery(failures);
      if (delivered === 0) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the tenant has no destination connected');
      await this.purge(delivery);
      if (await this.settle(message)) await this.clearConfirmations(delivery);
      this.metrics.seconds.observe({ kind: delivery.kind }, (performance.now() - started) / 1000);
      this.log.info(context, 'delivered and purged');
    } catch (error) {
      const gatewayError = GatewayError.from(error);
      if (span) markFailed(span, gatewayError);
      if (gatewayError.code === ErrorCode.NOT_FOUND && gatewayError.details.artifactGone === true) {
        await this.artifactMissing(message, delivery, error).catch((alertError: unknown) => {
          this.log.error({ err: alertError, ...context }, 'raising the missing-artifact alert failed; will retry');
          message.nak(this.options.retryBaseMs);
        });
        return;
      }
      // A destination that said when to come back (a 429's Retry-After) is not asked sooner.
      const hintMs = Number(gatewayError.details.retryAfterMs ?? 0);
      const delayMs = Math.max(retryDelayMs(message.info.deliveryCount, this.options.retryBaseMs, this.options.retryMaxMs), Number.isFinite(hintMs) ? hintMs : 0);
      this.log.warn({ ...context, code: gatewayError.code, reason: gatewayError.message, retryInMs: delayMs }, 'delivery failed; will retry');
      message.nak(delayMs);
    } finally {
      clearInterval(inProgress);
    }
  }

  /**
   * Delivers to one destination and records its confirmation before anything is purged (a crash
   * from then on finds it). False when the connector was removed meanwhile.
   */
  private async deliverTo(delivery: Delivery, connector: { name: string; type: string }): Promise<boolean> {
    const destination = await this.connectors.open(delivery.tenant, connector.name).catch((error: unknown) => {
      // Removed by the tenant since the list was read: nothing to deliver to there.
      if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) return undefined;
      throw error;
    });
    if (!destination) return false;
    try {
      await inSpan(`deliver to ${connector.type}`, { attributes: { 'gateway.adapter': connector.type } }, () => destination.deliver(delivery));
      this.metrics.deliveries.inc({ adapter: connector.type, kind: delivery.kind, result: 'delivered' });
    } catch (error) {
      this.metrics.deliveries.inc({ adapter: connector.type, kind: delivery.kind, result: 'failed' });
      throw error;
    } finally {
      await destination.close();
    }
    await this.confirmations.record(delivery.tenant, delivery.deliveryId, connector.name);
    return true;
  }

  /**
   * An artifact of the delivery is gone while a destination had not confirmed it: it was lost
   * or deleted by someone, not delivered. (Had every destination confirmed, the delivery would
   * not have been tried again: it is purged and settled above.) Nothing else of it is deleted,
   * and it is never counted as delivered: the tenant's operators are alerted, and it is tried
   * again at the longest interval until the artifact is back or the retention limit passes.
   * Gone with its event (a data-subject erasure while the delivery ran) is not an alert.
   */
  private async artifactMissing(message: JsMsg, delivery: Delivery, error: unknown): Promise<void> {
    const context = { kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempt: message.info.deliveryCount };
    const eventStored = await this.jsm.streams.getMessage(message.info.stream, { seq: message.seq }).then(
      (found) => found !== null,
      (lookupError: unknown) => !String((lookupError as Error)?.message ?? lookupError).includes('no message found'),
    );
    if (!eventStored) {
      this.log.info(context, 'the event and its artifacts were erased meanwhile; nothing to deliver');
      await this.clearConfirmations(delivery);
      message.term();
      return;
    }
    const connectors = (await this.connectors.list(delivery.tenant)).map((c) => c.name);
    const confirmed = await this.confirmations.confirmed(delivery.tenant, delivery.deliveryId);
    const artifactId = GatewayError.from(error).details.artifactId;
    const alert = ArtifactMissing.encode({
      tenant: delivery.tenant,
      deliveryId: delivery.deliveryId,
      kind: delivery.kind,
      artifactId: typeof artifactId === 'string' ? artifactId : '',
      unconfirmedConnectors: connectors.filter((name) => !confirmed.has(name)),
      attempts: message.info.deliveryCount,
      atMs: (this.options.now ?? Date.now)(),
    }).finish();
    await jetstream(this.nc).publish(subjects.alert(delivery.tenant, 'artifact_missing'), alert, {
      msgID: `artifact_missing.${delivery.deliveryId}.${message.info.deliveryCount}`,
      headers: natsHeadersWithTrace(),
    });
    this.metrics.missing.inc({ kind: delivery.kind });
    this.log.error({ ...context, unconfirmed: connectors.length - confirmed.size }, 'an artifact is missing before every destination confirmed: not delivered, nothing purged; alert raised');
    message.nak(this.options.retryMaxMs);
  }

  /**
   * The retention limit passed without a delivery: the communication is deleted all the same
   * (our promise is to hold it only until the customer has it, and never longer than the limit),
   * and the tenant's operators are alerted on the alerts stream.
   */
  private async expire(message: JsMsg, delivery: Delivery, storedAtMs: number): Promise<void> {
    await this.purge(delivery);
    const alert = DeliveryExpired.encode({
      tenant: delivery.tenant,
      deliveryId: delivery.deliveryId,
      kind: delivery.kind,
      storedAtMs,
      purgedAtMs: (this.options.now ?? Date.now)(),
      attempts: message.info.deliveryCount,
      artifactCount: delivery.artifacts.length,
    }).finish();
    await jetstream(this.nc).publish(subjects.alert(delivery.tenant, 'delivery_expired'), alert, { msgID: `expired.${delivery.deliveryId}`, headers: natsHeadersWithTrace() });
    if (await this.settle(message)) await this.clearConfirmations(delivery);
    this.metrics.expired.inc({ kind: delivery.kind });
    this.log.error({ kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempts: message.info.deliveryCount }, 'retention limit passed: deleted undelivered');
  }

  /**
   * Erases a settled event from its stream, then acknowledges it: the event names the end user
   * (their external id), and the command must not outlive the communication it carried. Erasing
   * first means a crash or a lost connection in between leaves the event to be handed out again
   * (and erased then), never acknowledged but still stored. Returns whether it was acknowledged.
   */
  private async settle(message: JsMsg): Promise<boolean> {
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

  /** Confirmations go once their event is settled; left over, they are cleared on the next settle. */
  private async clearConfirmations(delivery: Delivery): Promise<void> {
    await this.confirmations.clear(delivery.tenant, delivery.deliveryId).catch((error: unknown) => {
      this.log.warn({ err: error, deliveryId: delivery.deliveryId, tenant: delivery.tenant }, 'clearing delivery confirmations failed');
    });
  }

  /** Our copies go once every destination has them: keys first, then bytes. */
  private async purge(delivery: Delivery): Promise<void> {
    for (const artifact of delivery.artifacts) {
      await this.artifacts.delete(delivery.tenant, artifact.artifactId);
    }
  }

  /**
   * Stops taking events; waiting ones are handed back at once, running ones get `graceMs` to
   * finish (one stuck on a destination, or on a NATS that is gone, must not keep the process
   * from stopping: unacknowledged, it is handed out again). Safe to repeat.
   */
  async close(graceMs = 20_000): Promise<void> {
    this.closed = true;
    for (const stop of this.stops.splice(0)) stop();
    for (const queue of this.waiting.values()) {
      for (const { message, keepAlive } of queue) {
        clearInterval(keepAlive);
        message.nak();
      }
    }
    this.waiting.clear();
    this.waitingTotal = 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.tasks]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
  }
}

/**
 * One error for an attempt on which destinations failed: a missing artifact if one said so (it
 * decides what happens next), else the first failure; it carries the longest wait any of them
 * asked for, so that none is asked again before it said it could take it.
 */
function failedDelivery(failures: GatewayError[]): GatewayError {
  const main = failures.find((f) => f.details.artifactGone === true) ?? failures[0]!;
  const hints = failures.map((f) => Number(f.details.retryAfterMs ?? 0)).filter((ms) => Number.isFinite(ms) && ms > 0);
  if (failures.length === 1 || hints.length === 0) return main;
  return new GatewayError(main.code, main.message, { cause: main, details: { ...main.details, retryAfterMs: Math.max(...hints) } });
}

function createMetrics(registry: Registry, load: () => { running: number; waiting: number }) {
  return {
    deliveries: new Counter({
      name: 'gateway_crm_sync_deliveries_total',
      help: 'Deliveries to customer destinations by adapter, kind and result',
      labelNames: ['adapter', 'kind', 'result'] as const,
      registers: [registry],
    }),
    expired: new Counter({
      name: 'gateway_crm_sync_expired_total',
      help: 'Communications deleted undelivered because the retention limit passed (an alert each)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    missing: new Counter({
      name: 'gateway_crm_sync_artifacts_missing_total',
      help: 'Delivery attempts that found an artifact gone before every destination confirmed (an alert each)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    deferred: new Counter({
      name: 'gateway_crm_sync_deferred_total',
      help: 'Events handed back for later because their tenant had its deliveries running at its limit',
      registers: [registry],
    }),
    terminated: new Counter({
      name: 'gateway_crm_sync_malformed_events_total',
      help: 'Events terminated because they are not what crm-sync takes (malformed, or a tenant other than their subject)',
      registers: [registry],
    }),
    seconds: new Histogram({
      name: 'gateway_crm_sync_delivery_duration_seconds',
      help: 'Time from taking an event to its acknowledgement, for successful deliveries',
      labelNames: ['kind'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'gateway_crm_sync_deliveries_in_progress',
      help: 'Deliveries running (state="running") and waiting for a slot (state="waiting")',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const { running, waiting } = load();
        this.set({ state: 'running' }, running);
        this.set({ state: 'waiting' }, waiting);
      },
    }),
  };
}
