import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { SUBJECT_TOKEN } from '../nats/subjects.js';

/** Well-known KEK of the built-in `demo` tenant; only for running on one machine. */
export const DEMO_TENANT_KEK = Buffer.from('gateway-demo-kek-local-only-0000').toString('base64');

/** A tenant's static KEKs: several during a rotation, `current` the one that wraps. */
export interface StaticTenantKeys {
  current: string;
  keys: Record<string, string>;
}

/** The id a key given as a plain string takes (its wrapped keys say `static:<tenant>`, as before ids existed). */
export const DEFAULT_STATIC_KEY_ID = 'default';
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const is32Bytes = (value: string) => /^[A-Za-z0-9+/]*={0,2}$/.test(value) && Buffer.from(value, 'base64').length === 32;

const staticTenantSchema = z.union([
  z.string().transform((key) => ({ current: DEFAULT_STATIC_KEY_ID, keys: { [DEFAULT_STATIC_KEY_ID]: key } })),
  z.object({ current: z.string().regex(KEY_ID), keys: z.record(z.string().regex(KEY_ID), z.string()) }).strict(),
]);

/** `GATEWAY_TENANT_KEYS` read strictly; problems name tenants, never keys. */
function parseStaticKeys(raw: string | undefined, ctx: z.RefinementCtx): Record<string, StaticTenantKeys> {
  if (raw === undefined) return { demo: { current: DEFAULT_STATIC_KEY_ID, keys: { [DEFAULT_STATIC_KEY_ID]: DEMO_TENANT_KEK } } };
  const shapeMessage = 'must be a JSON object of tenant -> base64 32-byte key, or tenant -> {"current": id, "keys": {id: base64 32-byte key}}';
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    ctx.addIssue({ code: 'custom', message: shapeMessage });
    return z.NEVER;
  }
  const result = z.record(z.string().regex(SUBJECT_TOKEN), staticTenantSchema).safeParse(parsed);
  if (!result.success) {
    ctx.addIssue({ code: 'custom', message: shapeMessage });
    return z.NEVER;
  }
  const bad = Object.entries(result.data)
    .filter(([, t]) => !(t.current in t.keys) || Object.values(t.keys).some((k) => !is32Bytes(k)))
    .map(([tenant]) => tenant);
  if (bad.length > 0) {
    ctx.addIssue({ code: 'custom', message: `every key must be base64 of 32 bytes and "current" one of the tenant's keys (not: ${bad.join(', ')})` });
    return z.NEVER;
  }
  return result.data;
}

const KMS_ALIAS = /^(alias\/[A-Za-z0-9/_-]{1,250}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias\/[A-Za-z0-9/_-]{1,250})$/;

/**
 * The keyring's configuration, for a service's config shape. `GATEWAY_KEYRING` picks it:
 * `static` (the default, `make up`) reads `GATEWAY_TENANT_KEYS`; `kms` reads `GATEWAY_KMS_KEYS`
 * (tenant -> alias of its KMS key: rotation points the alias at a new key) and talks to
 * `GATEWAY_KMS_REGION` (or `GATEWAY_KMS_ENDPOINT`) with the SDK's default credentials (IRSA).
 */
export const tenantKeysShape = {
  GATEWAY_KEYRING: z.enum(['static', 'kms']).default('static'),
  GATEWAY_TENANT_KEYS: z.string().optional().transform(parseStaticKeys),
  GATEWAY_KMS_KEYS: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return undefined;
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = undefined;
      }
      const result = z.record(z.string().regex(SUBJECT_TOKEN), z.string().regex(KMS_ALIAS)).safeParse(parsed);
      if (!result.success || Object.keys(result.data).length === 0) {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of tenant -> KMS alias ("alias/..." or an alias ARN)' });
        return z.NEVER;
      }
      return result.data;
    }),
  GATEWAY_KMS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1')
    .optional(),
  /** A KMS endpoint other than the region's (a VPC endpoint, the contract server in tests). */
  GATEWAY_KMS_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  /** How long an unwrapped data key stays in memory, and how many at most. */
  GATEWAY_KMS_CACHE_SECONDS: z.coerce.number().min(0).max(3600).default(300),
  GATEWAY_KMS_CACHE_ENTRIES: z.coerce.number().int().min(0).max(100_000).default(1000),
  /** Attempts per KMS call, the first included (throttling and KMS's 5xx are retried with backoff). */
  GATEWAY_KMS_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(5),
};

export type KeyringSettings =
  | { kind: 'static'; tenants: Record<string, StaticTenantKeys> }
  | { kind: 'kms'; aliases: Record<string, string>; region: string; endpoint?: string; cacheTtlMs: number; cacheEntries: number; maxAttempts: number };

type TenantKeysValues = z.output<z.ZodObject<typeof tenantKeysShape>>;

/** The keyring settings from a loaded config; KMS without its tenants or its region stops the service. */
export function readKeyringSettings(c: TenantKeysValues): KeyringSettings {
  if (c.GATEWAY_KEYRING === 'static') return { kind: 'static', tenants: c.GATEWAY_TENANT_KEYS };
  const missing = [!c.GATEWAY_KMS_KEYS && 'GATEWAY_KMS_KEYS', !c.GATEWAY_KMS_REGION && 'GATEWAY_KMS_REGION'].filter(Boolean);
  if (missing.length > 0) throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  GATEWAY_KEYRING=kms needs ${missing.join(' and ')}`);
  return {
    kind: 'kms',
    aliases: c.GATEWAY_KMS_KEYS!,
    region: c.GATEWAY_KMS_REGION!,
    ...(c.GATEWAY_KMS_ENDPOINT ? { endpoint: c.GATEWAY_KMS_ENDPOINT } : {}),
    cacheTtlMs: c.GATEWAY_KMS_CACHE_SECONDS * 1000,
    cacheEntries: c.GATEWAY_KMS_CACHE_ENTRIES,
    maxAttempts: c.GATEWAY_KMS_MAX_ATTEMPTS,
  };
}
