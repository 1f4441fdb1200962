import type { TypedEmitter } from '../runtime/TypedEmitter.js';

/**
 * Tenants' key-encryption keys (KEKs). Every data key of the platform (artifacts, chat, sealed
 * connector secrets and room sessions) is wrapped by its tenant's KEK; `WrappedKey.kekId` says
 * which KEK did, so a tenant can hold several during a rotation and each wrapped key opens with
 * the one that made it. Two implementations: `StaticKeyring` (keys in configuration, `make up`)
 * and `KmsKeyring` (AWS KMS, kmsKeyring.ts). `createKeyring` (createKeyring.ts) picks one from configuration: the
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
