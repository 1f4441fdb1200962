import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';

/** A tenant's API credentials, as the platform's operator gave them. */
export interface Credentials {
  /** The tenant's name (its rooms, keys and data are kept under it). */
  tenant: string;
  apiKey: string;
  /** At least 32 characters; never leaves your backend. */
  apiSecret: string;
}

export type Role = 'agent' | 'end_user';
export type TrackSource = 'camera' | 'microphone' | 'screen';

/** What a join token lets its holder do and say about themselves. */
export interface JoinTokenOptions {
  /** The room to join: 1-64 of letters, digits, `_` and `-`. */
  room: string;
  /** Your own id of the person (the customer's external identifier), 1-256 characters. */
  identity: string;
  role: Role;
  /** Seconds until the token expires (default 6 hours, at most 7 days). Keep it short: the SDK asks for a fresh one when it must join again. */
  ttlSeconds?: number;
  /** Publish media (default true). */
  canPublish?: boolean;
  /** Receive the others' media (default true). */
  canSubscribe?: boolean;
  /** Which sources may be published (default all three). */
  sources?: TrackSource[];
  /** Start, pause and stop the room's recording; agents only. */
  canRecord?: boolean;
  /** Change their own name and metadata during the call. */
  canUpdateMetadata?: boolean;
  /** Shown to the others, one line of at most 128 characters. */
  name?: string;
  /** Your app's data about them (often JSON), at most 4 KiB; shown to the others. */
  metadata?: string;
  /** The person's id in your CRM, when you know it. */
  crmContactId?: string;
  /** E.164 (`+15551234567`); kept sealed and only until your CRM has the session. */
  phoneNumber?: string;
  /** Device identifiers (app install id, push token), at most 5. */
  deviceIds?: string[];
  /**
   * A token for the browser SDK's pre-call check (`Gateway.preflight`): it joins a room of its
   * own, whatever `room` says, may publish camera and microphone only, receives nothing and
   * leaves no contact record.
   */
  preflight?: boolean;
}

export interface JoinToken {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
}

const ROOM = /^[A-Za-z0-9_-]{1,64}$/;
const E164 = /^\+[1-9]\d{6,14}$/;
const DEFAULT_TTL_SECONDS = 6 * 3600;
const MAX_TTL_SECONDS = 7 * 24 * 3600;

function fail(message: string): never {
  throw new TypeError(message);
}

/**
 * Mints a join token locally: an HS256 JWT signed with the tenant's secret, exactly what
 * `POST /v1/tokens` returns, with no network call. Options are checked here as the server
 * checks them, so a mistake fails at once rather than at the join.
 */
export async function mintJoinToken(credentials: Credentials, options: JoinTokenOptions): Promise<JoinToken> {
  if (credentials.apiSecret.length < 32) fail('apiSecret must be at least 32 characters');
  if (!ROOM.test(credentials.tenant)) fail('tenant must be 1-64 letters, digits, _ or -');
  if (!ROOM.test(options.room)) fail('room must be 1-64 letters, digits, _ or -');
  if (options.identity.length < 1 || options.identity.length > 256) fail('identity must be 1-256 characters');
  if (options.role !== 'agent' && options.role !== 'end_user') fail('role must be agent or end_user');
  const ttl = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl <= 0 || ttl > MAX_TTL_SECONDS) fail(`ttlSeconds must be a whole number of seconds, 1-${MAX_TTL_SECONDS}`);
  if (options.canRecord && options.role !== 'agent') fail('only agents may be granted canRecord');
  if (options.name !== undefined && (options.name.length > 128 || /[\r\n]/.test(options.name))) fail('name must be one line of at most 128 characters');
  if (options.metadata !== undefined && Buffer.byteLength(options.metadata, 'utf8') > 4096) fail('metadata must be at most 4 KiB of UTF-8');
  if (options.phoneNumber !== undefined && !E164.test(options.phoneNumber)) fail('phoneNumber must be E.164 (+ and 7-15 digits)');
  if (options.crmContactId !== undefined && (options.crmContactId.length < 1 || options.crmContactId.length > 64)) fail('crmContactId must be 1-64 characters');
  if (options.deviceIds !== undefined && (options.deviceIds.length > 5 || options.deviceIds.some((id) => id.length < 1 || id.length > 256))) fail('deviceIds: at most 5, each 1-256 characters');
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = now + ttl;
  const grants = {
    canPublish: options.canPublish ?? true,
    canSubscribe: options.canSubscribe ?? true,
    sources: options.sources ?? ['camera', 'microphone', 'screen'],
    canRecord: options.canRecord ?? false,
    canUpdateMetadata: options.canUpdateMetadata ?? false,
  };
  const contact = { crmContactId: options.crmContactId, phoneNumber: options.phoneNumber, deviceIds: options.deviceIds };
  const hasContact = Object.values(contact).some((value) => value !== undefined);
  const shown = { ...(options.name ? { name: options.name } : {}), ...(options.metadata ? { metadata: options.metadata } : {}) };
  const token = await new SignJWT({
    tenant: credentials.tenant,
    room: options.room,
    role: options.role,
    grants,
    ...shown,
    ...(hasContact ? { contact } : {}),
    ...(options.preflight ? { preflight: true } : {}),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(credentials.apiKey)
    .setSubject(options.identity)
    .setIssuedAt(now)
    .setJti(randomUUID())
    .setNotBefore(now - 1)
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(credentials.apiSecret));
  return { token, expiresAt };
}
