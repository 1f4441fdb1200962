import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { sealJson, openJson } from '../data/sealedJson.js';
import { ErrorCode, GatewayError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { isLiveEntry, listEntries } from '../nats/connection.js';
import type { Logger } from '../runtime/logger.js';
import { parseWith, schemas } from '../schemas/validation.js';
import { API_KEY_ID, type ApiKeyRecord, type ApiKeySecrets, apiKeyKvKey, apiKeySealContext, apiKeySecretsSchema, apiSecretHash, newApiKeyId, newApiKeySecret, readApiKeyRecord } from './apiKeys.js';

/** Keys in force one tenant may have (revoked ones do not count). */
export const MAX_API_KEYS_PER_TENANT = 20;
/** How long the secret before a rotation is still taken, unless the rotation says otherwise. */
const DEFAULT_OVERLAP_SECONDS = 24 * 3600;
const MAX_OVERLAP_SECONDS = 7 * 24 * 3600;
/** A revoked key stays listed (without anything of its secrets) this long, then goes. */
export const REVOKED_KEPT_MS = 30 * 24 * 3600_000;
/** Revoked keys kept per tenant at most, the most recent. */
const MAX_REVOKED_KEPT = 50;

export const apiKeyCreateSchema = z.strictObject({
  /** What the key is for ("billing backend", "eu-west deploy"): the tenant's own words, shown in listings. */
  label: schemas.text(128, { min: 1 }),
});
export const apiKeyRotationSchema = z.strictObject({
  /** Seconds the current secret is still taken beside the new one (0: refused at once). */
  overlapSeconds: z.number().int().min(0).max(MAX_OVERLAP_SECONDS).default(DEFAULT_OVERLAP_SECONDS),
});

/** What the admin API shows of a key: never its secrets, nor their hashes. */
export interface ApiKeyView {
  keyId: string;
  label: string;
  status: 'active' | 'revoked';
  createdAtMs: number;
  rotatedAtMs?: number;
  revokedAtMs?: number;
  /** While the secret before the last rotation is still taken: until when. */
  previousSecretValidUntilMs?: number;
}

/** A key with its secret: only in the answer that made the secret. */
export type ApiKeyWithSecret = ApiKeyView & { secret: string };

/**
 * Tenants' API keys in KV (apiKeys.ts): made, listed, rotated with an overlap and revoked through
 * crm-sync's admin API. A secret is shown once, when made; `changed` hears of every change, so
 * the process's own TenantAuth drops what it cached of the key at once (other processes within
 * their cache time).
 */
export class ApiKeyStore {
  constructor(
    private readonly kv: KV,
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly changed: (keyId: string) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  async create(tenant: string, input: unknown): Promise<ApiKeyWithSecret> {
    const { label } = parseWith(apiKeyCreateSchema, input, 'the body');
    const active = (await this.records(tenant)).filter((r) => r.revokedAtMs === undefined);
    if (active.length >= MAX_API_KEYS_PER_TENANT) {
      throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a tenant has at most ${MAX_API_KEYS_PER_TENANT} API keys in force; revoke one first`);
    }
    const keyId = newApiKeyId();
    const secret = newApiKeySecret();
    const record: ApiKeyRecord = {
      keyId,
      label,
      createdAtMs: this.now(),
      secretHash: apiSecretHash(keyId, secret),
      secrets: await this.seal(tenant, keyId, { current: secret }),
    };
    await this.kv.create(apiKeyKvKey(tenant, keyId), JSON.stringify(record));
    this.log.info({ tenant, keyId }, 'API key created');
    return { ...this.view(record), secret };
  }

  /** The tenant's keys, oldest first; revoked ones too, for a while (REVOKED_KEPT_MS). */
  async list(tenant: string): Promise<ApiKeyView[]> {
    return (await this.records(tenant)).map((record) => this.view(record));
  }

  async get(tenant: string, keyId: string): Promise<ApiKeyView> {
    return this.view((await this.stored(tenant, keyId)).record);
  }

  /** A new secret; the one before is still taken for the overlap, so callers can switch without a failed request. */
  async rotate(tenant: string, keyId: string, input: unknown): Promise<ApiKeyWithSecret> {
    const { overlapSeconds } = parseWith(apiKeyRotationSchema, input ?? {}, 'the body');
    const secret = newApiKeySecret();
    const record = await this.change(tenant, keyId, async (stored) => {
      if (stored.revokedAtMs !== undefined || !stored.secrets) throw new GatewayError(ErrorCode.INVALID_STATE, 'the API key is revoked');
      const old = await this.secretsOf(tenant, stored);
      const at = this.now();
      const keepOld = overlapSeconds > 0 && stored.secretHash !== undefined;
      const next: ApiKeyRecord = {
        keyId: stored.keyId,
        label: stored.label,
        createdAtMs: stored.createdAtMs,
        rotatedAtMs: at,
        secretHash: apiSecretHash(keyId, secret),
        ...(keepOld ? { previous: { secretHash: stored.secretHash!, validUntilMs: at + overlapSeconds * 1000 } } : {}),
        secrets: await this.seal(tenant, keyId, keepOld ? { current: secret, previous: old.current } : { current: secret }),
      };
      return next;
    });
    this.log.info({ tenant, keyId, overlapSeconds }, 'API key rotated');
    return { ...this.view(record), secret };
  }

  /** Refused from now on (other processes: within their cache time); listed as revoked for a while. Revoking twice is no error. */
  async revoke(tenant: string, keyId: string): Promise<void> {
    const { record } = await this.stored(tenant, keyId);
    if (record.revokedAtMs !== undefined) return;
    await this.change(tenant, keyId, async (stored) => ({ keyId: stored.keyId, label: stored.label, createdAtMs: stored.createdAtMs, rotatedAtMs: stored.rotatedAtMs, revokedAtMs: this.now() }));
    this.log.info({ tenant, keyId }, 'API key revoked');
  }

  /** The tenant's records, oldest first; revoked ones past keeping are removed on the way. */
  private async records(tenant: string): Promise<ApiKeyRecord[]> {
    const records: ApiKeyRecord[] = [];
    for (const entry of await listEntries(this.kv, apiKeyKvKey(tenant, '*'))) {
      const read = readApiKeyRecord(entry.key, entry.value);
      if (read) records.push(read.record);
      else this.log.error({ tenant }, 'an API key record is unreadable; left out');
    }
    records.sort((a, b) => a.createdAtMs - b.createdAtMs);
    const revoked = records.filter((r) => r.revokedAtMs !== undefined).sort((a, b) => b.revokedAtMs! - a.revokedAtMs!);
    const expired = new Set(revoked.filter((r, i) => i >= MAX_REVOKED_KEPT || this.now() - r.revokedAtMs! > REVOKED_KEPT_MS).map((r) => r.keyId));
    for (const keyId of expired) await this.kv.purge(apiKeyKvKey(tenant, keyId));
    return records.filter((r) => !expired.has(r.keyId));
  }

  private async change(tenant: string, keyId: string, edit: (stored: ApiKeyRecord) => Promise<ApiKeyRecord>): Promise<ApiKeyRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { record, revision } = await this.stored(tenant, keyId);
      const next = await edit(record);
      try {
        await this.kv.update(apiKeyKvKey(tenant, keyId), JSON.stringify(next), revision);
      } catch {
        // Changed meanwhile (another request, another replica): read again.
        continue;
      }
      this.changed(keyId);
      return next;
    }
    throw new GatewayError(ErrorCode.UNAVAILABLE, 'the API key kept changing; try again');
  }

  private async stored(tenant: string, keyId: string): Promise<{ record: ApiKeyRecord; revision: number }> {
    if (!API_KEY_ID.test(keyId)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such API key');
    const entry = await this.kv.get(apiKeyKvKey(tenant, keyId));
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such API key');
    const read = readApiKeyRecord(entry.key, entry.value);
    if (!read) throw new GatewayError(ErrorCode.INTERNAL, 'the API key record is unreadable');
    return { record: read.record, revision: entry.revision };
  }

  private seal(tenant: string, keyId: string, secrets: ApiKeySecrets) {
    return sealJson(this.keyring, tenant, apiKeySealContext(keyId), secrets);
  }

  private async secretsOf(tenant: string, record: ApiKeyRecord): Promise<ApiKeySecrets> {
    const opened = apiKeySecretsSchema.safeParse(await openJson<unknown>(this.keyring, tenant, apiKeySealContext(record.keyId), record.secrets!));
    if (!opened.success) throw new GatewayError(ErrorCode.INTERNAL, "the API key's secrets are unreadable");
    return opened.data;
  }

  private view(record: ApiKeyRecord): ApiKeyView {
    const { keyId, label, createdAtMs, rotatedAtMs, revokedAtMs, previous } = record;
    return {
      keyId,
      label,
      status: revokedAtMs === undefined ? 'active' : 'revoked',
      createdAtMs,
      ...(rotatedAtMs !== undefined ? { rotatedAtMs } : {}),
      ...(revokedAtMs !== undefined ? { revokedAtMs } : {}),
      ...(previous && previous.validUntilMs > this.now() && revokedAtMs === undefined ? { previousSecretValidUntilMs: previous.validUntilMs } : {}),
    };
  }
}
