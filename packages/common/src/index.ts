/**
 * The public surface of @gateway/common: a chosen list, so that what the services use is visible
 * here and what they do not can be found (knip). Browser code imports `@gateway/common/errors` or
 * `@gateway/common/backoff` only.
 */

// The error every boundary maps, once.
export {
  ErrorCode,
  GatewayError,
  httpStatusOf,
} from './errors.js';

// Running a service: config, logs, ops and HTTP boundaries, shutdown.
export { backoffDelayMs, sleepBackoff, type Backoff } from './runtime/backoff.js';
export {
  env,
  loadConfig,
} from './runtime/config.js';
export {
  createLogger,
  type Logger,
} from './runtime/logger.js';
export {
  createMetricsRegistry,
  opsDrainShape,
  type OpsServerOptions,
  readDrainToken,
  startOpsServer,
} from './runtime/ops.js';
export {
  type EventMap,
  TypedEmitter,
} from './runtime/TypedEmitter.js';
export {
  containRejections,
  DrainWait,
  handleSignals,
  runMain,
  type StopMode,
} from './runtime/shutdown.js';
export { newId } from './runtime/ids.js';
export {
  type ClientError,
  newReference,
  toClientError,
} from './runtime/clientErrors.js';
export {
  hardenHttpServer,
  httpBoundary,
  type HttpBoundaryOptions,
  readBody,
  readJsonBody,
  requestUrl,
  type Route,
  sendJson,
} from './runtime/http.js';

// NATS and JetStream: connections, subjects, the catalog, provisioning, permissions.
export {
  assertSubjectToken,
  buckets,
  kvKeys,
  streams,
  SUBJECT_TOKEN,
  subjects,
} from './nats/subjects.js';
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
  type NatsSettings,
  natsShape,
  observeConsumerLag,
  observeStreamSizes,
  openBucket,
  readNatsSettings,
  requireObjectStore,
} from './nats/connection.js';
export { readSubject } from './nats/streamRead.js';
export {
  type BucketEntry,
  byteSize,
  catalog,
  catalogEntry,
  type CatalogEntry,
  catalogSettings,
  type CatalogSettings,
  catalogShape,
  DELIVERY_BACKSTOP_MS,
  entryName,
  type Lifecycle,
  maxBytesOf,
  NODE_REGISTRY_TTL_MS,
  type ObjectStoreEntry,
  PARTICIPANT_TTL_MS,
  ROOM_BACKSTOP_MS,
  type StorageLimits,
  streamConfigOf,
  type StreamEntry,
  streamNameOf,
} from './jetstream/catalog.js';
export {
  provisionJetStream,
  type ProvisionResult,
} from './jetstream/provision.js';
export {
  ensureNatsCredentials,
  natsChartAuthorization,
  natsChartEnv,
  type NatsCredential,
  natsNkeyVariable,
  natsServerConfig,
  type NatsServerOptions,
  natsUserKeysSecret,
  publicKeyOfSeedFile,
  writeNatsServerConfig,
} from './jetstream/server.js';
export {
  artifactSpaces,
  crmSyncDurables,
  inboxPrefixOf,
  natsAccess,
  natsIdentities,
  permissionsOf,
  renderAuthorization,
  type AuthorizationUser,
  type Grant,
  type NatsIdentity,
  type ServiceIdentity,
  type UserPermissions,
} from './jetstream/access.js';

// gRPC between our services, with caller identities.
export {
  callUnary,
  fromServiceError,
  grpc,
  type GrpcAccess,
  startGrpcServer,
  stopGrpcServer,
  toServiceError,
  unaryHandlers,
  type UnaryHandlersOptions,
  withCheckedDecoding,
} from './grpc/calls.js';
export {
  grpcClientCredentials,
  grpcIdentityName,
  grpcPeerIdentity,
  grpcServerCredentials,
  type GrpcService,
  grpcServices,
  type GrpcTls,
  grpcTlsShape,
  readGrpcTls,
} from './grpc/tls.js';

// Traces.
export {
  contextFromGrpcMetadata,
  contextFromNatsHeaders,
  grpcSpan,
  injectIntoGrpcMetadata,
  inMessageSpan,
  inSpan,
  linksFromNatsHeaders,
  markFailed,
  natsHeadersWithTrace,
  roomEventAttributes,
  sdkKey,
  shutdownTelemetry,
  type Span,
  SpanKind,
  type SpanOptions,
  traceFields,
  tracer,
} from './telemetry/tracing.js';

// The signaling protocol's version and what each version supports (browser-safe).
export { PROTOCOL_VERSION, peerProtocolVersion, supportsChat, supportsResume, supportsSmartActions } from './protocol.js';

// Tracks: sources and kinds between names and the SFU protocol.
export { mediaKindName, mediaKindOf, TRACK_SOURCE_NAMES, trackSourceName, trackSourceOf, type MediaKindName, type TrackSourceName } from './media/tracks.js';

// Schemas of every input that crosses a boundary.
export {
  decodeChecked,
  describeIssues,
  ID_PATTERN,
  isWellFormed,
  type JsonLimits,
  jsonShapeProblem,
  parseWith,
  type ProtoCodec,
  schemas,
} from './schemas/validation.js';
export {
  type CheckedDtlsParameters,
  type CheckedRtpCapabilities,
  type CheckedRtpParameters,
  dtlsParametersSchema,
  rtpCapabilitiesSchema,
  rtpCodecParametersSchema,
  rtpEncodingParametersSchema,
  rtpParametersSchema,
  srtpParametersSchema,
} from './schemas/media.js';
export {
  chatKeyRecordSchema,
  chatMessageSchema,
  chatSealedSchema,
  crmContactId,
  dataSubjectRequestSchema,
  dataSubjectResultSchema,
  e164,
  isIdPath,
  participantInfoSchema,
  participantRecordSchema,
  roomEventSchema,
  roomSessionRecordSchema,
  sessionTakeoverSchema,
  smartActionSchema,
  trackInfoSchema,
} from './schemas/events.js';
export {
  FINISHED_RECORDING_KEPT_MS,
  readJobRecord,
  recordingJobRecordSchema,
} from './schemas/recordingRecords.js';

// Tenants and their keys.
export { createKeyring } from './keys/createKeyring.js';
export {
  DEFAULT_STATIC_KEY_ID,
  DEMO_TENANT_KEK,
  type KeyringSettings,
  readKeyringSettings,
  type StaticTenantKeys,
  tenantKeysShape,
} from './keys/settings.js';
export type {
  Keyring,
  KeyringEvents,
  ManagedKeyring,
  RetiredKey,
  WrappedKey,
} from './keys/keyring.js';
export { observeKeyring } from './keys/metrics.js';
export { StaticKeyring } from './keys/StaticKeyring.js';
export { UnwrapCache } from './keys/UnwrapCache.js';
export {
  DEMO_TENANT,
  type Tenant,
  tenantFromBasicAuth,
  tenantsSchema,
  tenantsShape,
} from './tenants.js';

// What we hold of end users until delivery, and how it is protected.
export {
  type ArtifactContent,
  type ArtifactSpace,
  ArtifactStore,
  dataKeyName,
  openJson,
  type SealedValue,
  sealJson,
  SEGMENT_BYTES,
  type StoredArtifact,
} from './data/artifacts.js';
export {
  defaultRedactionPolicy,
  luhnValid,
  redact,
  type Redacted,
  type RedactionKind,
  redactionKinds,
  type RedactionPolicy,
} from './data/redaction.js';
export {
  type DeviceKey,
  DeviceKeys,
  MAX_DEVICE_KEYS_PER_USER,
} from './data/deviceKeys.js';
export {
  normalizePhoneNumber,
  openParticipants,
  sealParticipants,
  type SessionParticipant,
} from './data/contactDetails.js';

// The residue scanner.
export {
  DEAD_RECORDER_MS,
  LONGEST_RETENTION_MS,
  Residue,
  type ResidueItem,
  type ResidueKind,
  type ResidueOptions,
  type ResidueReport,
  type ResidueSummary,
  sweeps,
} from './residue/Residue.js';
export { residueMetrics } from './residue/metrics.js';
