import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Counter, Gauge, type Registry } from 'prom-client';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { SUBJECT_TOKEN } from '../nats/subjects.js';
import { TypedEmitter } from '../runtime/TypedEmitter.js';

/**
 * Tenants' key-encryption keys (KEKs). Every data key of the platform (artifacts, chat, sealed
 * connector secrets and room sessions) is wrapped by its tenant's KEK; `WrappedKey.kekId` says
 * which KEK did, so a tenant can hold several during a rotation and each wrapped key opens with
 * the one that made it. Two implementations: `StaticKeyring` (keys in configuration, `make up`)
 * and `KmsKeyring` (AWS KMS, kmsKeyring.ts). `createKeyring` picks one from configuration: the
 * only place a service builds a keyring.
 */

/** Wraps and unwraps data keys with a tenant's KEK. */
export interface Keyring {
  /** Wraps under the tenant's current KEK. */
  wrap(tenant: string, dataKey: Buffer): Promise<WrappedKey>;
  /** Opens with the KEK `wrapped.kekId` names, which must be one of the tenant's. The caller may wipe the result. */
  unwrap(tenant: string, wrapped: WrappedKey): Promise<Buffer>;
  /** Drops whatever this process holds of the tenant's unwrapped keys (erasure, offboarding). */
  forget(tenant: string): void;
}

/** What a keyring tells its observers (metrics), apart from what it answers its callers. */
export type KeyringEvents = {
  /** One KMS call ended (after the SDK's retries): `outcome` is `ok` or the KMS error's name. */
  request: [operation: string, outcome: string];
};

/** What rotation and offboarding need beyond wrapping: both keyrings have it. */
export interface ManagedKeyring extends Keyring {
  readonly kind: 'static' | 'kms';
  readonly observer: TypedEmitter<KeyringEvents>;
  /** Unwrapped data keys held in memory now. */
  readonly cachedKeys: number;
  /** The id of the KEK new data keys are wrapped under now. */
  currentKekId(tenant: string): Promise<string>;
  /** The same data key wrapped under the tenant's current KEK (KMS: ReEncrypt, the plaintext never leaves KMS). */
  rewrap(tenant: string, wrapped: WrappedKey): Promise<WrappedKey>;
  /**
   * Makes a new KEK current for the tenant and returns the ids of the new and the previous one.
   * KMS: a new key, the tenant's alias pointed at it (every replica wraps under it from then on).
   * Static: the configuration names the current key; this only reports it.
   */
  rotate(tenant: string): Promise<{ current: string; previous: string[] }>;
  /** Ends KEKs nothing is wrapped under any more (KMS: DisableKey). Returns what was done to each. */
  retire(tenant: string, kekIds: readonly string[]): Promise<RetiredKey[]>;
  /** Destroys every KEK of the tenant this keyring can name (KMS: ScheduleKeyDeletion); anything left is unreadable. */
  destroy(tenant: string, kekIds: readonly string[]): Promise<RetiredKey[]>;
  /** Releases clients and timers; idempotent. */
  close(): void;
}

export interface RetiredKey {
  kekId: string;
  /**
   * `disabled`/`deletion-scheduled` (KMS), `remove-from-config` (static: the operator takes it out
   * of GATEWAY_TENANT_KEYS), `not-the-tenants` (a record named a key that is not the tenant's: left alone).
   */
  outcome: 'disabled' | 'deletion-scheduled' | 'remove-from-config' | 'not-the-tenants';
}

export interface WrappedKey {
  /** Which KEK wrapped it (`static:<tenant>[:<id>]`, or a KMS key ARN). */
  kekId: string;
  /** base64: static, iv (12) | ciphertext (32) | tag (16); KMS, the CiphertextBlob. */
  value: string;
}

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
  GATEWAY_KMS_REGION: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1').optional(),
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

/** The one place a service's keyring is built. */
export async function createKeyring(settings: KeyringSettings): Promise<ManagedKeyring> {
  if (settings.kind === 'static') return new StaticKeyring(settings.tenants);
  // Loaded only when used: a static deployment never loads the AWS SDK.
  const { KmsKeyring } = await import('./kmsKeyring.js');
  return new KmsKeyring(settings);
}

/** KEKs held in configuration (a Kubernetes Secret); AES-256-GCM key wrapping bound to the tenant. */
export class StaticKeyring implements ManagedKeyring {
  readonly kind = 'static';
  readonly observer = new TypedEmitter<KeyringEvents>();
  readonly cachedKeys = 0;
  private readonly tenants: Map<string, { current: string; keys: Map<string, Buffer> }>;

  /** `keks`: tenant -> base64 key (today's shape), or tenant -> {current, keys}. */
  constructor(keks: Record<string, string | StaticTenantKeys>) {
    this.tenants = new Map(
      Object.entries(keks).map(([tenant, value]) => {
        const t = typeof value === 'string' ? { current: DEFAULT_STATIC_KEY_ID, keys: { [DEFAULT_STATIC_KEY_ID]: value } } : value;
        return [tenant, { current: t.current, keys: new Map(Object.entries(t.keys).map(([id, key]) => [id, Buffer.from(key, 'base64')])) }];
      }),
    );
  }

  private tenant(tenant: string) {
    const keys = this.tenants.get(tenant);
    if (!keys) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'no key-encryption key for this tenant');
    return keys;
  }

  /** Key ids and kekIds: the default key keeps the kekId it had before ids existed. */
  private static kekIdOf(tenant: string, id: string): string {
    return id === DEFAULT_STATIC_KEY_ID ? `static:${tenant}` : `static:${tenant}:${id}`;
  }

  private keyFor(tenant: string, kekId: string): Buffer {
    const keys = this.tenant(tenant);
    const prefix = `static:${tenant}`;
    const id = kekId === prefix ? DEFAULT_STATIC_KEY_ID : kekId.startsWith(`${prefix}:`) ? kekId.slice(prefix.length + 1) : undefined;
    const key = id === undefined ? undefined : keys.keys.get(id);
    if (!key) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'the data key was wrapped by a key-encryption key this tenant does not have');
    return key;
  }

  async currentKekId(tenant: string): Promise<string> {
    return StaticKeyring.kekIdOf(tenant, this.tenant(tenant).current);
  }

  async wrap(tenant: string, dataKey: Buffer): Promise<WrappedKey> {
    const kekId = await this.currentKekId(tenant);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.keyFor(tenant, kekId), iv).setAAD(Buffer.from(`kek:${tenant}`));
    const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { kekId, value: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64') };
  }

  async unwrap(tenant: string, wrapped: WrappedKey): Promise<Buffer> {
    const raw = Buffer.from(wrapped.value, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.keyFor(tenant, wrapped.kekId), raw.subarray(0, 12)).setAAD(Buffer.from(`kek:${tenant}`));
    try {
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
    } catch (error) {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'the data key does not open with this key-encryption key', { cause: error });
    }
  }

  async rewrap(tenant: string, wrapped: WrappedKey): Promise<WrappedKey> {
    const dataKey = await this.unwrap(tenant, wrapped);
    try {
      return await this.wrap(tenant, dataKey);
    } finally {
      dataKey.fill(0);
    }
  }

  async rotate(tenant: string): Promise<{ current: string; previous: string[] }> {
    const keys = this.tenant(tenant);
    const previous = [...keys.keys.keys()].filter((id) => id !== keys.current).map((id) => StaticKeyring.kekIdOf(tenant, id));
    if (previous.length === 0) throw new GatewayError(ErrorCode.INVALID_STATE, 'the tenant has one static key: add a new one to GATEWAY_TENANT_KEYS as "current" (keeping the old one) and roll out first');
    return { current: await this.currentKekId(tenant), previous };
  }

  /** Static keys live in configuration: the operator removes them; this process stops using them now. */
  async retire(tenant: string, kekIds: readonly string[]): Promise<RetiredKey[]> {
    const current = await this.currentKekId(tenant);
    return kekIds.filter((id) => id !== current).map((kekId) => ({ kekId, outcome: 'remove-from-config' as const }));
  }

  async destroy(tenant: string, kekIds: readonly string[]): Promise<RetiredKey[]> {
    const keys = this.tenants.get(tenant);
    const ids = keys ? [...keys.keys.keys()].map((id) => StaticKeyring.kekIdOf(tenant, id)) : [];
    for (const key of keys?.keys.values() ?? []) key.fill(0);
    this.tenants.delete(tenant);
    return [...new Set([...ids, ...kekIds])].map((kekId) => ({ kekId, outcome: 'remove-from-config' as const }));
  }

  /** Nothing unwrapped is held: each unwrap is a local AES operation. */
  forget(): void {}

  close(): void {}
}

/** The keyring's metrics: KMS calls by operation and outcome, and the unwrapped keys held. */
export function observeKeyring(registry: Registry, keyring: ManagedKeyring): void {
  const requests = new Counter({ name: 'gateway_kms_requests_total', help: 'KMS calls by operation and outcome (ok, or the KMS error), after retries', labelNames: ['operation', 'outcome'], registers: [registry] });
  keyring.observer.on('request', (operation, outcome) => requests.inc({ operation, outcome }));
  new Gauge({
    name: 'gateway_kms_cached_keys',
    help: 'Unwrapped data keys held in memory (bounded by GATEWAY_KMS_CACHE_ENTRIES, each for GATEWAY_KMS_CACHE_SECONDS)',
    registers: [registry],
    collect() {
      this.set(keyring.cachedKeys);
    },
  });
}

/**
 * Unwrapped data keys held for a bounded time and number, so a KMS is not asked once per chat
 * message or per segment read. Entries expire `ttlMs` after they were unwrapped (each has its
 * own timer: an idle process keeps nothing past it), the oldest go first when `maxEntries` is
 * reached, and a tenant's or a KEK's entries can be dropped at once. Keys are wiped when they go;
 * callers get copies (they wipe theirs after use).
 */
export class UnwrapCache {
  private readonly entries = new Map<string, { tenant: string; kekId: string; key: Buffer; timer: NodeJS.Timeout }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {}

  private static id(tenant: string, wrapped: WrappedKey): string {
    return createHash('sha256').update(`${tenant}\0${wrapped.kekId}\0${wrapped.value}`).digest('base64');
  }

  get(tenant: string, wrapped: WrappedKey): Buffer | undefined {
    const entry = this.entries.get(UnwrapCache.id(tenant, wrapped));
    return entry ? Buffer.from(entry.key) : undefined;
  }

  set(tenant: string, wrapped: WrappedKey, key: Buffer): void {
    if (this.ttlMs <= 0 || this.maxEntries <= 0) return;
    const id = UnwrapCache.id(tenant, wrapped);
    this.drop(id);
    while (this.entries.size >= this.maxEntries) this.drop(this.entries.keys().next().value!);
    const timer = setTimeout(() => this.drop(id), this.ttlMs);
    timer.unref();
    this.entries.set(id, { tenant, kekId: wrapped.kekId, key: Buffer.from(key), timer });
  }

  get size(): number {
    return this.entries.size;
  }

  forgetTenant(tenant: string): void {
    for (const [id, entry] of this.entries) if (entry.tenant === tenant) this.drop(id);
  }

  forgetKek(kekId: string): void {
    for (const [id, entry] of this.entries) if (entry.kekId === kekId) this.drop(id);
  }

  clear(): void {
    for (const id of [...this.entries.keys()]) this.drop(id);
  }

  private drop(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.key.fill(0);
    this.entries.delete(id);
  }
}
