/**
 * The server SDK of Gateway, for a customer's backend on Node 20 or later: mint join tokens
 * locally, verify webhooks, call the room and admin APIs. docs/server-sdk.md shows each in use.
 *
 * @packageDocumentation
 */
export { mintJoinToken, type Credentials, type JoinToken, type JoinTokenOptions, type Role, type TrackSource } from './tokens.js';
export { MemorySeenEvents, type SeenEvents, WebhookReceiver, type WebhookReceiverOptions, type WebhookRefusal, WebhookVerificationError } from './webhooks.js';
export type { DeliveryKind, RoomRef, WebhookEvent, WebhookEventBase, WebhookEventType } from './events.js';
export { type ApiClientOptions, GatewayApiError } from './api.js';
export { type ParticipantInfo, RoomClient, type TrackInfo } from './RoomClient.js';
export { AdminClient, type ApiKey, type ApiKeyWithSecret, type Connector, type DataSubject, type Webhook, type WebhookSettings } from './AdminClient.js';
