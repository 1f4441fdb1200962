import { AckPolicy, jetstream, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Counter, Histogram, type Registry } from 'prom-client';
import { AttachmentReady, DeliveryExpired, RecordingReady, SessionEnded, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import type { Artifact } from '@gateway/proto/gateway/recorder/v1/recorder';
import {
  ErrorCode,
  GatewayError,
  SpanKind,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  openParticipants,
  streams,
  subjects,
  type ArtifactStore,
  type Keyring,
  type Logger,
  type NatsConnection,
  type Span,
} from '@gateway/common';
import type { ConnectorStore } from './connectors/ConnectorStore.js';
import type { Delivery, DeliveryArtifact } from './destinations/types.js';

export interface DeliveryOptions {
  concurrency: number;
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

/** The events crm-sync takes, decoded into one shape. */
export function deliveryOf(subject: string, data: Uint8Array, artifacts: ArtifactStore): Delivery {
  const artifactOf = (tenant: string, a: Artifact): DeliveryArtifact => ({
    artifactId: a.artifactId,
    kind: a.kind,
    contentType: a.contentType,
    sizeBytes: Number(a.sizeBytes),
    part: a.part,
    read: async () => {
      try {
        return (await artifacts.get(tenant, a.artifactId)).data;
      } catch (error) {
        const gatewayError = GatewayError.from(error);
        // Marked, so that "the artifact is gone" is never confused with another NOT_FOUND.
        if (gatewayError.code === ErrorCode.NOT_FOUND) throw new GatewayError(ErrorCode.NOT_FOUND, 'the artifact is gone', { cause: error, details: { artifactGone: true } });
        throw error;
      }
    },
  });
  if (subject.endsWith('.recording.ready')) {
    const { recording, contacts } = RecordingReady.decode(data);
    if (!recording) throw new GatewayError(ErrorCode.BAD_REQUEST, 'recording.ready without a recording');
    const tenant = recording.tenant;
    return {
      deliveryId: recording.recordingId,
      kind: 'recording',
      tenant,
      room: recording.room,
      startedAtMs: Number(recording.startedAtMs),
      endedAtMs: Number(recording.endedAtMs),
      contacts,
      artifacts: recording.artifacts.map((a) => artifactOf(tenant, a)),
      metadata: { state: recording.state, pauses: recording.pauses.map((p) => ({ startMs: Number(p.startMs), endMs: Number(p.endMs) })), failureReason: recording.failureReason || undefined },
    };
  }
  if (subject.endsWith('.transcript.ready')) {
    const event = TranscriptReady.decode(data);
    return {
      deliveryId: event.conversationId,
      kind: 'transcript',
      tenant: event.tenant,
      room: event.room,
      startedAtMs: Number(event.startedAtMs),
      endedAtMs: Number(event.endedAtMs),
      contacts: event.contacts,
      artifacts: event.artifacts.map((a) => artifactOf(event.tenant, a)),
      metadata: {
        messageCount: event.messageCount,
        smartActions: event.smartActions.map((a) => ({ actionId: a.actionId, kind: a.kind, state: a.state, verified: a.verified, completedAtMs: Number(a.completedAtMs) })),
      },
    };
  }
  if (subject.endsWith('.attachment.ready')) {
    const event = AttachmentReady.decode(data);
    if (!event.artifact || !event.action) throw new GatewayError(ErrorCode.BAD_REQUEST, 'attachment.ready without its artifact');
    return {
      deliveryId: event.artifact.artifactId,
      kind: 'attachment',
      tenant: event.tenant,
      room: event.room,
      startedAtMs: Number(event.action.requestedAtMs),
      endedAtMs: Number(event.action.completedAtMs),
      contacts: event.contact ? [event.contact] : [],
      artifacts: [artifactOf(event.tenant, event.artifact)],
      metadata: { conversationId: event.conversationId, actionId: event.action.actionId, actionKind: event.action.kind },
    };
  }
  if (subject.endsWith('.session.ended')) {
    const event = SessionEnded.decode(data);
    return {
      deliveryId: event.sessionId,
      kind: 'session',
      tenant: event.tenant,
      room: event.room,
      startedAtMs: Number(event.startedAtMs),
      endedAtMs: Number(event.endedAtMs),
      contacts: [],
      sealedContacts: { sessionId: event.sessionId, sealed: event.sealedParticipants },
      artifacts: [],
      metadata: { conversationId: event.conversationId || undefined },
    };
  }
  throw new GatewayError(ErrorCode.BAD_REQUEST, 'not an event crm-sync takes');
}

/** A session's participants, opened with the tenant's key: the delivery's contacts. */
export async function openContacts(keyring: Keyring, delivery: Delivery): Promise<Delivery> {
  if (!delivery.sealedContacts) return delivery;
  const participants = await openParticipants(keyring, delivery.tenant, delivery.sealedContacts.sessionId, delivery.sealedContacts.sealed);
  const contacts = participants.map((p) => ({
    participantId: p.participantId,
    role: p.role,
    externalId: p.externalId,
    crmContactId: p.crmContactId,
    ...(p.phoneNumber ? { phoneNumber: p.phoneNumber } : {}),
    ...(p.deviceIds.length ? { deviceIds: p.deviceIds } : {}),
  }));
  return { ...delivery, contacts, sealedContacts: undefined };
}

/** The durable consumers crm-sync takes events from, shared by its replicas. */
export const deliveryConsumers = [
  { stream: streams.recordings.name, durable: 'crm-sync-recordings' },
  { stream: streams.transcripts.name, durable: 'crm-sync-transcripts' },
  { stream: streams.sessions.name, durable: 'crm-sync-sessions' },
] as const;

/**
 * Durable JetStream consumers of everything a session leaves behind. Each event goes to every
 * destination of its tenant; once all confirm, the artifacts are deleted from our platform
 * (wrapped keys first: crypto-shredding) and the event is acknowledged. A failure is retried
 * with backoff; nothing is acknowledged before it is delivered. Deliveries of one tenant run
 * in order, different tenants in parallel.
 */
export class Deliveries {
  private readonly tenantQueues = new Map<string, Promise<void>>();
  private inFlight = 0;
  private readonly wake = new Set<() => void>();
  private readonly stops: Array<() => void> = [];
  private readonly metrics: ReturnType<typeof createMetrics>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly connectors: ConnectorStore,
    private readonly artifacts: ArtifactStore,
    private readonly keyring: Keyring,
    private readonly options: DeliveryOptions,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.metrics = createMetrics(registry);
  }

  async start(): Promise<void> {
    for (const { stream, durable } of deliveryConsumers) {
      await this.jsm.consumers.add(stream, { durable_name: durable, ack_policy: AckPolicy.Explicit, ack_wait: this.options.ackWaitMs * 1e6, max_deliver: -1 }).catch(async (error) => {
        if (!(await this.jsm.consumers.info(stream, durable).catch(() => undefined))) throw error;
      });
      const consumer = await jetstream(this.nc).consumers.get(stream, durable);
      const messages = await consumer.consume({ max_messages: this.options.concurrency });
      this.stops.push(() => messages.stop());
      void (async () => {
        for await (const message of messages) {
          while (this.inFlight >= this.options.concurrency) await new Promise<void>((resolve) => this.wake.add(resolve));
          this.dispatch(message);
        }
      })();
    }
  }

  private dispatch(message: JsMsg): void {
    let delivery: Delivery;
    try {
      delivery = deliveryOf(message.subject, message.data, this.artifacts);
    } catch (error) {
      // An event that cannot be read never will be: keep it out of the way, loudly.
      this.log.error({ err: error, subject: message.subject, seq: message.seq }, 'undecodable event terminated');
      message.term();
      return;
    }
    this.inFlight++;
    const previous = this.tenantQueues.get(delivery.tenant) ?? Promise.resolve();
    const next = previous.then(() => this.handleInSpan(message, delivery)).finally(() => {
      this.inFlight--;
      for (const resolve of this.wake) resolve();
      this.wake.clear();
      if (this.tenantQueues.get(delivery.tenant) === next) this.tenantQueues.delete(delivery.tenant);
    });
    this.tenantQueues.set(delivery.tenant, next);
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
      this.log.error({ err: error, deliveryId: sealed.deliveryId, tenant: sealed.tenant }, 'a session event does not open with the tenant key; will retry');
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
      let delivered = 0;
      for (const connector of connectors) {
        const destination = await this.connectors.open(delivery.tenant, connector.name).catch((error: unknown) => {
          // Removed by the tenant since the list was read: nothing to deliver to there.
          if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) return undefined;
          throw error;
        });
        if (!destination) continue;
        delivered++;
        try {
          await inSpan(`deliver to ${connector.type}`, { attributes: { 'gateway.adapter': connector.type } }, () => destination.deliver(delivery));
          this.metrics.deliveries.inc({ adapter: connector.type, kind: delivery.kind, result: 'delivered' });
        } catch (error) {
          this.metrics.deliveries.inc({ adapter: connector.type, kind: delivery.kind, result: 'failed' });
          throw error;
        } finally {
          await destination.close();
        }
      }
      if (delivered === 0) throw new GatewayError(ErrorCode.DESTINATION_FAILED, 'the tenant has no destination connected');
      await this.purge(delivery);
      await this.settle(message);
      this.metrics.seconds.observe({ kind: delivery.kind }, (performance.now() - started) / 1000);
      this.log.info(context, 'delivered and purged');
    } catch (error) {
      const gatewayError = GatewayError.from(error);
      if (gatewayError.code === ErrorCode.NOT_FOUND && gatewayError.details.artifactGone === true) {
        // Its artifacts are gone: delivered and purged before a crash lost the acknowledgement,
        // or deleted by a data-subject request. Nothing is left to deliver.
        // A crash may have come between two artifacts' purges: finish it before letting go.
        try {
          await this.purge(delivery);
        } catch (purgeError) {
          this.log.warn({ err: purgeError, ...context }, 'finishing the purge failed; will retry');
          message.nak(this.options.retryBaseMs);
          return;
        }
        this.log.warn(context, 'artifacts already gone; acknowledging');
        await this.settle(message);
        return;
      }
      // A destination that said when to come back (a 429's Retry-After) is not asked sooner.
      const hintMs = Number(gatewayError.details.retryAfterMs ?? 0);
      const delayMs = Math.max(retryDelayMs(message.info.deliveryCount, this.options.retryBaseMs, this.options.retryMaxMs), Number.isFinite(hintMs) ? hintMs : 0);
      if (span) markFailed(span, gatewayError);
      this.log.warn({ ...context, code: gatewayError.code, reason: gatewayError.message, retryInMs: delayMs }, 'delivery failed; will retry');
      message.nak(delayMs);
    } finally {
      clearInterval(inProgress);
    }
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
    await this.settle(message);
    this.metrics.expired.inc({ kind: delivery.kind });
    this.log.error({ kind: delivery.kind, deliveryId: delivery.deliveryId, tenant: delivery.tenant, attempts: message.info.deliveryCount }, 'retention limit passed: deleted undelivered');
  }

  /**
   * Erases a settled event from its stream, then acknowledges it: the event names the end user
   * (their external id), and the command must not outlive the communication it carried. Erasing
   * first means a crash or a lost connection in between leaves the event to be handed out again
   * (and erased then), never acknowledged but still stored.
   */
  private async settle(message: JsMsg): Promise<void> {
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
        return;
      }
    }
    message.ack();
  }

  /** Our copies go once the destination has them: keys first, then bytes. */
  private async purge(delivery: Delivery): Promise<void> {
    for (const artifact of delivery.artifacts) {
      await this.artifacts.delete(delivery.tenant, artifact.artifactId);
    }
  }


  async close(): Promise<void> {
    for (const stop of this.stops) stop();
    await Promise.allSettled([...this.tenantQueues.values()]);
  }
}

function createMetrics(registry: Registry) {
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
    seconds: new Histogram({
      name: 'gateway_crm_sync_delivery_duration_seconds',
      help: 'Time from taking an event to its acknowledgement, for successful deliveries',
      labelNames: ['kind'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}
