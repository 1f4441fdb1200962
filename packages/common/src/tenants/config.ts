import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { redactionKinds } from '../data/redaction.js';
import { SUBJECT_TOKEN } from '../nats/subjects.js';
import { fromVariableOrFile, type Parsed, parsedWith, type SecretFile } from '../runtime/secretFile.js';

// Tenants as configured (GATEWAY_TENANTS or GATEWAY_TENANTS_FILE): their policies and their bootstrap API credentials.
// More credentials of a configured tenant are kept in NATS (apiKeys.ts); TenantAuth.ts checks both.

/** Well-known secret of the built-in `demo` tenant; only for running on one machine. */
export const DEMO_TENANT = { name: 'demo', apiKey: 'demo', apiSecret: 'demo-secret-for-local-development-only' } as const;

const tenantSchema = z.object({
  name: z.string().regex(SUBJECT_TOKEN, 'tenant name must be letters, digits, _ or - (1-64)'),
  apiKey: z.string().min(1),
  apiSecret: z.string().min(32, 'apiSecret must be at least 32 characters'),
  /** The tenant's recording policy. */
  recording: z
    .object({
      /** Start recording a room when an agent joins it. */
      onAgentJoin: z.boolean().default(false),
      /** Also produce MP4 (H.264/AAC) of each video. */
      mp4: z.boolean().default(false),
      /** Cut PCI pauses out of the voice instead of keeping them as silence. */
      skipPausedAudio: z.boolean().default(false),
    })
    .optional(),
  /** Days crm-sync keeps trying a communication before deleting it undelivered (default: CRM_SYNC_RETENTION_DAYS). */
  retentionDays: z.number().positive().max(365).optional(),
  /** The tenant's limits; each falls back to the deployment's default (SIGNALING_MAX_* and the like). */
  limits: z
    .object({
      /** Live sessions one join token may hold at once (a token carries a jti). */
      sessionsPerToken: z.number().int().min(1).max(100).optional(),
      /** A session older than this cannot be resumed: the client joins again with a fresh token. */
      maxSessionSeconds: z
        .number()
        .int()
        .min(60)
        .max(7 * 24 * 3600)
        .optional(),
      /** Participants in one room. */
      participantsPerRoom: z.number().int().min(2).max(1_000).optional(),
      /** Rooms with participants at once. */
      rooms: z.number().int().min(1).max(1_000_000).optional(),
    })
    .optional(),
  /** What chat redaction replaces before a message is stored or shown; every kind by default. */
  redaction: z
    .object({
      kinds: z.array(z.enum(redactionKinds)),
      /** Country of phone numbers written without +prefix (ISO 3166 alpha-2). */
      defaultCountry: z.string().length(2).default('US'),
    })
    .optional(),
});

export type Tenant = z.infer<typeof tenantSchema>;

const TENANTS_SHAPE = 'must be a JSON array of {name, apiKey, apiSecret}';

/**
 * Tenants (`GATEWAY_TENANTS` or its file) read strictly: the problem, or the tenants. Problems
 * name the field and the rule broken, never a value (JSON.parse's own message would quote the text).
 */
export function parseTenants(raw: string): Parsed<Tenant[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { ok: false, problem: TENANTS_SHAPE };
  }
  const result = z.array(tenantSchema).min(1).safeParse(parsed);
  if (!result.success) return { ok: false, problem: result.error.issues.map((i) => `[${i.path.join('.')}] ${i.message}`).join('; ') };
  if (new Set(result.data.map((t) => t.apiKey)).size !== result.data.length) return { ok: false, problem: 'apiKey values must be unique' };
  return { ok: true, value: result.data };
}

/** `GATEWAY_TENANTS` as a variable: the tenants, or undefined when it is not set. */
export const tenantsSchema = z.string().optional().transform(parsedWith(parseTenants));

/**
 * The tenants, for a service's config shape: `GATEWAY_TENANTS_FILE` (a mounted Secret, taken up
 * again when it changes: the way for a cluster) or `GATEWAY_TENANTS` (the same JSON in the
 * variable, for one machine; removed from the environment once read), never both. Neither: the
 * built-in `demo` tenant (`make up`).
 */
export const tenantsShape = {
  GATEWAY_TENANTS_FILE: z.string().min(1).optional(),
  GATEWAY_TENANTS: tenantsSchema,
};

/** The tenants a service starts with, and the file to watch for new ones. */
export interface TenantsSettings {
  tenants: readonly Tenant[];
  file?: SecretFile;
  /** Neither the variable nor the file was given: the built-in `demo` tenant only. */
  demo: boolean;
}

/** The tenants from a loaded config; a file that cannot be read or does not parse stops the service. */
export function readTenantsSettings(c: { GATEWAY_TENANTS_FILE?: string | undefined; GATEWAY_TENANTS?: Tenant[] | undefined }): TenantsSettings {
  const read = fromVariableOrFile('GATEWAY_TENANTS', c.GATEWAY_TENANTS, c.GATEWAY_TENANTS_FILE, parseTenants);
  if (!read) return { tenants: [DEMO_TENANT], demo: true };
  return { tenants: read.value, demo: false, ...(read.file ? { file: read.file } : {}) };
}

/** The apiKey and apiSecret an HTTP Basic header carries; undefined when it carries none. */
export function parseBasicAuth(header: string | undefined): { apiKey: string; apiSecret: string } | undefined {
  if (!header?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { apiKey: decoded.slice(0, colon), apiSecret: decoded.slice(colon + 1) };
}

/**
 * The configured tenant whose apiKey:apiSecret an HTTP Basic header carries (compared in
 * constant time). Only GATEWAY_TENANTS: services authenticate through TenantAuth, which adds the
 * API keys kept in NATS.
 */
export function tenantFromBasicAuth(tenants: readonly Tenant[], header: string | undefined): Tenant | undefined {
  const credentials = parseBasicAuth(header);
  if (!credentials) return undefined;
  const tenant = tenants.find((t) => t.apiKey === credentials.apiKey);
  if (!tenant) return undefined;
  const secret = Buffer.from(credentials.apiSecret);
  const expected = Buffer.from(tenant.apiSecret);
  return secret.length === expected.length && timingSafeEqual(secret, expected) ? tenant : undefined;
}
