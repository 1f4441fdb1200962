import { readFileSync } from 'node:fs';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  ErrorCode,
  GatewayError,
  defaultRedactionPolicy,
  env,
  grpcTlsShape,
  loadConfig,
  natsShape,
  readNatsSettings,
  readGrpcTls,
  readKeyringSettings,
  readTenantsSettings,
  tenantKeysShape,
  tenantsShape,
  type RedactionPolicy,
  type Tenant,
} from '@gateway/common';

import { parseTurnSecret, type TurnSettings } from './participant/turnCredentials.js';

export { DEMO_TENANT, type Tenant } from '@gateway/common';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** The tenant's chat redaction policy. */
export function redactionPolicy(tenant: Tenant | undefined): RedactionPolicy {
  return tenant?.redaction ?? defaultRedactionPolicy;
}

/** A tenant's limits: its own where it set them, the deployment's otherwise (a tenant no longer configured too). */
export function tenantLimits(config: Pick<SignalingConfig, 'limits'>, tenant: Tenant | undefined) {
  const own = tenant?.limits ?? {};
  return {
    sessionsPerToken: own.sessionsPerToken ?? config.limits.sessionsPerToken,
    maxSessionMs: own.maxSessionSeconds !== undefined ? own.maxSessionSeconds * 1000 : config.limits.maxSessionMs,
    participantsPerRoom: own.participantsPerRoom ?? config.limits.participantsPerRoom,
    rooms: own.rooms ?? config.limits.roomsPerTenant,
  };
}

/** What the recorder is told of a tenant's recording policy. */
export function recordingOptions(tenant: Tenant | undefined) {
  return { transcodeMp4: tenant?.recording?.mp4 ?? false, skipPausedAudio: tenant?.recording?.skipPausedAudio ?? false };
}

/** A TURN URL as RTCIceServer takes it: turn: or turns:, a host and port, an optional transport. */
const TURN_URL = /^turns?:[A-Za-z0-9.-]+(:\d{1,5})?(\?transport=(udp|tcp))?$|^turns?:\[[0-9A-Fa-f:.]+\](:\d{1,5})?(\?transport=(udp|tcp))?$/;

const turnUrls = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? '')
      .split(',')
      .map((url) => url.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string().regex(TURN_URL, { error: 'each URL must be turn:host:port or turns:host:port, with an optional ?transport=udp|tcp' })));

/**
 * TURN for media through networks that let no UDP out to the media nodes (docs/turn.md): the
 * file with the secret shared with coturn (taken up again when it changes), the servers' URLs (comma-separated),
 * and how long a credential may start an allocation. Without the secret no TURN server is handed out.
 */
export const turnShape = {
  SIGNALING_TURN_SECRET_FILE: z.string().min(1).optional(),
  SIGNALING_TURN_URLS: turnUrls,
  SIGNALING_TURN_CREDENTIAL_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(7 * 24 * 3600)
    .default(3600),
};

/** The TURN settings, or undefined without a secret; problems name the variable, never the secret. */
export function readTurnSettings(c: z.infer<z.ZodObject<typeof turnShape>>): TurnSettings | undefined {
  const invalid = (message: string, cause?: unknown) => new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${message}`, { cause });
  if (!c.SIGNALING_TURN_SECRET_FILE) {
    if (c.SIGNALING_TURN_URLS.length > 0) throw invalid('SIGNALING_TURN_URLS: set SIGNALING_TURN_SECRET_FILE too (a TURN server without credentials would refuse every client)');
    return undefined;
  }
  if (c.SIGNALING_TURN_URLS.length === 0) throw invalid('SIGNALING_TURN_URLS: at least one URL is needed with SIGNALING_TURN_SECRET_FILE');
  let contents: Buffer;
  try {
    contents = readFileSync(c.SIGNALING_TURN_SECRET_FILE);
  } catch (error) {
    throw invalid('SIGNALING_TURN_SECRET_FILE: cannot be read', error);
  }
  // The same check as when the file changes later (TurnCredentials).
  const parsed = parseTurnSecret(contents.toString('utf8'));
  if (!parsed.ok) throw invalid(`SIGNALING_TURN_SECRET_FILE: ${parsed.problem}`);
  return { secret: parsed.value, urls: c.SIGNALING_TURN_URLS, ttlSeconds: c.SIGNALING_TURN_CREDENTIAL_TTL_SECONDS, file: { path: c.SIGNALING_TURN_SECRET_FILE, contents } };
}

const shape = {
  ...natsShape,
  LOG_LEVEL: env.logLevel(),
  ...tenantsShape,
  SIGNALING_HOST: env.string('0.0.0.0'),
  SIGNALING_PORT: env.port(8080),
  SIGNALING_OPS_PORT: env.port(9100),
  SIGNALING_REPLICA_ID: env.string(`sig-${os.hostname()}-${randomBytes(3).toString('hex')}`),
  SIGNALING_RESUME_WINDOW_SECONDS: env.seconds(30),
  SIGNALING_MAX_FRAME_BYTES: env.positiveInt(64 * 1024),
  SIGNALING_RATE_LIMIT_PER_SECOND: env.positiveInt(50),
  SIGNALING_RATE_LIMIT_BURST: env.positiveInt(100),
  SIGNALING_JOIN_TIMEOUT_SECONDS: env.seconds(10),
  SIGNALING_PING_INTERVAL_SECONDS: env.seconds(10),
  /**
   * Each replica writes its liveness key this often; a replica whose key has not moved for three
   * heartbeats is gone and its participants are swept. At most a third of the key's 15 s TTL.
   */
  SIGNALING_HEARTBEAT_SECONDS: z.coerce.number().min(0.2).max(5).default(5),
  /**
   * A room session whose finisher has not announced it this long after the room ended (it
   * failed for a while, or its replica died) is finished by a sweep on any replica.
   */
  SIGNALING_SESSION_FINISH_STALE_SECONDS: z.coerce.number().min(1).default(120),
  /** Chat: longest message in characters, and messages per participant per second (sustained / burst). */
  SIGNALING_CHAT_MAX_CHARS: env.positiveInt(4000),
  SIGNALING_CHAT_RATE_PER_SECOND: env.positiveInt(5),
  SIGNALING_CHAT_RATE_BURST: env.positiveInt(10),
  SIGNALING_DATA_RATE_PER_SECOND: env.positiveInt(10),
  SIGNALING_DATA_RATE_BURST: env.positiveInt(20),
  /** Messages of the conversation a joining client gets. */
  SIGNALING_CHAT_HISTORY_LIMIT: env.positiveInt(500),
  /** Limits, each refused with LIMIT_EXCEEDED; a tenant's `limits` override the first four. */
  SIGNALING_SESSIONS_PER_TOKEN: env.positiveInt(1),
  SIGNALING_MAX_SESSION_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .default(24 * 3600),
  SIGNALING_MAX_PARTICIPANTS_PER_ROOM: env.positiveInt(100),
  SIGNALING_MAX_ROOMS_PER_TENANT: env.positiveInt(10_000),
  SIGNALING_MAX_TRANSPORTS_PER_PARTICIPANT: env.positiveInt(4),
  SIGNALING_MAX_PRODUCERS_PER_PARTICIPANT: env.positiveInt(4),
  SIGNALING_MAX_CONSUMERS_PER_PARTICIPANT: env.positiveInt(64),
  /** Uploads this replica reads and decodes at once (each buffers up to the size limit). */
  SIGNALING_MAX_CONCURRENT_UPLOADS: env.positiveInt(4),
  /** Smart Actions: largest photo and screenshot upload in bytes, and how long an attachment URL lasts. */
  SIGNALING_MAX_PHOTO_BYTES: env.positiveInt(10 * 1024 * 1024),
  SIGNALING_MAX_SCREENSHOT_BYTES: env.positiveInt(8 * 1024 * 1024),
  SIGNALING_ATTACHMENT_URL_SECONDS: env.positiveInt(300),
  /** WebAuthn relying party: the domain end users' pages are served from, and the exact origins (comma-separated). */
  SIGNALING_WEBAUTHN_RP_ID: env.string('localhost'),
  SIGNALING_WEBAUTHN_ORIGINS: z.string().optional(),
  ...tenantKeysShape,
  ...grpcTlsShape,
  ...turnShape,
  SIGNALING_PUBLIC_DIR: env.string(`${repoRoot}services/signaling/public`),
  SIGNALING_SDK_BUNDLE: env.string(`${repoRoot}packages/sdk/dist/sdk.js`),
  /** Each SDK version's bundle, <version>/gateway.min.js, served immutable at /sdk/<version>/ (docs/sdk.md). */
  SIGNALING_SDK_VERSIONS_DIR: env.string(`${repoRoot}packages/sdk/dist/cdn`),
};

export type SignalingConfig = ReturnType<typeof readSignalingConfig>;

export function readSignalingConfig(source: Record<string, string | undefined> = process.env) {
  const c = loadConfig(shape, source);
  // Every tenant's sessions, chat and uploads are sealed with its key: a tenant without one could
  // not record anyone who joins.
  const keyring = readKeyringSettings(c);
  const tenants = readTenantsSettings(c);
  const keyed = keyring.kind === 'static' ? keyring.tenants : keyring.aliases;
  const keyless = tenants.tenants.filter((t) => !keyed[t.name]).map((t) => t.name);
  const keysVariable = keyring.kind === 'static' ? 'GATEWAY_TENANT_KEYS' : 'GATEWAY_KMS_KEYS';
  if (keyless.length > 0) throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${keysVariable}: no key-encryption key for tenant ${keyless.join(', ')}`);
  return {
    nats: readNatsSettings(c, 'signaling'),
    logLevel: c.LOG_LEVEL,
    /** The tenants at start-up and their file: the server keeps them current (ConfiguredTenants). */
    tenants,
    host: c.SIGNALING_HOST,
    port: c.SIGNALING_PORT,
    opsPort: c.SIGNALING_OPS_PORT,
    replicaId: c.SIGNALING_REPLICA_ID,
    resumeWindowMs: c.SIGNALING_RESUME_WINDOW_SECONDS * 1000,
    maxFrameBytes: c.SIGNALING_MAX_FRAME_BYTES,
    /** Frames above this are cut by the WebSocket layer itself (close 1009). */
    hardFrameLimitBytes: Math.max(1024 * 1024, c.SIGNALING_MAX_FRAME_BYTES * 2),
    rateLimitPerSecond: c.SIGNALING_RATE_LIMIT_PER_SECOND,
    rateLimitBurst: c.SIGNALING_RATE_LIMIT_BURST,
    joinTimeoutMs: c.SIGNALING_JOIN_TIMEOUT_SECONDS * 1000,
    pingIntervalMs: c.SIGNALING_PING_INTERVAL_SECONDS * 1000,
    grpcTls: readGrpcTls(c),
    turn: readTurnSettings(c),
    heartbeatMs: c.SIGNALING_HEARTBEAT_SECONDS * 1000,
    sessionFinishStaleMs: c.SIGNALING_SESSION_FINISH_STALE_SECONDS * 1000,
    chat: {
      maxChars: c.SIGNALING_CHAT_MAX_CHARS,
      ratePerSecond: c.SIGNALING_CHAT_RATE_PER_SECOND,
      rateBurst: c.SIGNALING_CHAT_RATE_BURST,
      historyLimit: c.SIGNALING_CHAT_HISTORY_LIMIT,
    },
    data: { ratePerSecond: c.SIGNALING_DATA_RATE_PER_SECOND, rateBurst: c.SIGNALING_DATA_RATE_BURST },
    keyring,
    limits: {
      sessionsPerToken: c.SIGNALING_SESSIONS_PER_TOKEN,
      maxSessionMs: c.SIGNALING_MAX_SESSION_SECONDS * 1000,
      participantsPerRoom: c.SIGNALING_MAX_PARTICIPANTS_PER_ROOM,
      roomsPerTenant: c.SIGNALING_MAX_ROOMS_PER_TENANT,
      transportsPerParticipant: c.SIGNALING_MAX_TRANSPORTS_PER_PARTICIPANT,
      producersPerParticipant: c.SIGNALING_MAX_PRODUCERS_PER_PARTICIPANT,
      consumersPerParticipant: c.SIGNALING_MAX_CONSUMERS_PER_PARTICIPANT,
      concurrentUploads: c.SIGNALING_MAX_CONCURRENT_UPLOADS,
    },
    smartActions: {
      maxUploadBytes: { photo: c.SIGNALING_MAX_PHOTO_BYTES, screenshot: c.SIGNALING_MAX_SCREENSHOT_BYTES },
      urlTtlSeconds: c.SIGNALING_ATTACHMENT_URL_SECONDS,
    },
    webauthn: {
      rpId: c.SIGNALING_WEBAUTHN_RP_ID,
      /** Unset: the server's own port on localhost. */
      origins: c.SIGNALING_WEBAUTHN_ORIGINS?.split(',')
        .map((o) => o.trim())
        .filter(Boolean),
    },
    publicDir: c.SIGNALING_PUBLIC_DIR,
    sdkBundle: c.SIGNALING_SDK_BUNDLE,
    sdkVersionsDir: c.SIGNALING_SDK_VERSIONS_DIR,
  };
}

/** Tenants only, for tools (the token CLI) that need nothing else: the variable or the file. */
export function readTenants(source: Record<string, string | undefined> = process.env): readonly Tenant[] {
  return readTenantsSettings(loadConfig(tenantsShape, source)).tenants;
}
