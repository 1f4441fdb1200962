export * from './errors.js';
export * from './config.js';
export * from './logger.js';
export * from './subjects.js';
export * from './nats.js';
export * from './streamRead.js';
export * from './grpc.js';
export * from './ops.js';
export * from './TypedEmitter.js';
export * from './shutdown.js';
export * from './ids.js';
export * from './grpcTls.js';
export * from './artifacts.js';
export * from './keyring.js';
export * from './redaction.js';
export * from './tenants.js';
export * from './protocol.js';
export * from './deviceKeys.js';
export * from './sessions.js';
export * from './telemetry/tracing.js';
export * from './validation.js';
export * from './clientErrors.js';
export * from './http.js';
export * from './mediaSchemas.js';
export * from './eventSchemas.js';
export * from './recordingRecords.js';
export * from './residue/Residue.js';
export * from './residue/metrics.js';
export * from './jetstream/catalog.js';
export * from './jetstream/provision.js';
export * from './jetstream/server.js';
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
