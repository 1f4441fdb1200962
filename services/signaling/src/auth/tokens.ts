import { createHash, randomUUID } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify, decodeJwt } from 'jose';
import { z } from 'zod';
import { ErrorCode, GatewayError, normalizePhoneNumber, participantMetadata, participantName, schemas, TenantAuth, type TenantCredentials } from '@gateway/common';
import type { Tenant } from '../config.js';

export const roles = ['agent', 'end_user', 'supervisor'] as const;
export type Role = (typeof roles)[number];
/**
 * Who else sees a participant and receives its media, when not everyone (participant/visibility.ts):
 * a supervisor whispering ('agents') or monitoring ('supervisors'). Only supervisors are hidden.
 */
export const visibilities = ['agents', 'supervisors'] as const;
export type Visibility = '' | (typeof visibilities)[number];
export const publishableSources = ['camera', 'microphone', 'screen'] as const;
export type GrantedSource = (typeof publishableSources)[number];

const grantsSchema = z.object({
  canPublish: z.boolean(),
  canSubscribe: z.boolean(),
  sources: z.array(z.enum(publishableSources)),
  /** Start, pause, resume and stop the room's recording; only ever granted to agents. */
  canRecord: z.boolean().default(false),
  /** Change its own name and metadata (updateParticipant). */
  canUpdateMetadata: z.boolean().default(false),
});
export type Grants = z.infer<typeof grantsSchema>;

/** What the customer's app says about the participant, for the CRM record of the session. */
const contactSchema = z.object({
  /** The contact's id in the customer's CRM, when the app knows it. */
  crmContactId: z.string().min(1).max(64).optional(),
  /** E.164; kept sealed and only until the CRM has the session. */
  phoneNumber: z
    .string()
    .regex(/^\+[1-9]\d{6,14}$/, 'phoneNumber must be E.164')
    .optional(),
  /** Device identifiers (app install id, push token), as given. */
  deviceIds: z.array(z.string().min(1).max(256)).max(5).optional(),
});
export type ContactClaims = z.infer<typeof contactSchema>;

/** What every token of ours says of itself: who signed it for whom, until when, and its own id. */
const tokenClaims = {
  iss: z.string().min(1),
  sub: schemas.text(256, { min: 1 }),
  exp: z.number(),
  /** The token's own id: a token may hold only so many live sessions (one by default). */
  jti: z
    .string()
    .min(8)
    .max(128)
    .regex(/^[\x21-\x7e]+$/, 'jti must be printable ASCII'),
  tenant: schemas.subjectToken(),
};

const claimsSchema = z
  .object({
    ...tokenClaims,
    room: schemas.room(),
    role: z.enum(roles),
    grants: grantsSchema,
    contact: contactSchema.optional(),
    /** The participant's name on screen and the app's metadata about them, shown to the room. */
    name: participantName.optional(),
    metadata: participantMetadata.optional(),
    /** A pre-call check (the SDK's preflight): a room of its own, no contact record (see preflightGrant). */
    preflight: z.boolean().optional(),
    visibleTo: z.enum(visibilities).optional(),
  })
  .refine((c) => c.visibleTo === undefined || c.role === 'supervisor', { message: 'only supervisors may be hidden', path: ['visibleTo'] });

/** What a verified join token grants. */
export interface JoinGrant {
  tenant: string;
  room: string;
  identity: string;
  role: Role;
  grants: Grants;
  /** Name on screen and app metadata ('' when the token has none). */
  name: string;
  metadata: string;
  /** Unix seconds. */
  expiresAt: number;
  contact: ContactClaims;
  /** A hash of the token's jti: its live sessions are counted under it. */
  tokenId: string;
  /** A pre-call check: see preflightGrant. */
  preflight: boolean;
  /** Who sees the participant: '' everyone (see Visibility). */
  visibleTo: Visibility;
}

/** Rooms of pre-call checks: `preflight_<participant id>`, one participant each. */
const PREFLIGHT_ROOM_PREFIX = 'preflight_';

export function isPreflightRoom(room: string): boolean {
  return room.startsWith(PREFLIGHT_ROOM_PREFIX);
}

/**
 * What a pre-call check's token grants once it joins: a room of its own whatever room the token
 * names (nobody sees it, it sees nobody), publishing the camera and microphone only, receiving
 * nothing, no recording, and no contact details: it never joins the room's CRM session, so it
 * makes no session.ended and no contact record.
 */
export function preflightGrant(grant: JoinGrant, participantId: string): JoinGrant {
  return {
    ...grant,
    room: `${PREFLIGHT_ROOM_PREFIX}${participantId}`,
    grants: { canPublish: true, canSubscribe: false, sources: ['camera', 'microphone'], canRecord: false, canUpdateMetadata: false },
    contact: {},
  };
}

/** The id a token's sessions are counted under: a hash, so the jti itself is never stored. */
export function tokenIdOf(tenant: string, jti: string): string {
  return createHash('sha256').update(`${tenant}\u0000${jti}`).digest('base64url').slice(0, 32);
}

export interface MintRequest {
  room: string;
  identity: string;
  role: Role;
  ttlSeconds?: number;
  canPublish?: boolean;
  canSubscribe?: boolean;
  sources?: GrantedSource[];
  canRecord?: boolean;
  /** May change its own name and metadata during the call. */
  canUpdateMetadata?: boolean;
  /** Shown to the others ("Ann, Support"). */
  name?: string;
  /** The app's own data about the participant (often JSON), at most 4 KiB; shown to the others. */
  metadata?: string;
  crmContactId?: string;
  /** A pre-call check's token (the SDK's preflight): see preflightGrant. */
  preflight?: boolean;
  /** Any common notation; stored as E.164. */
  phoneNumber?: string;
  deviceIds?: string[];
  /** A supervisor seen only by agents and supervisors (whispering) or by supervisors only (monitoring). */
  visibleTo?: Exclude<Visibility, ''>;
}

export const mintRequestSchema = z
  .object({
    room: schemas.room(),
    identity: schemas.text(256, { min: 1 }),
    role: z.enum(roles),
    ttlSeconds: z
      .number()
      .int()
      .positive()
      .max(7 * 24 * 3600)
      .optional(),
    canPublish: z.boolean().optional(),
    canSubscribe: z.boolean().optional(),
    sources: z.array(z.enum(publishableSources)).optional(),
    canRecord: z.boolean().optional(),
    canUpdateMetadata: z.boolean().optional(),
    name: participantName.optional(),
    metadata: participantMetadata.optional(),
    crmContactId: z.string().min(1).max(64).optional(),
    phoneNumber: z.string().min(3).max(32).optional(),
    deviceIds: z.array(z.string().min(1).max(256)).max(5).optional(),
    preflight: z.boolean().optional(),
    visibleTo: z.enum(visibilities).optional(),
  })
  .refine((r) => !r.canRecord || r.role === 'agent', { message: 'only agents may be granted canRecord', path: ['canRecord'] })
  .refine((r) => r.visibleTo === undefined || r.role === 'supervisor', { message: 'only supervisors may be hidden', path: ['visibleTo'] });

const DEFAULT_TTL_SECONDS = 6 * 3600;
/** How far past its `exp` (or before its `nbf`) a join token is still taken: clocks differ. */
export const CLOCK_TOLERANCE_SECONDS = 30;

const secretKey = (tenant: Tenant) => new TextEncoder().encode(tenant.apiSecret);
const isCredentials = (tenants: TenantCredentials | readonly Tenant[]): tenants is TenantCredentials => !Array.isArray(tenants);

/** Signs a join token with the tenant's secret (HS256), the way a customer's backend would. */
export async function mintJoinToken(tenant: Tenant, request: MintRequest): Promise<{ token: string; expiresAt: number }> {
  const valid = mintRequestSchema.parse(request);
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = now + (valid.ttlSeconds ?? DEFAULT_TTL_SECONDS);
  const grants: Grants = {
    canPublish: valid.canPublish ?? true,
    canSubscribe: valid.canSubscribe ?? true,
    sources: valid.sources ?? [...publishableSources],
    canRecord: valid.canRecord ?? false,
    canUpdateMetadata: valid.canUpdateMetadata ?? false,
  };
  const phoneNumber = valid.phoneNumber === undefined ? undefined : normalizePhoneNumber(valid.phoneNumber, tenant.redaction?.defaultCountry);
  if (valid.phoneNumber !== undefined && !phoneNumber) throw new GatewayError(ErrorCode.BAD_REQUEST, 'phoneNumber is not a valid phone number');
  const contact = { crmContactId: valid.crmContactId, phoneNumber, deviceIds: valid.deviceIds };
  const hasContact = Object.values(contact).some((v) => v !== undefined);
  const shown = { ...(valid.name ? { name: valid.name } : {}), ...(valid.metadata ? { metadata: valid.metadata } : {}) };
  const token = await new SignJWT({
    tenant: tenant.name,
    room: valid.room,
    role: valid.role,
    grants,
    ...shown,
    ...(hasContact ? { contact } : {}),
    ...(valid.preflight ? { preflight: true } : {}),
    ...(valid.visibleTo ? { visibleTo: valid.visibleTo } : {}),
  })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(tenant.apiKey)
    .setSubject(valid.identity)
    .setIssuedAt(now)
    .setJti(randomUUID())
    .setNotBefore(now - 1)
    .setExpirationTime(expiresAt)
    .sign(secretKey(tenant));
  return { token, expiresAt };
}

/** Secrets kept as imported keys at most; past it the cache starts again (rotations leave old ones behind). */
const MAX_VERIFICATION_KEYS = 1_000;
const verificationKeys = new Map<string, Promise<CryptoKey>>();

/**
 * The HMAC key of an API key's secret, imported once: importing it is a good part of verifying
 * a token, and every join verifies one. The keys are cached, never the tokens or their outcome.
 */
function verificationKey(secret: string): Promise<CryptoKey> {
  let key = verificationKeys.get(secret);
  if (!key) {
    if (verificationKeys.size >= MAX_VERIFICATION_KEYS) verificationKeys.clear();
    key = crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
    verificationKeys.set(secret, key);
    // A failed import is not kept.
    key.catch(() => verificationKeys.delete(secret));
  }
  return key;
}

/**
 * A token's signature, issuer and validity checked: the tenant whose key signed it, and its claims
 * still to be checked. The issuer names one of the tenant's API keys; during a rotation's overlap
 * the secret before the current one signs too.
 */
async function verifySigned(tenants: TenantCredentials | readonly Tenant[], token: string | undefined, kind: string): Promise<{ tenant: Tenant; payload: unknown }> {
  if (!token) throw new GatewayError(ErrorCode.UNAUTHENTICATED, `a ${kind} is required`);
  let issuer: string | undefined;
  try {
    issuer = decodeJwt(token).iss;
  } catch (error) {
    throw new GatewayError(ErrorCode.UNAUTHENTICATED, `the ${kind} is not a JWT`, { cause: error });
  }
  const credentials = isCredentials(tenants) ? tenants : TenantAuth.configured(tenants);
  const signer = issuer ? await credentials.signingSecrets(issuer) : undefined;
  if (!signer) throw new GatewayError(ErrorCode.UNAUTHENTICATED, `the ${kind} was issued by an unknown API key`);
  const { tenant } = signer;
  for (const [i, secret] of signer.secrets.entries()) {
    try {
      const { payload } = await jwtVerify(token, await verificationKey(secret), {
        algorithms: ['HS256'],
        issuer: tenant.apiKey,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'sub', 'jti'],
      });
      return { tenant, payload };
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new GatewayError(ErrorCode.TOKEN_EXPIRED, `the ${kind} has expired`, { cause: error });
      // A signature that does not match this secret may match the one before a rotation.
      if (error instanceof joseErrors.JWSSignatureVerificationFailed && i < signer.secrets.length - 1) continue;
      throw new GatewayError(ErrorCode.UNAUTHENTICATED, `the ${kind} is invalid`, { cause: error });
    }
  }
  throw new GatewayError(ErrorCode.UNAUTHENTICATED, `the ${kind} is invalid`);
}

/**
 * Verifies a join token: the issuer names one of the tenant's API keys (of GATEWAY_TENANTS, or
 * kept in NATS: `tenants` says which), whose secret must have signed it (during a rotation's
 * overlap, the secret before it too); it must be within its validity; it may only claim that
 * same tenant.
 */
export async function verifyJoinToken(tenants: TenantCredentials | readonly Tenant[], token: string | undefined): Promise<JoinGrant> {
  const { tenant, payload } = await verifySigned(tenants, token, 'join token');
  const claims = claimsSchema.safeParse(payload);
  if (!claims.success) {
    throw new GatewayError(ErrorCode.UNAUTHENTICATED, `the join token's claims are invalid: ${claims.error.issues[0]?.path.join('.')}`);
  }
  if (claims.data.tenant !== tenant.name) {
    throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the join token claims a tenant its key does not belong to');
  }
  return {
    tenant: tenant.name,
    room: claims.data.room,
    identity: claims.data.sub,
    role: claims.data.role,
    grants: claims.data.grants,
    name: claims.data.name ?? '',
    metadata: claims.data.metadata ?? '',
    expiresAt: claims.data.exp,
    contact: claims.data.contact ?? {},
    tokenId: tokenIdOf(tenant.name, claims.data.jti),
    preflight: claims.data.preflight ?? false,
    visibleTo: claims.data.visibleTo ?? '',
  };
}

/** Who a desk token is (docs/routing.md): an end user asking for support, an agent, a supervisor. */
export const deskRoles = ['end_user', 'agent', 'supervisor'] as const;
export type DeskRole = (typeof deskRoles)[number];

/**
 * A desk token's claims: like a join token's, without a room (routing gives one when an agent
 * accepts), with `desk.role` instead of `role` so that neither kind of token is taken for the
 * other.
 */
const deskClaimsSchema = z.object({
  ...tokenClaims,
  desk: z.object({ role: z.enum(deskRoles) }),
  contact: contactSchema.optional(),
  name: participantName.optional(),
});

export interface DeskGrant {
  tenant: string;
  /** The tenant with the credentials that signed the token: join tokens for its rooms are signed alike. */
  signer: Tenant;
  identity: string;
  role: DeskRole;
  name: string;
  contact: ContactClaims;
  expiresAt: number;
}

export const mintDeskRequestSchema = z.object({
  identity: schemas.text(256, { min: 1 }),
  role: z.enum(deskRoles),
  ttlSeconds: z
    .number()
    .int()
    .positive()
    .max(7 * 24 * 3600)
    .optional(),
  name: participantName.optional(),
  crmContactId: z.string().min(1).max(64).optional(),
  phoneNumber: z.string().min(3).max(32).optional(),
  deviceIds: z.array(z.string().min(1).max(256)).max(5).optional(),
});
export type MintDeskRequest = z.input<typeof mintDeskRequestSchema>;

/** Signs a desk token with the tenant's secret (HS256), as the customer's backend does for its apps. */
export async function mintDeskToken(tenant: Tenant, request: MintDeskRequest): Promise<{ token: string; expiresAt: number }> {
  const valid = mintDeskRequestSchema.parse(request);
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = now + (valid.ttlSeconds ?? DEFAULT_TTL_SECONDS);
  const phoneNumber = valid.phoneNumber === undefined ? undefined : normalizePhoneNumber(valid.phoneNumber, tenant.redaction?.defaultCountry);
  if (valid.phoneNumber !== undefined && !phoneNumber) throw new GatewayError(ErrorCode.BAD_REQUEST, 'phoneNumber is not a valid phone number');
  const contact = { crmContactId: valid.crmContactId, phoneNumber, deviceIds: valid.deviceIds };
  const hasContact = Object.values(contact).some((v) => v !== undefined);
  const token = await new SignJWT({ tenant: tenant.name, desk: { role: valid.role }, ...(valid.name ? { name: valid.name } : {}), ...(hasContact ? { contact } : {}) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(tenant.apiKey)
    .setSubject(valid.identity)
    .setIssuedAt(now)
    .setJti(randomUUID())
    .setNotBefore(now - 1)
    .setExpirationTime(expiresAt)
    .sign(secretKey(tenant));
  return { token, expiresAt };
}

/** Verifies a desk token as verifyJoinToken does a join token; a join token is refused here. */
export async function verifyDeskToken(tenants: TenantCredentials | readonly Tenant[], token: string | undefined): Promise<DeskGrant> {
  const { tenant, payload } = await verifySigned(tenants, token, 'desk token');
  const claims = deskClaimsSchema.safeParse(payload);
  if (!claims.success) throw new GatewayError(ErrorCode.UNAUTHENTICATED, `the desk token's claims are invalid: ${claims.error.issues[0]?.path.join('.')}`);
  if (claims.data.tenant !== tenant.name) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the desk token claims a tenant its key does not belong to');
  return { tenant: tenant.name, signer: tenant, identity: claims.data.sub, role: claims.data.desk.role, name: claims.data.name ?? '', contact: claims.data.contact ?? {}, expiresAt: claims.data.exp };
}
