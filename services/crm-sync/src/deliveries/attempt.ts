import { jetstream, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { ArtifactMissing, DeliveryExpired } from '@gateway/proto/gateway/events/v1/events';
import {
  ErrorCode,
  GatewayError,
  SpanKind,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  subjects,
  type Keyring,
  type Logger,
  type NatsConnection,
  type Span,
  backoffDelayMs,
  type WebhookEvents,
} from '@gateway/common';
import type { Confirmations } from '../Confirmations.js';
import type { ConnectorStore } from '../connectors/ConnectorStore.js';
import type { Delivery } from '../destinations/types.js';
import { openContacts } from '../events.js';
import { attemptState, deliverToAll, type AttemptState } from './deliver.js';
import { timeStage, type DeliveryMetrics } from './metrics.js';
import type { Purge } from './purge.js';

export interface AttemptOptions {
  retryBaseMs: number;
  retryMaxMs: number;
  ackWaitMs: number;
  /** How long a communication may wait for delivery before it is deleted undelivered, per tenant. */
  retentionMs(tenant: string): number;
  /** The clock retention is measured with (tests move it forward). */
  now?: () => number;
}

export interface AttemptDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  keyring: Keyring;
  connectors: ConnectorStore;
  confirmations: Confirmations;
  purge: Purge;
  metrics: DeliveryMetrics;
  options: AttemptOptions;
  log: Logger;
  /** The tenant's backend is told of each delivery done, and of each that failed for good. */
  webhooks?: WebhookEvents;
}

/** Marks the message in progress every third of the ack wait, so JetStream does not hand it out again, until the timer is cleared. */
export function keepInProgress(message: JsMsg, ackWaitMs: number): NodeJS.Timeout {
  return setInterval(() => message.working(), Math.max(1_000, ackWaitMs / 3));
}

/**
 * One attempt at an event: it goes to every destination of its tenant; once all have confirmed,
 * its artifacts are purged, the event is erased and acknowledged, and the confirmations go. A
 * failure is retried with backoff; nothing is acknowledged before it is delivered. Every message
 * is answered here (acknowledged, handed back with a delay, or terminated).
 */
export class DeliveryAttempts {
  constructor(private readonly deps: AttemptDeps) {}

  private get now(): number {
    return (this.deps.options.now ?? Date.now)();
  }

  /**
   * Each attempt is a trace of its own, linked to the trace that published the event (a session
   * ending, a recording stopping) rather than continuing it: attempts wait behind the tenant's
   * other deliveries and are retried with backoff for as long as the retention allows, so as
   * children they would stretch a call's trace over hours or days, once per attempt.
   */
  handle(message: JsMsg, delivery: Delivery): Promise<void> {
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
    return inSpan(`deliver ${delivery.kind}`, { kind: SpanKind.CONSUMER, root: true, links: linksFromNatsHeaders(message.headers), attributes }, (span) => this.attempt(message, delivery, span));
  }

  private async attempt(message: JsMsg, sealed: Delivery, span?: Span): Promise<void> {
    const { options, purge, metrics, log } = this.deps;
    let delivery: Delivery;
    try {
      delivery = { ...(await timeStage(this.deps.metrics, 'contacts', () => openContacts(this.deps.keyring, sealed))), attempt: message.info.deliveryCount };
    } catch (error) {
      if (span) markFailed(span, error);
      if (GatewayError.from(error).code === ErrorCode.MALFORMED_MESSAGE) {
        log.error({ deliveryId: sealed.deliveryId, tenant: sealed.tenant, reason: GatewayError.from(error).message }, "a session event's participants are malformed; terminated");
        purge.terminate(message);
        return;
      }
      log.error({ code: GatewayError.from(error).code, deliveryId: sealed.deliveryId, tenant: sealed.tenant }, 'a session event does not open with the tenant key; will retry');
      message.nak(backoffDelayMs(message.info.deliveryCount - 1, { initialMs: options.retryBaseMs, maxMs: options.retryMaxMs }));
      return;
    }
    const started = performance.now();
    const context = { kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempt: message.info.deliveryCount };
    const storedAtMs = Math.floor(message.info.timestampNanos / 1e6);
    if (this.now - storedAtMs > options.retentionMs(delivery.tenant)) {
      await this.expire(message, delivery, storedAtMs).catch((error: unknown) => {
        log.error({ err: error, ...context }, 'purging an expired delivery failed; will retry');
        message.nak(options.retryBaseMs);
      });
      return;
    }
    // A long upload must not be handed to another replica meanwhile: tell JetStream it is in progress.
    const inProgress = keepInProgress(message, options.ackWaitMs);
    // The delivery's confirmations, read once and kept for the attempt (and for a missing artifact's alert).
    let state: AttemptState | undefined;
    try {
      await timeStage(metrics, 'destinations', async () => {
        const read = await attemptState(this.deps, delivery);
        state = read;
        await deliverToAll(this.deps, delivery, read, context);
      });
      await timeStage(metrics, 'delete', () => purge.artifacts(delivery));
      await timeStage(metrics, 'settle', async () => {
        if (await purge.settle(message)) await purge.clearConfirmations(delivery, state?.confirmed);
      });
      metrics.seconds.observe({ kind: delivery.kind }, (performance.now() - started) / 1000);
      log.info(context, 'delivered and purged');
      // A contact's record is routing's, not a room's: the tenant's backend hears of contacts from routing.
      if (delivery.kind === 'contact') return;
      this.deps.webhooks?.emit(delivery.tenant, {
        type: 'delivery.succeeded',
        key: delivery.deliveryId,
        data: { room: { name: delivery.room }, delivery: { deliveryId: delivery.deliveryId, kind: delivery.kind } },
      });
    } catch (error) {
      const gatewayError = GatewayError.from(error);
      if (span) markFailed(span, gatewayError);
      if (gatewayError.code === ErrorCode.NOT_FOUND && gatewayError.details.artifactGone === true) {
        await this.artifactMissing(message, delivery, error, state).catch((alertError: unknown) => {
          log.error({ err: alertError, ...context }, 'raising the missing-artifact alert failed; will retry');
          message.nak(options.retryBaseMs);
        });
        return;
      }
      // A destination that said when to come back (a 429's Retry-After) is not asked sooner.
      const hintMs = Number(gatewayError.details.retryAfterMs ?? 0);
      const delayMs = Math.max(backoffDelayMs(message.info.deliveryCount - 1, { initialMs: options.retryBaseMs, maxMs: options.retryMaxMs }), Number.isFinite(hintMs) ? hintMs : 0);
      log.warn({ ...context, code: gatewayError.code, reason: gatewayError.message, retryInMs: delayMs }, 'delivery failed; will retry');
      message.nak(delayMs);
    } finally {
      clearInterval(inProgress);
    }
  }

  /**
   * An artifact of the delivery is gone while a destination had not confirmed it: it was lost
   * or deleted by someone, not delivered. (Had every destination confirmed, the delivery would
   * not have been tried again: it is purged and settled above.) Nothing else of it is deleted,
   * and it is never counted as delivered: the tenant's operators are alerted, and it is tried
   * again at the longest interval until the artifact is back or the retention limit passes.
   * Gone with its event (a data-subject erasure while the delivery ran) is not an alert.
   */
  private async artifactMissing(message: JsMsg, delivery: Delivery, error: unknown, state: AttemptState | undefined): Promise<void> {
    const { jsm, purge, metrics, options, log } = this.deps;
    const context = { kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempt: message.info.deliveryCount };
    const eventStored = await jsm.streams.getMessage(message.info.stream, { seq: message.seq }).then(
      (found) => found !== null,
      (lookupError: unknown) => !String((lookupError as Error)?.message ?? lookupError).includes('no message found'),
    );
    if (!eventStored) {
      log.info(context, 'the event and its artifacts were erased meanwhile; nothing to deliver');
      await purge.clearConfirmations(delivery, state?.confirmed);
      message.term();
      return;
    }
    const { destinations, confirmed } = state ?? (await attemptState(this.deps, delivery));
    const names = destinations.map((c) => c.name);
    const artifactId = GatewayError.from(error).details.artifactId;
    const alert = ArtifactMissing.encode({
      tenant: delivery.tenant,
      deliveryId: delivery.deliveryId,
      kind: delivery.kind,
      artifactId: typeof artifactId === 'string' ? artifactId : '',
      unconfirmedConnectors: names.filter((name) => !confirmed.has(name)),
      attempts: message.info.deliveryCount,
      atMs: this.now,
    }).finish();
    await jetstream(this.deps.nc).publish(subjects.alert(delivery.tenant, 'artifact_missing'), alert, {
      msgID: `artifact_missing.${delivery.deliveryId}.${message.info.deliveryCount}`,
      headers: natsHeadersWithTrace(),
    });
    metrics.missing.inc({ kind: delivery.kind });
    // Raised at each attempt like the alert; the event's id is the same each time (the stream and the receiver keep one).
    this.failed(delivery, 'artifact_missing');
    log.error({ ...context, unconfirmed: names.length - confirmed.size }, 'an artifact is missing before every destination confirmed: not delivered, nothing purged; alert raised');
    message.nak(options.retryMaxMs);
  }

  /** The tenant's backend hears of a delivery that failed for good (its id says which: one event per delivery and reason). */
  private failed(delivery: Delivery, reason: 'expired' | 'artifact_missing'): void {
    if (delivery.kind === 'contact') return;
    this.deps.webhooks?.emit(delivery.tenant, {
      type: 'delivery.failed',
      key: `${delivery.deliveryId}.${reason}`,
      data: { room: { name: delivery.room }, delivery: { deliveryId: delivery.deliveryId, kind: delivery.kind }, reason },
    });
  }

  /**
   * The retention limit passed without a delivery: the communication is deleted all the same
   * (our promise is to hold it only until the customer has it, and never longer than the limit),
   * and the tenant's operators are alerted on the alerts stream.
   */
  private async expire(message: JsMsg, delivery: Delivery, storedAtMs: number): Promise<void> {
    const { purge, metrics, log } = this.deps;
    await purge.artifacts(delivery);
    const alert = DeliveryExpired.encode({
      tenant: delivery.tenant,
      deliveryId: delivery.deliveryId,
      kind: delivery.kind,
      storedAtMs,
      purgedAtMs: this.now,
      attempts: message.info.deliveryCount,
      artifactCount: delivery.artifacts.length,
    }).finish();
    await jetstream(this.deps.nc).publish(subjects.alert(delivery.tenant, 'delivery_expired'), alert, { msgID: `expired.${delivery.deliveryId}`, headers: natsHeadersWithTrace() });
    if (await purge.settle(message)) await purge.clearConfirmations(delivery);
    metrics.expired.inc({ kind: delivery.kind });
    this.failed(delivery, 'expired');
    log.error({ kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempts: message.info.deliveryCount }, 'retention limit passed: deleted undelivered');
  }
}
