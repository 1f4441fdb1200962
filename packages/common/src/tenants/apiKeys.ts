import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { liveEntries } from '../nats/connection.js';
import { newId } from '../runtime/ids.js';

/**
 * A tenant's API keys kept in NATS (bucket gateway_api_keys), beside the bootstrap key of
 * GATEWAY_TENANTS: key = `${tenant}.${keyId}`, value = the record below as JSON.
 *
 * Each secret is kept twice, for two different checks:
 *  - its hash (SHA-256 over the key id and the secret), which is what HTTP Basic apiKey:apiSecret
 *    is checked against: the bucket alone never lets anyone call the APIs;
 *  - the secret itself, sealed with the tenant's key (sealJson, bound to the tenant and the key
 *    id), only because join tokens are HS256: checking one needs the very key that signed it.
 *    Only a service holding the tenant's key-encryption key (signaling) can open it.
 * A secret is 256 random bits, so a slow password hash would add nothing but CPU per request.
 */

/** `ak_` and 16 letters or digits: public, the `iss` of join tokens and the user of HTTP Basic. */
export const API_KEY_ID = /^ak_[A-Za-z0-9]{16}$/;
/** `sk_` and 32 random bytes in base64url. */
const API_KEY_SECRET = /^sk_[A-Za-z0-9_-]{43}$/;
const HASH = /^[A-Za-z0-9_-]{43}$/;

export const newApiKeyId = (): string => newId('ak');
export const newApiKeySecret = (): string => `sk_${randomBytes(32).toString('base64url')}`;

/** The key a record is stored under. */
export const apiKeyKvKey = (tenant: string, keyId: string) => `${tenant}.${keyId}`;
/** What a key's sealed secrets are bound to (with the tenant). */
export const apiKeySealContext = (keyId: string) => `api-key:${keyId}`;

/** The hash HTTP Basic is checked against. */
export function apiSecretHash(keyId: string, secret: string): string {
  return createHash('sha256').update(`gateway-api-key\u0000${keyId}\u0000${secret}`).digest('base64url');
}

/** Whether `secret` is the one `hash` was made of, compared in constant time. */
export function apiSecretMatches(hash: string, keyId: string, secret: string): boolean {
  const expected = Buffer.from(hash, 'base64url');
  const presented = Buffer.from(apiSecretHash(keyId, secret), 'base64url');
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}

const sealedValueSchema = z.object({
  wrapped: z.object({ kekId: z.string().min(1).max(256), value: z.string().min(1).max(1024) }),
  value: z.string().min(1).max(4096),
});

/** A record as stored; a revoked key keeps its times and label, and nothing of its secrets. */
export const apiKeyRecordSchema = z.object({
  keyId: z.string().regex(API_KEY_ID),
  label: z.string().max(512),
  createdAtMs: z.number().int().min(0),
  rotatedAtMs: z.number().int().min(0).optional(),
  revokedAtMs: z.number().int().min(0).optional(),
  secretHash: z.string().regex(HASH).optional(),
  /** The secret before the last rotation, while it is still taken. */
  previous: z.object({ secretHash: z.string().regex(HASH), validUntilMs: z.number().int().min(0) }).optional(),
  /** ApiKeySecrets, sealed. */
  secrets: sealedValueSchema.optional(),
});
export type ApiKeyRecord = z.infer<typeof apiKeyRecordSchema>;

/** What is sealed in a record: the secrets themselves (the previous one's validity is the record's). */
export const apiKeySecretsSchema = z.object({ current: z.string().regex(API_KEY_SECRET), previous: z.string().regex(API_KEY_SECRET).optional() });
export type ApiKeySecrets = z.infer<typeof apiKeySecretsSchema>;

/** A stored record, checked: undefined when it fails its schema or sits under another key id than its own. */
export function readApiKeyRecord(key: string, value: Uint8Array): { tenant: string; record: ApiKeyRecord } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(value));
  } catch {
    return undefined;
  }
  const result = apiKeyRecordSchema.safeParse(parsed);
  const dot = key.indexOf('.');
  if (!result.success || dot < 1 || key.slice(dot + 1) !== result.data.keyId) return undefined;
  return { tenant: key.slice(0, dot), record: result.data };
}

/** The record of a key id, whichever tenant's it is (one stream-info request and one get). */
export async function findApiKey(kv: KV, keyId: string): Promise<{ tenant: string; record: ApiKeyRecord; revision: number } | 'unreadable' | undefined> {
  if (!API_KEY_ID.test(keyId)) return undefined;
  const [entry, ...others] = await liveEntries(kv, `*.${keyId}`);
  if (!entry) return undefined;
  // Two tenants holding one key id is a forgery of a record: neither is taken.
  if (others.length > 0) return 'unreadable';
  const read = readApiKeyRecord(entry.key, entry.value);
  return read ? { ...read, revision: entry.revision } : 'unreadable';
}

/** Whether a key takes this secret now: its current one, or the one before while the overlap lasts. */
export function recordTakes(record: ApiKeyRecord, secret: string, nowMs: number): boolean {
  if (record.revokedAtMs !== undefined || !record.secretHash) return false;
  // Both are compared, so the time taken does not tell which one matched.
  const current = apiSecretMatches(record.secretHash, record.keyId, secret);
  const previous = record.previous !== undefined && record.previous.validUntilMs > nowMs && apiSecretMatches(record.previous.secretHash, record.keyId, secret);
  return current || previous;
}
