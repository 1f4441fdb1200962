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
    return (await this.read(tenant, externalId)).keys;
  }

  private async read(tenant: string, externalId: string): Promise<{ keys: DeviceKey[]; revision: number }> {
    const entry = await this.kv.get(this.key(tenant, externalId));
    return entry && entry.operation === 'PUT' && entry.length > 0 ? { keys: entry.json<DeviceKey[]>(), revision: entry.revision } : { keys: [], revision: 0 };
  }

  /** Changes the key list with compare-and-set, so two registrations at once both stay. */
  private async change(tenant: string, externalId: string, edit: (keys: DeviceKey[]) => DeviceKey[] | undefined): Promise<void> {
    const key = this.key(tenant, externalId);
    for (let attempt = 0; attempt < 10; attempt++) {
      const { keys, revision } = await this.read(tenant, externalId);
      const next = edit(keys);
      if (!next) return;
      try {
        if (revision === 0) await this.kv.create(key, JSON.stringify(next));
        else await this.kv.update(key, JSON.stringify(next), revision);
        return;
      } catch {
        // Changed meanwhile: read again.
      }
    }
    throw new Error('the device key list kept changing');
  }

  async add(tenant: string, externalId: string, key: DeviceKey): Promise<void> {
    await this.change(tenant, externalId, (keys) => [...keys.filter((k) => k.id !== key.id), key]);
  }

  async updateCounter(tenant: string, externalId: string, id: string, counter: number): Promise<void> {
    await this.change(tenant, externalId, (keys) => {
      const key = keys.find((k) => k.id === id);
      if (!key) return undefined;
      key.counter = counter;
      return keys;
    });
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
