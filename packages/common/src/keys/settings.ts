import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { SUBJECT_TOKEN } from '../nats/subjects.js';
import { fromVariableOrFile, type Parsed, parsedWith, type SecretFile } from '../runtime/secretFile.js';

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

const STATIC_KEYS_SHAPE = 'must be a JSON object of tenant -> base64 32-byte key, or tenant -> {"current": id, "keys": {id: base64 32-byte key}}';

/**
 * Tenants' static keys (`GATEWAY_TENANT_KEYS` or its file) read strictly: the problem, or the
 * keys. Problems name tenants, never keys (JSON.parse's own message would quote the text).
 */
export function parseStaticKeys(raw: string): Parsed<Record<string, StaticTenantKeys>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { ok: false, problem: STATIC_KEYS_SHAPE };
  }
  const result = z.record(z.string().regex(SUBJECT_TOKEN), staticTenantSchema).safeParse(parsed);
  if (!result.success) return { ok: false, problem: STATIC_KEYS_SHAPE };
  const bad = Object.entries(result.data)
    .filter(([, t]) => !(t.current in t.keys) || Object.values(t.keys).some((k) => !is32Bytes(k)))
    .map(([tenant]) => tenant);
  if (bad.length > 0) return { ok: false, problem: `every key must be base64 of 32 bytes and "current" one of the tenant's keys (not: ${bad.join(', ')})` };
  return { ok: true, value: result.data };
}

const KMS_ALIASES_SHAPE = 'must be a JSON object of tenant -> KMS alias ("alias/..." or an alias ARN)';

/** Tenants' KMS aliases (`GATEWAY_KMS_KEYS` or its file) read strictly. */
export function parseKmsAliases(raw: string): Parsed<Record<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { ok: false, problem: KMS_ALIASES_SHAPE };
  }
  const result = z.record(z.string().regex(SUBJECT_TOKEN), z.string().regex(KMS_ALIAS)).safeParse(parsed);
  if (!result.success || Object.keys(result.data).length === 0) return { ok: false, problem: KMS_ALIASES_SHAPE };
  return { ok: true, value: result.data };
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
  /**
   * The static keys in a file (a mounted Secret), taken up again when it changes: the way for a
   * cluster. `GATEWAY_TENANT_KEYS` (the same JSON in the variable) is for one machine, and is
   * removed from the environment once read.
   */
  GATEWAY_TENANT_KEYS_FILE: z.string().min(1).optional(),
  GATEWAY_TENANT_KEYS: z.string().optional().transform(parsedWith(parseStaticKeys)),
  /** The tenants' KMS aliases in a file, taken up again when it changes; or `GATEWAY_KMS_KEYS`. */
  GATEWAY_KMS_KEYS_FILE: z.string().min(1).optional(),
  GATEWAY_KMS_KEYS: z.string().optional().transform(parsedWith(parseKmsAliases)),
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
  | { kind: 'static'; tenants: Record<string, StaticTenantKeys>; file?: SecretFile }
  | { kind: 'kms'; aliases: Record<string, string>; region: string; endpoint?: string; cacheTtlMs: number; cacheEntries: number; maxAttempts: number; file?: SecretFile };

type TenantKeysValues = z.output<z.ZodObject<typeof tenantKeysShape>>;

const invalid = (problem: string, cause?: unknown) => new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${problem}`, cause === undefined ? {} : { cause });

/** The keyring settings from a loaded config; KMS without its tenants or its region stops the service. */
export function readKeyringSettings(c: TenantKeysValues): KeyringSettings {
  if (c.GATEWAY_KEYRING === 'static') {
    const read = fromVariableOrFile('GATEWAY_TENANT_KEYS', c.GATEWAY_TENANT_KEYS, c.GATEWAY_TENANT_KEYS_FILE, parseStaticKeys);
    if (!read) return { kind: 'static', tenants: { demo: { current: DEFAULT_STATIC_KEY_ID, keys: { [DEFAULT_STATIC_KEY_ID]: DEMO_TENANT_KEK } } } };
    return { kind: 'static', tenants: read.value, ...(read.file ? { file: read.file } : {}) };
  }
  const aliases = fromVariableOrFile('GATEWAY_KMS_KEYS', c.GATEWAY_KMS_KEYS, c.GATEWAY_KMS_KEYS_FILE, parseKmsAliases);
  const missing = [!aliases && 'GATEWAY_KMS_KEYS (or GATEWAY_KMS_KEYS_FILE)', !c.GATEWAY_KMS_REGION && 'GATEWAY_KMS_REGION'].filter(Boolean);
  if (missing.length > 0) throw invalid(`GATEWAY_KEYRING=kms needs ${missing.join(' and ')}`);
  return {
    kind: 'kms',
    aliases: aliases!.value,
    region: c.GATEWAY_KMS_REGION!,
    ...(c.GATEWAY_KMS_ENDPOINT ? { endpoint: c.GATEWAY_KMS_ENDPOINT } : {}),
    cacheTtlMs: c.GATEWAY_KMS_CACHE_SECONDS * 1000,
    cacheEntries: c.GATEWAY_KMS_CACHE_ENTRIES,
    maxAttempts: c.GATEWAY_KMS_MAX_ATTEMPTS,
    ...(aliases!.file ? { file: aliases!.file } : {}),
  };
}
