import type { KV } from '@nats-io/kv';
import { openJson } from '../data/sealedJson.js';
import { ErrorCode, GatewayError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import type { Logger } from '../runtime/logger.js';
import { type ApiKeyRecord, apiKeySealContext, apiKeySecretsSchema, findApiKey, recordTakes } from './apiKeys.js';
import { parseBasicAuth, type Tenant, tenantFromBasicAuth } from './config.js';

/**
 * How long a process reuses what it read of an API key (or of its absence): a revocation or a
 * rotation made elsewhere is taken within this time. The end of a rotation's overlap is exact
 * (checked at each use); a change made through this process's own store applies at once.
 */
export const API_KEY_CACHE_MS = 5_000;
/** Key ids cached at most (known and unknown alike): a flood of made-up ids cannot grow memory. */
const MAX_CACHED = 10_000;

/** How a service learns which tenant calls: everything that authenticates a tenant goes through this. */
export interface TenantCredentials {
  /**
   * The tenant whose apiKey:apiSecret an HTTP Basic header carries: a key of GATEWAY_TENANTS, or
   * one of the tenant's keys in NATS. The tenant comes with the credentials presented as its
   * apiKey and apiSecret (what it signs join tokens with, when it asks for one).
   */
  fromBasicAuth(header: string | undefined): Promise<Tenant | undefined>;
  /**
   * The tenant an API key (a join token's `iss`) belongs to, and the secrets its tokens may be
   * signed with: the current one first, then the one before a rotation while its overlap lasts.
   */
  signingSecrets(apiKey: string): Promise<{ tenant: Tenant; secrets: string[] } | undefined>;
}

interface Cached {
  atMs: number;
  found: Promise<{ tenant: string; record: ApiKeyRecord } | undefined>;
  secrets?: Promise<string[]>;
}

/**
 * The tenants of GATEWAY_TENANTS (their bootstrap keys, and their policies, which stay in the
 * configuration) and the API keys kept for them in NATS (gateway_api_keys). A key in NATS only
 * adds credentials to a configured tenant: one whose tenant is no longer configured is refused.
 * Basic auth is checked against the key's hash; join tokens need the secret itself, sealed, which
 * only a process given a keyring (holding the tenants' keys) can open.
 */
export class TenantAuth implements TenantCredentials {
  private readonly cache = new Map<string, Cached>();

  constructor(
    private readonly tenants: () => readonly Tenant[],
    private readonly keys?: { kv: KV; keyring?: Keyring; log: Logger; cacheMs?: number; now?: () => number },
  ) {}

  /** GATEWAY_TENANTS only (tools and tests without NATS). */
  static configured(tenants: readonly Tenant[]): TenantAuth {
    return new TenantAuth(() => tenants);
  }

  async fromBasicAuth(header: string | undefined): Promise<Tenant | undefined> {
    const configured = tenantFromBasicAuth(this.tenants(), header);
    if (configured) return configured;
    const credentials = parseBasicAuth(header);
    if (!credentials || this.tenants().some((t) => t.apiKey === credentials.apiKey)) return undefined;
    const found = await this.lookup(credentials.apiKey);
    const tenant = found && this.tenantNamed(found.tenant);
    if (!found || !tenant || !recordTakes(found.record, credentials.apiSecret, this.now())) return undefined;
    return { ...tenant, apiKey: found.record.keyId, apiSecret: credentials.apiSecret };
  }

  async signingSecrets(apiKey: string): Promise<{ tenant: Tenant; secrets: string[] } | undefined> {
    const configured = this.tenants().find((t) => t.apiKey === apiKey);
    if (configured) return { tenant: configured, secrets: [configured.apiSecret] };
    const found = await this.lookup(apiKey);
    const tenant = found && this.tenantNamed(found.tenant);
    if (!found || !tenant || found.record.revokedAtMs !== undefined) return undefined;
    const all = await this.opened(apiKey, found);
    if (!all) return undefined;
    const previousValid = found.record.previous !== undefined && found.record.previous.validUntilMs > this.now();
    return { tenant: { ...tenant, apiKey }, secrets: previousValid ? all : all.slice(0, 1) };
  }

  /** Drops what is cached of a key (its store changed it in this process). */
  forget(keyId: string): void {
    this.cache.delete(keyId);
  }

  private tenantNamed(name: string): Tenant | undefined {
    return this.tenants().find((t) => t.name === name);
  }

  private now(): number {
    return (this.keys?.now ?? Date.now)();
  }

  /** A key's record, read at most once per cache time; a failed read is not kept, and answers UNAVAILABLE. */
  private lookup(keyId: string): Promise<{ tenant: string; record: ApiKeyRecord } | undefined> {
    if (!this.keys) return Promise.resolve(undefined);
    const { kv, log } = this.keys;
    const cached = this.cache.get(keyId);
    if (cached && this.now() - cached.atMs < (this.keys.cacheMs ?? API_KEY_CACHE_MS)) return cached.found;
    if (this.cache.size >= MAX_CACHED) this.evict();
    const entry: Cached = {
      atMs: this.now(),
      found: findApiKey(kv, keyId).then(
        (result) => {
          if (result !== 'unreadable') return result && { tenant: result.tenant, record: result.record };
          log.error({ keyId }, 'an API key record is unreadable; the key is refused');
          return undefined;
        },
        (error: unknown) => {
          if (this.cache.get(keyId) === entry) this.cache.delete(keyId);
          throw new GatewayError(ErrorCode.UNAVAILABLE, 'API keys cannot be read now; try again', { cause: error });
        },
      ),
    };
    this.cache.set(keyId, entry);
    return entry.found;
  }

  /** The key's secrets, current first, opened once per cached record. */
  private opened(keyId: string, found: { tenant: string; record: ApiKeyRecord }): Promise<string[] | undefined> {
    const keyring = this.keys?.keyring;
    const sealed = found.record.secrets;
    if (!keyring || !sealed) return Promise.resolve(undefined);
    const cached = this.cache.get(keyId);
    if (cached?.secrets) return cached.secrets;
    const secrets = openJson<unknown>(keyring, found.tenant, apiKeySealContext(keyId), sealed).then((value) => {
      const parsed = apiKeySecretsSchema.parse(value);
      return parsed.previous ? [parsed.current, parsed.previous] : [parsed.current];
    });
    if (cached) cached.secrets = secrets;
    return secrets.catch((error: unknown) => {
      if (cached) cached.secrets = undefined;
      this.keys?.log.error({ keyId, code: GatewayError.from(error).code }, "an API key's secrets could not be opened; refused");
      return undefined;
    });
  }

  /** Makes room: the entries past their time first, then the oldest half. */
  private evict(): void {
    const maxAge = this.keys?.cacheMs ?? API_KEY_CACHE_MS;
    for (const [keyId, entry] of this.cache) if (this.now() - entry.atMs > maxAge) this.cache.delete(keyId);
    if (this.cache.size < MAX_CACHED) return;
    let drop = Math.ceil(this.cache.size / 2);
    for (const keyId of this.cache.keys()) {
      if (drop-- <= 0) break;
      this.cache.delete(keyId);
    }
  }
}
