import { createHash } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { Logger } from '../runtime/logger.js';
import type { WebhookAudience } from './audience.js';
import { subjects } from '../nats/subjects.js';
import { natsHeadersWithTrace } from '../telemetry/tracing.js';
import { participantName } from '../schemas/events.js';
import { ID_PATTERN, schemas } from '../schemas/validation.js';

/**
 * The events a tenant's backend can be told about by webhook (docs/webhooks.md), in one place:
 * their names, the shape of each one's `data`, and how their ids are made. Signaling, the
 * recorder and crm-sync publish them on the webhooks stream; crm-sync reads them back (checked
 * by the schema below, like any input) and posts them to the tenant's endpoints.
 *
 * What an event says is what the tenant's own backend already knows or chose (its room names,
 * the identities and names its tokens carried, ids of ours): never contact details (phone
 * numbers, CRM contact ids, device ids).
 */

const id = schemas.id;
const room = z.object({ name: schemas.room(), sessionId: id().optional() });
const participantRef = z.object({ participantId: id() });
const joined = participantRef.extend({ identity: schemas.text(256, { min: 1 }), role: z.enum(['agent', 'end_user', 'supervisor']), name: participantName });

export const webhookDataSchemas = {
  'room.started': z.object({ room: room.extend({ sessionId: id(), startedAtMs: z.number().int().min(0) }) }),
  'room.ended': z.object({ room: room.extend({ sessionId: id(), startedAtMs: z.number().int().min(0), endedAtMs: z.number().int().min(0) }) }),
  'participant.joined': z.object({ room, participant: joined }),
  'participant.left': z.object({ room, participant: participantRef, reason: z.string().regex(/^[a-z_]{1,32}$/) }),
  'track.published': z.object({
    room,
    participant: participantRef,
    track: z.object({ trackId: id(), source: z.enum(['camera', 'microphone', 'screen', 'screen_audio', 'unknown']), kind: z.enum(['audio', 'video']) }),
  }),
  'recording.ready': z.object({
    room,
    recording: z.object({
      recordingId: id(),
      state: z.enum(['complete', 'partial', 'failed']),
      startedAtMs: z.number().int().min(0),
      endedAtMs: z.number().int().min(0),
      artifacts: z.number().int().min(0).max(1_000),
    }),
  }),
  'delivery.succeeded': z.object({ room, delivery: z.object({ deliveryId: id(), kind: z.enum(['recording', 'transcript', 'attachment', 'session']) }) }),
  'delivery.failed': z.object({
    room,
    delivery: z.object({ deliveryId: id(), kind: z.enum(['recording', 'transcript', 'attachment', 'session']) }),
    /** `expired`: deleted undelivered when the retention ended; `artifact_missing`: an artifact was lost before every destination had it. */
    reason: z.enum(['expired', 'artifact_missing']),
  }),
  /** Sent on request through the admin API to check an endpoint. */
  'webhook.test': z.object({ webhookId: id() }),
} as const;

export type WebhookEventType = keyof typeof webhookDataSchemas;
export const webhookEventTypes = Object.keys(webhookDataSchemas) as [WebhookEventType, ...WebhookEventType[]];
export type WebhookData<T extends WebhookEventType> = z.infer<(typeof webhookDataSchemas)[T]>;

/** An event as posted: `id` is also the `webhook-id` header, the same for every retry of it. */
export type WebhookEvent = {
  [T in WebhookEventType]: { id: string; type: T; createdAtMs: number; data: WebhookData<T> };
}[WebhookEventType];

const eventOf = <T extends WebhookEventType>(type: T) =>
  z.strictObject({ id: z.string().regex(ID_PATTERN), type: z.literal(type), createdAtMs: z.number().int().min(0), data: webhookDataSchemas[type] });

/** An event as read back from the stream (or as a receiver parses one). */
export const webhookEventSchema: z.ZodType<WebhookEvent> = z.discriminatedUnion('type', [
  eventOf('room.started'),
  eventOf('room.ended'),
  eventOf('participant.joined'),
  eventOf('participant.left'),
  eventOf('track.published'),
  eventOf('recording.ready'),
  eventOf('delivery.succeeded'),
  eventOf('delivery.failed'),
  eventOf('webhook.test'),
]);

/**
 * An event's id, derived from what it is about (`key`: the session, participant, track,
 * recording or delivery it concerns), so that whoever announces it twice (a retry, two replicas
 * noticing the same end) announces the same event: the stream keeps one, and a receiver that
 * deduplicates by id sees one.
 */
export function webhookEventId(tenant: string, type: WebhookEventType, key: string): string {
  return `evt_${createHash('sha256').update(`${tenant}\u0000${type}\u0000${key}`).digest('base64url').slice(0, 27)}`;
}

/** What a publisher gives: the event's type, its data, and what it is about (for its id). */
export type WebhookEventInput = { [T in WebhookEventType]: { type: T; key: string; data: WebhookData<T> } }[WebhookEventType];

/**
 * Publishes webhook events on the webhooks stream. Failing to publish one never fails what
 * caused it (a join, a recording): the event is logged as lost (by type and id, nothing it
 * says) and the caller goes on.
 */
export class WebhookEvents {
  /** `audience`: when given, `emit` skips the events of tenants without endpoints (audience.ts). */
  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly audience?: Pick<WebhookAudience, 'mayHaveEndpoints'>,
  ) {}

  /** Publishes one event, waiting for the stream to store it; throws when it could not. */
  async publish(tenant: string, input: WebhookEventInput, createdAtMs = Date.now()): Promise<WebhookEvent> {
    const event = webhookEventSchema.parse({ id: webhookEventId(tenant, input.type, input.key), type: input.type, createdAtMs, data: input.data });
    await jetstream(this.nc).publish(subjects.webhookEvent(tenant), JSON.stringify(event), { msgID: event.id, timeout: 10_000, headers: natsHeadersWithTrace() });
    return event;
  }

  /** Publishes without waiting, unless the tenant has no endpoint to tell; a failure is logged. */
  emit(tenant: string, input: WebhookEventInput): void {
    if (this.audience && !this.audience.mayHaveEndpoints(tenant)) return;
    this.publish(tenant, input).catch((error: unknown) => {
      this.log.error({ err: error, tenant, type: input.type }, 'a webhook event could not be published; it is lost');
    });
  }
}
