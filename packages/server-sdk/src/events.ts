/** The room an event is about: its name, and the session (one room's life from first join to last leave) where known. */
export interface RoomRef {
  name: string;
  sessionId?: string;
}

/** What every event carries; `data` depends on `type`. */
export interface WebhookEventBase<T extends string, D> {
  /** The event's id, also the `webhook-id` header: the same for every retry, and for the same fact announced twice. Deduplicate by it. */
  id: string;
  type: T;
  /** When it happened (Unix milliseconds). Events may arrive out of order. */
  createdAtMs: number;
  data: D;
}

export type DeliveryKind = 'recording' | 'transcript' | 'attachment' | 'session';

/** Every event a webhook endpoint may receive (docs/webhooks.md); `type` tells them apart. */
export type WebhookEvent =
  | WebhookEventBase<'room.started', { room: { name: string; sessionId: string; startedAtMs: number } }>
  | WebhookEventBase<'room.ended', { room: { name: string; sessionId: string; startedAtMs: number; endedAtMs: number } }>
  | WebhookEventBase<'participant.joined', { room: RoomRef; participant: { participantId: string; identity: string; role: 'agent' | 'end_user'; name: string } }>
  | WebhookEventBase<'participant.left', { room: RoomRef; participant: { participantId: string }; reason: string }>
  | WebhookEventBase<
      'track.published',
      { room: RoomRef; participant: { participantId: string }; track: { trackId: string; source: 'camera' | 'microphone' | 'screen' | 'screen_audio' | 'unknown'; kind: 'audio' | 'video' } }
    >
  | WebhookEventBase<'recording.ready', { room: RoomRef; recording: { recordingId: string; state: 'complete' | 'partial' | 'failed'; startedAtMs: number; endedAtMs: number; artifacts: number } }>
  | WebhookEventBase<'delivery.succeeded', { room: RoomRef; delivery: { deliveryId: string; kind: DeliveryKind } }>
  | WebhookEventBase<'delivery.failed', { room: RoomRef; delivery: { deliveryId: string; kind: DeliveryKind }; reason: 'expired' | 'artifact_missing' }>
  | WebhookEventBase<'webhook.test', { webhookId: string }>;

export type WebhookEventType = WebhookEvent['type'];
