import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, GatewayError } from './errors.js';
import { assertSubjectToken, buckets } from './subjects.js';
import { openBucket, requireObjectStore } from './nats.js';
import { artifactSpaces, type ArtifactSpace } from './jetstream/access.js';

export type { ArtifactSpace };

/**
 * Envelope encryption of everything a session leaves behind (recordings, transcripts,
 * attachments). Each artifact is encrypted with its own AES-256-GCM data key; the data key is
 * wrapped by the tenant's key-encryption key (KEK) and kept apart from the bytes, so deleting
 * the wrapped key makes every copy of the artifact unreadable (crypto-shredding).
 */

/** Wraps and unwraps data keys with a tenant's KEK; a KMS client can implement it too. */
export interface Keyring {
  wrap(tenant: string, dataKey: Buffer): Promise<WrappedKey>;
  unwrap(tenant: string, wrapped: WrappedKey): Promise<Buffer>;
}

export interface WrappedKey {
  /** Which KEK wrapped it (for rotation). */
  kekId: string;
  /** base64 of iv (12) | ciphertext (32) | tag (16). */
  value: string;
}

/** Well-known KEK of the built-in `demo` tenant; only for running on one machine. */
export const DEMO_TENANT_KEK = Buffer.from('gateway-demo-kek-local-only-0000').toString('base64');

/** `GATEWAY_TENANT_KEYS`: a JSON object of tenant -> base64 of a 32-byte key. */
export const tenantKeysShape = {
  GATEWAY_TENANT_KEYS: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return { demo: DEMO_TENANT_KEK };
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of tenant -> base64 32-byte key' });
        return z.NEVER;
      }
      const result = z.record(z.string(), z.string()).safeParse(parsed);
      const bad = result.success ? Object.entries(result.data).filter(([, v]) => Buffer.from(v, 'base64').length !== 32) : [];
      if (!result.success || bad.length > 0) {
        ctx.addIssue({ code: 'custom', message: `every key must be base64 of 32 bytes${bad.length ? ` (not: ${bad.map(([t]) => t).join(', ')})` : ''}` });
        return z.NEVER;
      }
      return result.data;
    }),
};

/** KEKs held in configuration (a Kubernetes Secret); AES-256-GCM key wrapping bound to the tenant. */
export class StaticKeyring implements Keyring {
  private readonly keks: Map<string, Buffer>;

  constructor(keks: Record<string, string>) {
    this.keks = new Map(Object.entries(keks).map(([tenant, key]) => [tenant, Buffer.from(key, 'base64')]));
  }

  private kek(tenant: string): Buffer {
    const kek = this.keks.get(tenant);
    if (!kek) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'no key-encryption key for this tenant');
    return kek;
  }

  async wrap(tenant: string, dataKey: Buffer): Promise<WrappedKey> {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.kek(tenant), iv).setAAD(Buffer.from(`kek:${tenant}`));
    const body = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { kekId: `static:${tenant}`, value: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64') };
  }

  async unwrap(tenant: string, wrapped: WrappedKey): Promise<Buffer> {
    const raw = Buffer.from(wrapped.value, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.kek(tenant), raw.subarray(0, 12)).setAAD(Buffer.from(`kek:${tenant}`));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    try {
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
    } catch (error) {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'the data key does not open with this key-encryption key', { cause: error });
    }
  }
}

interface DataKeyRecord {
  wrapped: WrappedKey;
  iv: string;
  tag: string;
  contentType: string;
  size: number;
}

export interface StoredArtifact {
  artifactId: string;
  /** Plaintext size. */
  size: number;
}

/** How often a read of an artifact's bytes checks that the artifact is not being deleted. */
const DELETE_CHECK_MS = 2_000;

/** The spaces of artifacts that wait for delivery (crm-sync reads and deletes them). */
const deliveredSpaces: ArtifactSpace[] = ['recordings', 'conversations'];

/**
 * Artifacts encrypted in the JetStream Object Store, with their wrapped keys in KV. Each writer
 * has a space of its own (an object store, and `<tenant>.<space>.` in the data keys bucket):
 * NATS permissions can then give each service exactly its own artifacts, where one shared store
 * would let any writer overwrite or delete every other's (see jetstream/access.ts).
 */
export class ArtifactStore {
  private constructor(
    /** The object store of each space this store reads; the first is where it writes. */
    private readonly stores: Map<ArtifactSpace, ObjectStore>,
    private readonly keys: KV,
    private readonly keyring: Keyring,
  ) {}

  /**
   * `space`: where this store writes and the only space it reads (a producer: the recorder's
   * `recordings` and `segments`, signaling's `conversations`). Without one it reads and deletes
   * every space of artifacts waiting for delivery (crm-sync) and writes recordings.
   */
  static async open(nc: NatsConnection, keyring: Keyring, space?: ArtifactSpace): Promise<ArtifactStore> {
    const stores = new Map<ArtifactSpace, ObjectStore>();
    for (const s of space ? [space] : deliveredSpaces) {
      await requireObjectStore(nc, artifactSpaces[s]);
      stores.set(s, await new Objm(nc).open(artifactSpaces[s], false));
    }
    return new ArtifactStore(stores, await openBucket(nc, buckets.dataKeys), keyring);
  }

  private get writeSpace(): [ArtifactSpace, ObjectStore] {
    return [...this.stores][0]!;
  }

  /** Where an artifact is: the space whose data keys hold a live key for it. */
  private async locate(tenant: string, artifactId: string): Promise<{ key: string; record: DataKeyRecord; objects: ObjectStore } | undefined> {
    for (const [space, objects] of this.stores) {
      const key = dataKeyName(tenant, space, artifactId);
      const entry = await this.keys.get(key);
      if (entry && entry.operation === 'PUT' && entry.length > 0) return { key, record: entry.json<DataKeyRecord>(), objects };
    }
    return undefined;
  }

  /** Encrypts a file (streamed, never held whole in memory) under a fresh data key and stores it. */
  async putFile(tenant: string, artifactId: string, path: string, contentType: string): Promise<StoredArtifact> {
    return this.put(tenant, artifactId, createReadStream(path), contentType);
  }

  async put(tenant: string, artifactId: string, plaintext: Readable, contentType: string): Promise<StoredArtifact> {
    const name = objectName(tenant, artifactId);
    const [space, objects] = this.writeSpace;
    const dataKey = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', dataKey, iv).setAAD(Buffer.from(name));
    let size = 0;
    plaintext.on('data', (chunk: Buffer) => (size += chunk.length));
    const encrypted = plaintext.pipe(cipher);
    await objects.put({ name, metadata: { tenant, contentType } }, Readable.toWeb(encrypted) as ReadableStream<Uint8Array>);
    const record: DataKeyRecord = {
      wrapped: await this.keyring.wrap(tenant, dataKey),
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      contentType,
      size,
    };
    dataKey.fill(0);
    await this.keys.put(dataKeyName(tenant, space, artifactId), JSON.stringify(record));
    return { artifactId, size };
  }

  /** The decrypted bytes; NOT_FOUND for another tenant's artifact or a shredded one. */
  async get(tenant: string, artifactId: string): Promise<{ data: Buffer; contentType: string }> {
    const name = objectName(tenant, artifactId);
    const found = await this.locate(tenant, artifactId);
    if (!found) throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
    const { record } = found;
    const ciphertext = await this.readBytes(found.objects, found.key, name);
    if (!ciphertext) throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
    const dataKey = await this.keyring.unwrap(tenant, record.wrapped);
    const decipher = createDecipheriv('aes-256-gcm', dataKey, Buffer.from(record.iv, 'base64')).setAAD(Buffer.from(name));
    decipher.setAuthTag(Buffer.from(record.tag, 'base64'));
    try {
      return { data: Buffer.concat([decipher.update(ciphertext), decipher.final()]), contentType: record.contentType };
    } catch (error) {
      throw new GatewayError(ErrorCode.INTERNAL, 'artifact failed its integrity check', { cause: error });
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * The stored bytes. A delete running meanwhile removes their chunks under the read, which then
   * waits for chunks that will not come: while it waits, the key is checked, and once it is gone
   * (deleting starts with it) the artifact is not found. A long read of a large file goes on.
   */
  private async readBytes(objects: ObjectStore, key: string, name: string): Promise<Uint8Array | null> {
    const read = objects.getBlob(name);
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), DELETE_CHECK_MS)));
      const first = await Promise.race([read, tick]).finally(() => clearTimeout(timer));
      if (first !== 'tick') return first;
      const entry = await this.keys.get(key);
      if (!entry || entry.operation !== 'PUT' || entry.length === 0) {
        read.catch(() => undefined);
        return null;
      }
    }
  }

  /**
   * Deletes the wrapped key first (from then on no copy can be read), then the bytes. Safe to
   * repeat: a part already gone is skipped, and a failure throws so the caller tries again.
   */
  async delete(tenant: string, artifactId: string): Promise<void> {
    const name = objectName(tenant, artifactId);
    for (const [space, objects] of this.stores) {
      const key = dataKeyName(tenant, space, artifactId);
      const entry = await this.keys.get(key);
      if (entry && entry.operation === 'PUT') await this.keys.purge(key);
      const info = await objects.info(name);
      if (!info || info.deleted) continue;
      try {
        await objects.delete(name);
      } catch (error) {
        const after = await objects.info(name);
        if (after && !after.deleted) throw new GatewayError(ErrorCode.UNAVAILABLE, 'deleting the artifact bytes failed', { cause: error });
      }
    }
  }
}

function objectName(tenant: string, artifactId: string): string {
  return `${assertSubjectToken('tenant', tenant)}.${assertSubjectToken('artifact id', artifactId)}`;
}

/** The data key of an artifact: under its space, so each writer's NATS permissions reach its own keys only. */
export function dataKeyName(tenant: string, space: ArtifactSpace, artifactId: string): string {
  return `${assertSubjectToken('tenant', tenant)}.${space}.${assertSubjectToken('artifact id', artifactId)}`;
}

/** A small value (connector secrets) sealed under its own data key, wrapped by the tenant's KEK. */
export interface SealedValue {
  wrapped: WrappedKey;
  /** base64 of iv (12) | ciphertext | tag (16). */
  value: string;
}

/** Seals JSON for a tenant; `context` is bound to it (AAD), so a sealed value cannot be moved elsewhere. */
export async function sealJson(keyring: Keyring, tenant: string, context: string, value: unknown): Promise<SealedValue> {
  const dataKey = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv).setAAD(Buffer.from(`${tenant}:${context}`));
  const body = Buffer.concat([cipher.update(JSON.stringify(value)), cipher.final()]);
  const sealed = { wrapped: await keyring.wrap(tenant, dataKey), value: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64') };
  dataKey.fill(0);
  return sealed;
}

export async function openJson<T>(keyring: Keyring, tenant: string, context: string, sealed: SealedValue): Promise<T> {
  const dataKey = await keyring.unwrap(tenant, sealed.wrapped);
  const raw = Buffer.from(sealed.value, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', dataKey, raw.subarray(0, 12)).setAAD(Buffer.from(`${tenant}:${context}`));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  try {
    return JSON.parse(Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8')) as T;
  } catch (error) {
    throw new GatewayError(ErrorCode.INTERNAL, 'a sealed value failed its integrity check', { cause: error });
  } finally {
    dataKey.fill(0);
  }
}
