import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { kvKeys } from './subjects.js';

/** A WebAuthn credential of an end user's device. Only what verification needs is kept. */
export interface DeviceKey {
  /** base64url credential id. */
  id: string;
  /** base64 of the COSE public key. */
  publicKey: string;
  counter: number;
  transports: string[];
  registeredAtMs: number;
}

/**
 * End users' device keys, by tenant and the customer's external id. The key of an entry is a
 * hash of the external id, so the bucket holds no identifier in the clear beyond the keys.
 */
export class DeviceKeys {
  constructor(private readonly kv: KV) {}

  private key(tenant: string, externalId: string): string {
    return kvKeys.room(tenant, createHash('sha256').update(`${tenant}:${externalId}`).digest('hex').slice(0, 40));
  }

  async list(tenant: string, externalId: string): Promise<DeviceKey[]> {
    const entry = await this.kv.get(this.key(tenant, externalId));
    return entry && entry.operation === 'PUT' && entry.length > 0 ? entry.json<DeviceKey[]>() : [];
  }

  async add(tenant: string, externalId: string, key: DeviceKey): Promise<void> {
    const keys = (await this.list(tenant, externalId)).filter((k) => k.id !== key.id);
    await this.kv.put(this.key(tenant, externalId), JSON.stringify([...keys, key]));
  }

  async updateCounter(tenant: string, externalId: string, id: string, counter: number): Promise<void> {
    const keys = await this.list(tenant, externalId);
    const key = keys.find((k) => k.id === id);
    if (!key) return;
    key.counter = counter;
    await this.kv.put(this.key(tenant, externalId), JSON.stringify(keys));
  }

  /** A data-subject deletion or a tenant leaving: every key of the end user goes. */
  async removeAll(tenant: string, externalId: string): Promise<void> {
    await this.kv.purge(this.key(tenant, externalId));
  }

  /** The WebAuthn user handle of an end user: stable, and not their external id. */
  static userHandle(tenant: string, externalId: string): Uint8Array {
    return createHash('sha256').update(`user:${tenant}:${externalId}`).digest().subarray(0, 32);
  }
}
