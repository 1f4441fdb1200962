import {
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EncryptCommand,
  KMSClient,
  KMSServiceException,
  ListKeysCommand,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
  UpdateAliasCommand,
} from '@aws-sdk/client-kms';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { TypedEmitter } from '../runtime/TypedEmitter.js';
import { UnwrapCache } from './UnwrapCache.js';
import type { KeyringEvents, ManagedKeyring, RetiredKey, WrappedKey } from './keyring.js';
import type { KeyringSettings } from './settings.js';
import { parseWith } from '../schemas/validation.js';

/**
 * Tenants' KEKs in AWS KMS. Each tenant has an alias (`GATEWAY_KMS_KEYS`); new data keys are
 * wrapped under the key the alias points at, and `WrappedKey.kekId` records that key's ARN, so a
 * wrapped key opens with the key that made it whatever the alias says later. Rotation makes a
 * new key and points the alias at it: every replica wraps under it from its next call on.
 *
 * Wrapping is `Encrypt` of the data key the platform generated (randomBytes), not
 * `GenerateDataKey`: the callers (artifacts, chat, sealed values) already make their keys and
 * hand them over, so one `Keyring` interface serves both keyrings and no caller changes; both
 * calls are one request against the same quota, and KMS's own generation adds nothing that
 * Node's CSPRNG lacks here. Every call carries an EncryptionContext binding the tenant and the
 * purpose (KMS refuses Decrypt and ReEncrypt unless it is the same), so one tenant's wrapped key
 * given in another's name does not open, even under a key both could use.
 *
 * Throttling (and KMS's own 5xx) is retried by the SDK's standard retry strategy (exponential
 * backoff with jitter from 500 ms for throttling, `GATEWAY_KMS_MAX_ATTEMPTS` in all); errors are mapped once, here, to our codes.
 */

const PURPOSE = 'gateway-data-key';
/** A deleted tenant's keys stay recoverable (CancelKeyDeletion) this long: KMS's minimum is 7 days. */
const DELETION_WINDOW_DAYS = 7;

const keyArn = z.string().regex(/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]{1,64}$/, 'must be a KMS key ARN');
/** What KMS answers, checked before use like any input. */
const encryptAnswer = z.object({ KeyId: keyArn, CiphertextBlob: z.instanceof(Uint8Array).refine((b) => b.length > 0 && b.length <= 768) });
const decryptAnswer = z.object({ KeyId: keyArn, Plaintext: z.instanceof(Uint8Array).refine((b) => b.length === 32, 'must be 32 bytes') });
const describeAnswer = z.object({ KeyMetadata: z.object({ Arn: keyArn, Description: z.string().max(8192).optional() }) });
const createAnswer = z.object({ KeyMetadata: z.object({ Arn: keyArn, KeyId: z.string().min(1).max(64) }) });

type KmsSettings = Extract<KeyringSettings, { kind: 'kms' }>;

export class KmsKeyring implements ManagedKeyring {
  readonly kind = 'kms';
  readonly observer = new TypedEmitter<KeyringEvents>();
  private readonly client: KMSClient;
  private readonly cache: UnwrapCache;
  private closed = false;
  private aliases: Record<string, string>;
  private keysFile: { close(): void } | undefined;

  /** `credentials`: tests only; services use the SDK's default chain (IRSA's web identity in Kubernetes). */
  constructor(settings: KmsSettings, credentials?: { accessKeyId: string; secretAccessKey: string }) {
    this.client = new KMSClient({
      region: settings.region,
      ...(credentials ? { credentials } : {}),
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      retryMode: 'standard',
      maxAttempts: settings.maxAttempts,
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 10_000, throwOnRequestTimeout: true },
    });
    this.cache = new UnwrapCache(settings.cacheTtlMs, settings.cacheEntries);
    this.aliases = settings.aliases;
  }

  /** The tenants' aliases from now on (their file changed): a tenant added can wrap at once. */
  replaceAliases(aliases: Record<string, string>): void {
    this.aliases = aliases;
  }

  /** The watch on the aliases' file, ended with the keyring. */
  takeUpChanges(watch: { close(): void }): void {
    this.keysFile = watch;
  }

  private alias(tenant: string): string {
    const alias = this.aliases[tenant];
    if (!alias) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'no key-encryption key for this tenant');
    return alias;
  }

  private static context(tenant: string): Record<string, string> {
    return { tenant, purpose: PURPOSE };
  }

  /** One KMS call, its errors mapped to ours and its answer checked. */
  private async call<T>(what: string, send: (client: KMSClient) => Promise<unknown>, schema: z.ZodType<T>): Promise<T> {
    if (this.closed) throw new GatewayError(ErrorCode.UNAVAILABLE, 'the keyring is closed');
    let answer: unknown;
    try {
      answer = await send(this.client);
    } catch (error) {
      const mapped = kmsError(what, error);
      this.observer.safeEmit('request', what, String(mapped.details.kms ?? 'Error'));
      throw mapped;
    }
    this.observer.safeEmit('request', what, 'ok');
    return parseWith(schema, answer, `KMS's answer to ${what}`, ErrorCode.INTERNAL);
  }

  /**
   * Whether a key is the tenant's: the alias's, or one whose description says so (what `rotate`
   * gives the keys it makes; give the first key the same). Key ids come from records read back
   * from NATS: a forged one must not get another tenant's key disabled or destroyed.
   */
  private async isTenants(tenant: string, kekId: string, current: string | undefined): Promise<boolean> {
    if (kekId === current) return true;
    const arn = keyArn.safeParse(kekId);
    if (!arn.success) return false;
    const answer = await this.call('DescribeKey', (c) => c.send(new DescribeKeyCommand({ KeyId: arn.data })), describeAnswer).catch((error: unknown) => {
      if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) return undefined;
      throw error;
    });
    return answer?.KeyMetadata.Description === keyDescription(tenant);
  }

  async currentKekId(tenant: string): Promise<string> {
    const answer = await this.call('DescribeKey', (c) => c.send(new DescribeKeyCommand({ KeyId: this.alias(tenant) })), describeAnswer);
    return answer.KeyMetadata.Arn;
  }

  async wrap(tenant: string, dataKey: Buffer): Promise<WrappedKey> {
    const answer = await this.call('Encrypt', (c) => c.send(new EncryptCommand({ KeyId: this.alias(tenant), Plaintext: dataKey, EncryptionContext: KmsKeyring.context(tenant) })), encryptAnswer);
    return { kekId: answer.KeyId, value: Buffer.from(answer.CiphertextBlob).toString('base64') };
  }

  async unwrap(tenant: string, wrapped: WrappedKey): Promise<Buffer> {
    this.alias(tenant);
    const cached = this.cache.get(tenant, wrapped);
    if (cached) return cached;
    const kekId = parseWith(keyArn, wrapped.kekId, "the wrapped key's key id", ErrorCode.PERMISSION_DENIED);
    // KeyId pins the key the record names: a ciphertext of another key is refused, not decrypted.
    const answer = await this.call(
      'Decrypt',
      (c) => c.send(new DecryptCommand({ KeyId: kekId, CiphertextBlob: Buffer.from(wrapped.value, 'base64'), EncryptionContext: KmsKeyring.context(tenant) })),
      decryptAnswer,
    );
    const key = Buffer.from(answer.Plaintext);
    answer.Plaintext.fill(0);
    this.cache.set(tenant, wrapped, key);
    return key;
  }

  async rewrap(tenant: string, wrapped: WrappedKey): Promise<WrappedKey> {
    const kekId = parseWith(keyArn, wrapped.kekId, "the wrapped key's key id", ErrorCode.PERMISSION_DENIED);
    const context = KmsKeyring.context(tenant);
    const answer = await this.call(
      'ReEncrypt',
      (c) =>
        c.send(
          new ReEncryptCommand({
            CiphertextBlob: Buffer.from(wrapped.value, 'base64'),
            SourceKeyId: kekId,
            SourceEncryptionContext: context,
            DestinationKeyId: this.alias(tenant),
            DestinationEncryptionContext: context,
          }),
        ),
      encryptAnswer,
    );
    return { kekId: answer.KeyId, value: Buffer.from(answer.CiphertextBlob).toString('base64') };
  }

  async rotate(tenant: string): Promise<{ current: string; previous: string[] }> {
    const alias = this.alias(tenant);
    const previous = await this.currentKekId(tenant);
    const created = await this.call(
      'CreateKey',
      (c) => c.send(new CreateKeyCommand({ Description: keyDescription(tenant), KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT', Tags: [{ TagKey: 'gateway:tenant', TagValue: tenant }] })),
      createAnswer,
    );
    await this.call('UpdateAlias', (c) => c.send(new UpdateAliasCommand({ AliasName: aliasName(alias), TargetKeyId: created.KeyMetadata.KeyId })), z.unknown());
    return { current: created.KeyMetadata.Arn, previous: [previous] };
  }

  async retire(tenant: string, kekIds: readonly string[]): Promise<RetiredKey[]> {
    const current = await this.currentKekId(tenant);
    const retired: RetiredKey[] = [];
    for (const kekId of new Set(kekIds)) {
      if (kekId === current) continue;
      if (!(await this.isTenants(tenant, kekId, undefined))) {
        retired.push({ kekId, outcome: 'not-the-tenants' });
        continue;
      }
      await this.call('DisableKey', (c) => c.send(new DisableKeyCommand({ KeyId: kekId })), z.unknown());
      this.cache.forgetKek(kekId);
      retired.push({ kekId, outcome: 'disabled' });
    }
    return retired;
  }

  /** Every key of the account whose description names the tenant: its retired keys too, which no record names any more. */
  private async keysOf(tenant: string): Promise<string[]> {
    const listed = z.object({
      Keys: z
        .array(z.object({ KeyArn: keyArn }))
        .max(1000)
        .default([]),
      NextMarker: z.string().max(1024).optional(),
      Truncated: z.boolean().optional(),
    });
    const found: string[] = [];
    let marker: string | undefined;
    do {
      const page = await this.call('ListKeys', (c) => c.send(new ListKeysCommand({ Limit: 1000, ...(marker ? { Marker: marker } : {}) })), listed);
      for (const { KeyArn } of page.Keys) if (await this.isTenants(tenant, KeyArn, undefined)) found.push(KeyArn);
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return found;
  }

  async destroy(tenant: string, kekIds: readonly string[]): Promise<RetiredKey[]> {
    // An alias already gone (or a tenant no longer configured) leaves the keys records and descriptions name.
    const current = await this.currentKekId(tenant).catch((error: unknown) => {
      const code = GatewayError.from(error).code;
      if (code === ErrorCode.NOT_FOUND || (code === ErrorCode.PERMISSION_DENIED && !this.aliases[tenant])) return undefined;
      throw error;
    });
    const destroyed: RetiredKey[] = [];
    for (const kekId of new Set([...(current ? [current] : []), ...kekIds, ...(await this.keysOf(tenant))])) {
      if (!(await this.isTenants(tenant, kekId, current))) {
        destroyed.push({ kekId, outcome: 'not-the-tenants' });
        continue;
      }
      try {
        await this.call('ScheduleKeyDeletion', (c) => c.send(new ScheduleKeyDeletionCommand({ KeyId: kekId, PendingWindowInDays: DELETION_WINDOW_DAYS })), z.unknown());
      } catch (error) {
        // Already pending deletion (an offboarding run again): done all the same.
        if (GatewayError.from(error).details.kms !== 'KMSInvalidStateException') throw error;
      }
      destroyed.push({ kekId, outcome: 'deletion-scheduled' });
    }
    this.forget(tenant);
    return destroyed;
  }

  forget(tenant: string): void {
    this.cache.forgetTenant(tenant);
  }

  /** How many unwrapped keys this process holds (tests, metrics). */
  get cachedKeys(): number {
    return this.cache.size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.keysFile?.close();
    this.cache.clear();
    this.client.destroy();
  }
}

/** The description of a tenant's KMS keys, which says whose they are. */
export function keyDescription(tenant: string): string {
  return `gateway tenant ${tenant}`;
}

/** UpdateAlias takes the alias's name (`alias/...`), not its ARN. */
function aliasName(alias: string): string {
  return alias.startsWith('arn:') ? alias.slice(alias.indexOf(':alias/') + 1) : alias;
}

/** KMS errors by name, to our codes; the SDK's message stays in the cause (it can name keys, never data). */
const kmsErrors: Record<string, { code: ErrorCode; message: string }> = {
  DisabledException: { code: ErrorCode.INVALID_STATE, message: "the tenant's key is disabled" },
  KMSInvalidStateException: { code: ErrorCode.INVALID_STATE, message: "the tenant's key is not usable in its state (pending deletion, or pending import)" },
  AccessDeniedException: { code: ErrorCode.PERMISSION_DENIED, message: 'KMS refused this service access to the key' },
  IncorrectKeyException: { code: ErrorCode.PERMISSION_DENIED, message: 'the data key was not wrapped by the key its record names' },
  InvalidCiphertextException: { code: ErrorCode.PERMISSION_DENIED, message: 'the data key does not open for this tenant' },
  NotFoundException: { code: ErrorCode.NOT_FOUND, message: "the tenant's key does not exist" },
  ThrottlingException: { code: ErrorCode.RATE_LIMITED, message: 'KMS throttled the request (retries exhausted)' },
  LimitExceededException: { code: ErrorCode.RATE_LIMITED, message: 'a KMS limit is reached' },
  KMSInternalException: { code: ErrorCode.UNAVAILABLE, message: 'KMS failed' },
  DependencyTimeoutException: { code: ErrorCode.UNAVAILABLE, message: 'KMS timed out' },
  KeyUnavailableException: { code: ErrorCode.UNAVAILABLE, message: 'the key is unavailable' },
};

function kmsError(what: string, error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  const name = error instanceof KMSServiceException || error instanceof Error ? error.name : 'Error';
  const known = kmsErrors[name];
  if (known) return new GatewayError(known.code, `${what}: ${known.message}`, { cause: error, details: { kms: name } });
  // Anything else (the network, a timeout, an unexpected answer) is the KMS being unavailable to us.
  return new GatewayError(ErrorCode.UNAVAILABLE, `${what}: KMS could not be reached`, { cause: error, details: { kms: name } });
}
