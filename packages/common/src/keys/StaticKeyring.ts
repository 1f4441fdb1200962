import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ErrorCode, GatewayError } from '../errors.js';
import { TypedEmitter } from '../runtime/TypedEmitter.js';
import type { KeyringEvents, ManagedKeyring, RetiredKey, WrappedKey } from './keyring.js';
import { DEFAULT_STATIC_KEY_ID, type StaticTenantKeys } from './settings.js';

/** KEKs held in configuration (a Kubernetes Secret); AES-256-GCM key wrapping bound to the tenant. */
export class StaticKeyring implements ManagedKeyring {
  readonly kind = 'static';
  readonly observer = new TypedEmitter<KeyringEvents>();
  readonly cachedKeys = 0;
  private tenants: Map<string, { current: string; keys: Map<string, Buffer> }>;
  private keysFile: { close(): void } | undefined;

  /** `keks`: tenant -> base64 key (today's shape), or tenant -> {current, keys}. */
  constructor(keks: Record<string, string | StaticTenantKeys>) {
    this.tenants = StaticKeyring.read(keks);
  }

  private static read(keks: Record<string, string | StaticTenantKeys>) {
    return new Map(
      Object.entries(keks).map(([tenant, value]) => {
        const t = typeof value === 'string' ? { current: DEFAULT_STATIC_KEY_ID, keys: { [DEFAULT_STATIC_KEY_ID]: value } } : value;
        return [tenant, { current: t.current, keys: new Map(Object.entries(t.keys).map(([id, key]) => [id, Buffer.from(key, 'base64')])) }];
      }),
    );
  }

  /**
   * The keys from now on (the Secret's file changed): new data keys are wrapped under each
   * tenant's new `current`, and a wrapped key opens while its KEK is still listed. The keys
   * replaced are wiped from memory.
   */
  replace(keks: Record<string, string | StaticTenantKeys>): void {
    const previous = this.tenants;
    this.tenants = StaticKeyring.read(keks);
    for (const tenant of previous.values()) for (const key of tenant.keys.values()) key.fill(0);
  }

  /** The watch on the keys' file, ended with the keyring. */
  takeUpChanges(watch: { close(): void }): void {
    this.keysFile = watch;
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
    if (previous.length === 0)
      throw new GatewayError(ErrorCode.INVALID_STATE, 'the tenant has one static key: add a new one to GATEWAY_TENANT_KEYS as "current" (keeping the old one) and roll out first');
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

  close(): void {
    this.keysFile?.close();
  }
}
