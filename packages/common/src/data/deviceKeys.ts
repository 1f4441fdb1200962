import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { kvKeys } from '../nats/subjects.js';
import { parseWith } from '../schemas/validation.js';
import { isLiveEntry } from '../nats/connection.js';

/** The most device keys one end user may register; a phone and a laptop or two, with room to spare. */
export const MAX_DEVICE_KEYS_PER_USER = 10;

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

/** A device key list read back from KV, checked before use (the bucket is an input like any other). */
const deviceKeyListSchema = z
  .array(
    z.object({
      id: z.string().regex(/^[A-Za-z0-9_-]{1,1366}$/),
      publicKey: z.string().regex(/^[A-Za-z0-9+/]{1,2048}={0,2}$/),
      counter: z
        .number()
        .int()
        .min(0)
        .max(2 ** 32 - 1),
      transports: z.array(z.string().max(32)).max(8),
      registeredAtMs: z.number().int().min(0),
    }),
  )
  .max(MAX_DEVICE_KEYS_PER_USER);

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
    if (!isLiveEntry(entry)) return { keys: [], revision: 0 };
    let json: unknown;
    try {
      json = entry.json();
    } catch (error) {
      throw new GatewayError(ErrorCode.INTERNAL, 'the device key record is not JSON', { cause: error });
    }
    return { keys: parseWith(deviceKeyListSchema, json, 'the device key record', ErrorCode.INTERNAL), revision: entry.revision };
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
    throw new GatewayError(ErrorCode.UNAVAILABLE, 'the device key list kept changing');
  }

  async add(tenant: string, externalId: string, key: DeviceKey): Promise<void> {
    await this.change(tenant, externalId, (keys) => {
      const others = keys.filter((k) => k.id !== key.id);
      if (others.length >= MAX_DEVICE_KEYS_PER_USER) {
        throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `at most ${MAX_DEVICE_KEYS_PER_USER} device keys per end user`);
      }
      return [...others, key];
    });
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
