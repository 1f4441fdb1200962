/**
 * The public surface of @gateway/common: a chosen list, so that what the services use is visible
 * here and what they do not can be found (knip). Browser code imports `@gateway/common/errors` or
 * `@gateway/common/backoff` only.
 */

// The error every boundary maps, once.
export { ErrorCode, GatewayError, methodNotAllowed } from './errors.js';

// Running a service: config, logs, ops and HTTP boundaries, shutdown.
export { type Backoff, backoffDelayMs, retryAfterMs, sleepBackoff } from './runtime/backoff.js';
export { env, loadConfig, SECRET_VARIABLES } from './runtime/config.js';
export { createLogger, type Logger } from './runtime/logger.js';
export { createMetricsRegistry, opsDrainShape, readDrainToken, startOpsServer } from './runtime/ops.js';
export { TypedEmitter } from './runtime/TypedEmitter.js';
export { FILE_RELOAD_INTERVAL_MS, fileReloads, WatchedFiles } from './runtime/watchedFiles.js';
export { type Parsed, type SecretFile, watchSecretFile } from './runtime/secretFile.js';
export { DrainWait, handleSignals, runMain, type StopMode } from './runtime/shutdown.js';
export { childProcessEnv } from './runtime/childEnv.js';
export { newId } from './runtime/ids.js';
export { type ClientError, newReference, toClientError } from './runtime/clientErrors.js';
export { adminOriginsShape, type CorsPolicy } from './runtime/cors.js';
export { closeHttp, hardenHttpServer, hasBody, httpBoundary, listenHttp, readJsonBody, readJsonRequest, refuseQuery, sendJson } from './runtime/http.js';
export { Startup } from './runtime/startup.js';

// NATS and JetStream: connections, subjects, the catalog, provisioning, permissions.
export { assertSubjectToken, buckets, kvKeys, streams, SUBJECT_TOKEN, subjects } from './nats/subjects.js';
export {
  bucketTtlMs,
  connectNats,
  ensureStream,
  isLiveEntry,
  type KV,
  listEntries,
  liveEntries,
  liveKeys,
  type NatsConnection,
  natsShape,
  observeConsumerLag,
  observeStreamSizes,
  openBucket,
  readNatsSettings,
} from './nats/connection.js';
export { readSubject } from './nats/streamRead.js';
export { PENDING_ID_MS, RoomIndex } from './nats/RoomIndex.js';
export { type KeptEntries, WatchedKeys } from './nats/WatchedKeys.js';
export { catalog, type CatalogSettings, NODE_REGISTRY_TTL_MS, ROUTING_LEASE_TTL_MS, SIGNALING_REPLICA_TTL_MS, streamNameOf } from './jetstream/catalog.js';
export { provisionJetStream } from './jetstream/provision.js';
export { ensureNatsCredentials, natsChartAuthorization, natsChartEnv, type NatsCredential, writeNatsServerConfig } from './jetstream/server.js';
export { artifactSpaces, crmSyncDurables, WEBHOOKS_DURABLE, inboxPrefixOf, natsIdentities, permissionsOf, type NatsIdentity, type ServiceIdentity } from './jetstream/access.js';

// gRPC between our services, with caller identities.
export { callUnary, grpc, type GrpcAccess, startGrpcServer, stopGrpcServer, unaryHandlers, withCheckedDecoding } from './grpc/calls.js';
export {
  grpcClientCredentials,
  grpcServerCredentials,
  type GrpcService,
  type GrpcTls,
  type GrpcTlsContents,
  type GrpcTlsFiles,
  GrpcTlsSource,
  grpcTlsShape,
  readGrpcTls,
  watchGrpcTls,
} from './grpc/tls.js';

// Traces.
export {
  contextFromNatsHeaders,
  contextFromTraceparent,
  inMessageSpan,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  recordSpan,
  roomEventAttributes,
  type Span,
  SpanKind,
  traceparentOf,
} from './telemetry/tracing.js';

// The signaling protocol's version and what each version supports (browser-safe).
export { PROTOCOL_VERSION, peerProtocolVersion } from './protocol.js';

// Tracks: sources and kinds between names and the SFU protocol.
export { mediaKindName, mediaKindOf, trackSourceName, trackSourceOf, type TrackSourceName } from './media/tracks.js';
// Connection quality levels and their thresholds (browser-safe).
export { CONNECTION_QUALITIES, isConnectionQuality, judgeQuality, worseQuality, type ConnectionQuality } from './media/quality.js';

// Schemas of every input that crosses a boundary.
export { decodeChecked, describeIssues, ID_PATTERN, isWellFormed, type JsonLimits, jsonShapeProblem, parseWith, schemas } from './schemas/validation.js';
export { dtlsParametersSchema, rtpCapabilitiesSchema, rtpParametersSchema, srtpParametersSchema } from './schemas/media.js';
export {
  chatKeyRecordSchema,
  chatMessageSchema,
  chatSealedSchema,
  crmContactId,
  dataMessagePayload,
  dataSubjectRequestSchema,
  dataSubjectResultSchema,
  e164,
  participantMetadata,
  participantName,
  participantRecordSchema,
  roomEventSchema,
  roomSessionRecordSchema,
  MAX_DATA_DESTINATIONS,
  MAX_DATA_MESSAGE_BYTES,
  sessionControlReplySchema,
  sessionControlSchema,
  sessionTakeoverSchema,
  smartActionSchema,
} from './schemas/events.js';
export { FINISHED_RECORDING_KEPT_MS, readJobRecord } from './schemas/recordingRecords.js';

// Tenants and their keys.
export { createKeyring } from './keys/createKeyring.js';
export { DEMO_TENANT_KEK, readKeyringSettings, tenantKeysShape } from './keys/settings.js';
export type {
  Keyring,
  KeyringEvents,
  ManagedKeyring,
  RetiredKey,
  WrappedKey,
} from './keys/keyring.js';
export { observeKeyring } from './keys/metrics.js';
export { StaticKeyring } from './keys/StaticKeyring.js';

export { DEMO_TENANT, parseBasicAuth, parseTenants, readTenantsSettings, type Tenant, type TenantsSettings, tenantFromBasicAuth, tenantsSchema, tenantsShape } from './tenants/config.js';
export { ConfiguredTenants } from './tenants/ConfiguredTenants.js';
export { API_KEY_ID } from './tenants/apiKeys.js';
export { ApiKeyStore, type ApiKeyView, type ApiKeyWithSecret, MAX_API_KEYS_PER_TENANT } from './tenants/ApiKeyStore.js';
export { API_KEY_CACHE_MS, TenantAuth, type TenantCredentials } from './tenants/TenantAuth.js';

// What we hold of end users until delivery, and how it is protected.
export { type ArtifactContent, type ArtifactSpace, ArtifactStore, dataKeyName, isArtifactStoreFull } from './data/artifacts.js';
export { SEGMENT_BYTES } from './data/sealedSegments.js';
export { openJson, type SealedValue, sealJson } from './data/sealedJson.js';
export { defaultRedactionPolicy, redact, type RedactionPolicy } from './data/redaction.js';
export { type DeviceKey, DeviceKeys } from './data/deviceKeys.js';
export { normalizePhoneNumber, openParticipants, sealParticipants, type SessionParticipant } from './data/contactDetails.js';

// Webhook events for the tenants' backends.
export { WebhookAudience } from './webhooks/audience.js';
export { type WebhookEvent, type WebhookEventInput, WebhookEvents, type WebhookEventType, webhookEventSchema, webhookEventTypes } from './webhooks/events.js';

// The residue scanner.
export { Residue } from './residue/Residue.js';
export type { ResidueReport } from './residue/report.js';
export { type DeleteMarker, findDeleteMarkers, summarizeMarkers, sweepDeleteMarkers } from './residue/markers.js';
export { residueMetrics } from './residue/metrics.js';
export { OBJECT_WRITE_MS } from './residue/scan.js';
