import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { Objm, type ObjectInfo, type ObjectStore } from '@nats-io/obj';
import type { KV } from '@nats-io/kv';
import { JsHeaders, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, GatewayError } from '../errors.js';
import { assertSubjectToken, buckets } from '../nats/subjects.js';
import { isLiveEntry, openBucket, requireObjectStore } from '../nats/connection.js';
import { parseWith } from '../schemas/validation.js';
import { artifactSpaces, type ArtifactSpace } from '../jetstream/access.js';
import type { Keyring } from '../keys/keyring.js';
import { integrityFailure, newNoncePrefix, openSegments, SEGMENT_BYTES, sealSegments } from './sealedSegments.js';

export type { ArtifactSpace };

/**
 * Envelope encryption of everything a session leaves behind (recordings, transcripts,
 * attachments). Each artifact is encrypted with its own AES-256-GCM data key; the data key is
 * wrapped by the tenant's key-encryption key (KEK) and kept apart from the bytes, so deleting
 * the wrapped key makes every copy of the artifact unreadable (crypto-shredding).
 *
 * Artifacts are sealed in authenticated segments (`segmented-v1`, sealedSegments.ts) and read in
 * constant memory. Artifacts stored before this format (`iv` and `tag` in the record: AES-256-GCM
 * over the whole object, whose tag can only be checked at the end) are still read, whole, as
 * before; they were written in parts of at most RECORDER_MAX_PART_BYTES.
 */

/** Ciphertext chunks of the Object Store fetched at once: bounds what a read holds (8 × 128 KiB). */
const READ_AHEAD_CHUNKS = 8;

const base64 = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
const wrappedKeySchema = z.object({ kekId: z.string().min(1).max(256), value: base64(1, 1024) });
const contentTypeSchema = z.string().max(255);
const sizeSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** The data-key record of an artifact, as read back from KV: checked, never trusted as it comes. */
const dataKeyRecordSchema = z.union([
  z.object({
    format: z.literal('segmented-v1'),
    wrapped: wrappedKeySchema,
    noncePrefix: base64(12, 12),
    segmentBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024),
    contentType: contentTypeSchema,
    size: sizeSchema,
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
  z.object({
    format: z.undefined().optional(),
    wrapped: wrappedKeySchema,
    iv: base64(16, 16),
    tag: base64(24, 24),
    contentType: contentTypeSchema,
    size: sizeSchema,
  }),
]);
type DataKeyRecord = z.infer<typeof dataKeyRecordSchema>;

export interface StoredArtifact {
  artifactId: string;
  /** Plaintext size. */
  size: number;
}

/** An artifact opened for one read: what its record says, and its plaintext as it is checked. */
export interface ArtifactContent {
  contentType: string;
  /** Plaintext size. */
  size: number;
  /** SHA-256 of the plaintext, hex. */
  sha256: string;
  /**
   * The plaintext, segment by segment, each released only once it is authenticated. Ends with
   * INTERNAL when anything fails its check (a segment, the size, the hash) and NOT_FOUND when
   * the artifact is deleted under the read. Read it once.
   */
  chunks: AsyncIterable<Buffer>;
}

/** The spaces of artifacts that wait for delivery (crm-sync reads and deletes them). */
const deliveredSpaces: ArtifactSpace[] = ['recordings', 'conversations'];

/** How often a read of an artifact's bytes checks that the artifact is not being deleted. */
const DELETE_CHECK_MS = 2_000;

/** The object store client's chunk size: a write is refused when the next chunk does not fit. */
const OBJECT_CHUNK_BYTES = 128 * 1024;

/** How JetStream refuses a write to a stream at its size limit (discard "new", catalog.ts). */
const STORE_FULL = /maximum bytes exceeded|resource limits exceeded|insufficient storage/i;

function storeFull(error: unknown): boolean {
  return error instanceof Error && (STORE_FULL.test(error.message) || (error.cause instanceof Error && STORE_FULL.test(error.cause.message)));
}

/**
 * A write refused because the object store of its space is at its limit: a passing state (it
 * drains as crm-sync delivers) the writer retries later, as a delivery is. The store's own
 * limit keeps it from taking the room of live calls' state; its fill raises
 * GatewayJetStreamStorageFull (k8s/base/alerts.yaml).
 */
function artifactStoreFull(store: string, cause: unknown): GatewayError {
  return new GatewayError(ErrorCode.UNAVAILABLE, `the object store ${store} is full: write again once deliveries free room`, {
    cause,
    details: { reason: 'storage_full', store },
  });
}

/** Whether a write was refused because its object store is full (to be written again once deliveries free room). */
export function isArtifactStoreFull(error: unknown): boolean {
  return error instanceof GatewayError && error.details.reason === 'storage_full';
}

/** Artifacts whose location a store remembers from their last read, for their deletion (oldest forgotten first). */
const REMEMBERED_LOCATIONS = 4_096;

/**
 * Artifacts encrypted in the JetStream Object Store, with their wrapped keys in KV. Each writer
 * has a space of its own (an object store, and `<tenant>.<space>.` in the data keys bucket):
 * NATS permissions can then give each service exactly its own artifacts, where one shared store
 * would let any writer overwrite or delete every other's (see jetstream/access.ts).
 */
export class ArtifactStore {
  /** For single-chunk reads (a direct get of the chunk) and deletions, made at the first. */
  private manager: Promise<JetStreamManager> | undefined;
  /**
   * Where the artifacts this store read are, by object name: their data key and their object
   * (its chunks' nuid), as read for the read. A deletion that follows (crm-sync's, once the
   * destinations confirmed) then needs neither the key nor the object's info read again.
   */
  private readonly locations = new Map<string, ReadLocation>();

  private constructor(
    private readonly nc: NatsConnection,
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
    return new ArtifactStore(nc, stores, await openBucket(nc, buckets.dataKeys), keyring);
  }

  private get writeSpace(): [ArtifactSpace, ObjectStore] {
    return [...this.stores][0]!;
  }

  /** The spaces this store reads, `first` (the one an event names) before the others. */
  private spacesFrom(first?: ArtifactSpace): Array<[ArtifactSpace, ObjectStore]> {
    const all = [...this.stores];
    return first ? [...all.filter(([space]) => space === first), ...all.filter(([space]) => space !== first)] : all;
  }

  /**
   * Where an artifact is: the space whose data keys hold a live key for it, with its checked
   * record. `space`: where it should be (looked at first, the others only when it is not there).
   */
  private async locate(tenant: string, artifactId: string, space?: ArtifactSpace): Promise<Located> {
    for (const [found, objects] of this.spacesFrom(space)) {
      const key = dataKeyName(tenant, found, artifactId);
      const entry = await this.keys.get(key);
      if (!isLiveEntry(entry)) continue;
      let parsed: unknown;
      try {
        parsed = entry.json();
      } catch (error) {
        throw new GatewayError(ErrorCode.INTERNAL, 'the artifact key record is not JSON', { cause: error });
      }
      return { key, objects, bucket: artifactSpaces[found], record: parseWith(dataKeyRecordSchema, parsed, 'the artifact key record', ErrorCode.INTERNAL) };
    }
    throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
  }

  /** Encrypts a file (streamed, never held whole in memory) under a fresh data key and stores it. */
  async putFile(tenant: string, artifactId: string, path: string, contentType: string): Promise<StoredArtifact> {
    return this.put(tenant, artifactId, createReadStream(path), contentType);
  }

  /**
   * Encrypts a stream segment by segment (constant memory, whatever its length) and stores it.
   * `sizeBytes`, when the writer knows it: a store without room for it refuses at once (storage
   * full) rather than after some chunks landed, which a writer that may not purge its store (the
   * recorder's recordings: only crm-sync deletes them) would leave there, taking the room
   * deliveries free.
   */
  async put(tenant: string, artifactId: string, plaintext: Readable, contentType: string, options: { sizeBytes?: number } = {}): Promise<StoredArtifact> {
    const name = objectName(tenant, artifactId);
    const [space] = this.writeSpace;
    if (options.sizeBytes !== undefined && !(await this.hasRoom(artifactSpaces[space], options.sizeBytes))) {
      plaintext.destroy();
      throw artifactStoreFull(artifactSpaces[space], undefined);
    }
    const dataKey = randomBytes(32);
    const noncePrefix = newNoncePrefix();
    const hash = createHash('sha256');
    let size = 0;
    const sealed = sealSegments(plaintext, { dataKey, noncePrefix, aad: Buffer.from(name) }, (segment) => {
      hash.update(segment);
      size += segment.length;
    });
    const objects = this.writeSpace[1];
    try {
      await objects
        .put({ name, metadata: { tenant, contentType } }, Readable.toWeb(Readable.from(sealed, { objectMode: false, highWaterMark: 1 })) as ReadableStream<Uint8Array>)
        .catch(async (error: unknown) => {
          throw storeFull(error) || (await this.atLimit(artifactSpaces[space])) ? artifactStoreFull(artifactSpaces[space], error) : error;
        });
      const record: DataKeyRecord = {
        format: 'segmented-v1',
        wrapped: await this.keyring.wrap(tenant, dataKey),
        noncePrefix: noncePrefix.toString('base64'),
        segmentBytes: SEGMENT_BYTES,
        contentType,
        size,
        sha256: hash.digest('hex'),
      };
      await this.keys.put(dataKeyName(tenant, space, artifactId), JSON.stringify(record));
    } finally {
      dataKey.fill(0);
    }
    return { artifactId, size };
  }

  /** The decrypted bytes, whole (small artifacts); NOT_FOUND for another tenant's artifact or a shredded one. */
  async get(tenant: string, artifactId: string): Promise<{ data: Buffer; contentType: string }> {
    const content = await this.open(tenant, artifactId);
    const parts: Buffer[] = [];
    for await (const chunk of content.chunks) parts.push(chunk);
    return { data: Buffer.concat(parts), contentType: content.contentType };
  }

  /**
   * Opens an artifact for a streamed read: its record is read and checked now; nothing is
   * decrypted until the chunks are read. NOT_FOUND for another tenant's artifact or a shredded one.
   * `space`: the space the artifact should be in (the event says), looked at first.
   */
  async open(tenant: string, artifactId: string, space?: ArtifactSpace): Promise<ArtifactContent> {
    const name = objectName(tenant, artifactId);
    const located = await this.locate(tenant, artifactId, space);
    const { record } = located;
    if (record.format === 'segmented-v1') {
      return { contentType: record.contentType, size: record.size, sha256: record.sha256, chunks: this.segmentedChunks(tenant, name, located, record) };
    }
    // The whole-object format releases nothing before its tag is checked: it is read whole.
    const data = await this.openWhole(tenant, name, located, record);
    return {
      contentType: record.contentType,
      size: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
      chunks: (async function* () {
        for (let at = 0; at < data.length; at += SEGMENT_BYTES) yield data.subarray(at, Math.min(data.length, at + SEGMENT_BYTES));
      })(),
    };
  }

  private async *segmentedChunks(tenant: string, name: string, located: Located, record: Extract<DataKeyRecord, { format: 'segmented-v1' }>): AsyncGenerator<Buffer> {
    const dataKey = await this.keyring.unwrap(tenant, record.wrapped);
    const key = { dataKey, noncePrefix: Buffer.from(record.noncePrefix, 'base64'), aad: Buffer.from(name) };
    const hash = createHash('sha256');
    let size = 0;
    try {
      for await (const plaintext of openSegments(this.ciphertext(name, located), key, record.segmentBytes)) {
        hash.update(plaintext);
        size += plaintext.length;
        if (size > record.size) throw integrityFailure();
        if (plaintext.length > 0) yield plaintext;
      }
    } finally {
      dataKey.fill(0);
    }
    if (size !== record.size || hash.digest('hex') !== record.sha256) throw integrityFailure();
  }

  /**
   * The stored bytes of an object, a few chunks at a time, through an ordered consumer of the
   * object store's stream. (`ObjectStore.get` pushes every chunk into its stream without waiting
   * for the reader, so a reader slower than NATS, such as any upload to a customer, would end up
   * holding the whole object.) A delete running meanwhile removes the chunks under the read: a
   * fetch that brings nothing checks the key, and once it is gone (deleting starts with it) the
   * artifact is not found.
   */
  private async *ciphertext(name: string, { objects, bucket, key }: Located): AsyncGenerator<Uint8Array> {
    const info = await objects.info(name);
    if (!info || info.deleted) throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
    this.remember(name, { key, objects, bucket, info });
    if (info.chunks === 0) return;
    // One chunk (every artifact up to the object store's chunk size) is one direct get: no
    // consumer to create and delete for it.
    if (info.chunks === 1) {
      yield await this.onlyChunk(bucket, info.nuid, key);
      return;
    }
    const consumer = await jetstream(this.nc).consumers.get(`OBJ_${bucket}`, { filter_subjects: `$O.${bucket}.C.${info.nuid}` });
    let received = 0;
    try {
      while (received < info.chunks) {
        const batch = await consumer.fetch({ max_messages: Math.min(READ_AHEAD_CHUNKS, info.chunks - received), expires: DELETE_CHECK_MS });
        // Taken off the subscription before they are handed on: the reader may be slow.
        const chunks: Uint8Array[] = [];
        for await (const message of batch) chunks.push(message.data);
        received += chunks.length;
        if (chunks.length === 0 && !(await this.exists(key))) throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
        yield* chunks;
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  private remember(name: string, location: ReadLocation): void {
    this.locations.delete(name);
    this.locations.set(name, location);
    if (this.locations.size > REMEMBERED_LOCATIONS) this.locations.delete(this.locations.keys().next().value!);
  }

  /**
   * Whether an object store is at its limit: less room left than a chunk. The client's clean-up
   * of a refused write (a purge of its chunks, which a writer may not do: only the deleting
   * service may purge) hides JetStream's own answer, so the store's fill says it.
   */
  private async atLimit(bucket: string): Promise<boolean> {
    const info = await (await this.jsm()).streams.info(`OBJ_${bucket}`).catch(() => undefined);
    return !!info && info.config.max_bytes > 0 && info.config.max_bytes - info.state.bytes < 2 * OBJECT_CHUNK_BYTES;
  }

  /** Whether an object store has room for `plaintextBytes` once sealed and chunked (a store that cannot be read is given the benefit of the doubt). */
  private async hasRoom(bucket: string, plaintextBytes: number): Promise<boolean> {
    const info = await (await this.jsm()).streams.info(`OBJ_${bucket}`).catch(() => undefined);
    if (!info || !(info.config.max_bytes > 0)) return true;
    // Sealing and chunk headers add well under 1 %; the object's meta record a few hundred bytes.
    const needed = Math.ceil(plaintextBytes * 1.01) + OBJECT_CHUNK_BYTES;
    return info.config.max_bytes - info.state.bytes >= needed;
  }

  private jsm(): Promise<JetStreamManager> {
    this.manager ??= jetstreamManager(this.nc, { checkAPI: false });
    return this.manager;
  }

  /** The one chunk of an object; gone (deleted under the read) is NOT_FOUND once its key is gone too. */
  private async onlyChunk(bucket: string, nuid: string, key: string): Promise<Uint8Array> {
    const jsm = await this.jsm();
    const found = await jsm.streams.getMessage(`OBJ_${bucket}`, { last_by_subj: `$O.${bucket}.C.${nuid}` }).catch((error: unknown) => {
      if (String((error as Error)?.message ?? error).includes('no message found')) return null;
      throw error;
    });
    if (found) return found.data;
    if (!(await this.exists(key))) throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
    throw new GatewayError(ErrorCode.UNAVAILABLE, "the artifact's bytes could not be read");
  }

  private async exists(key: string): Promise<boolean> {
    const entry = await this.keys.get(key);
    return !!isLiveEntry(entry);
  }

  private async openWhole(tenant: string, name: string, located: Located, record: Extract<DataKeyRecord, { iv: string }>): Promise<Buffer> {
    const ciphertext = await this.readBytes(name, located);
    if (!ciphertext) throw new GatewayError(ErrorCode.NOT_FOUND, 'artifact not found');
    const dataKey = await this.keyring.unwrap(tenant, record.wrapped);
    const decipher = createDecipheriv('aes-256-gcm', dataKey, Buffer.from(record.iv, 'base64')).setAAD(Buffer.from(name));
    decipher.setAuthTag(Buffer.from(record.tag, 'base64'));
    try {
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (error) {
      throw integrityFailure(error);
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * The stored bytes of a whole-object artifact. A delete running meanwhile removes their chunks
   * under the read, which then waits for chunks that will not come: while it waits, the key is
   * checked, and once it is gone (deleting starts with it) the artifact is not found.
   */
  private async readBytes(name: string, { objects, key }: Located): Promise<Uint8Array | null> {
    const read = objects.getBlob(name);
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), DELETE_CHECK_MS)));
      const first = await Promise.race([read, tick]).finally(() => clearTimeout(timer));
      if (first !== 'tick') return first;
      if (!(await this.exists(key))) {
        read.catch(() => undefined);
        return null;
      }
    }
  }

  /**
   * Deletes the wrapped key first (from then on no copy can be read), then the bytes. Safe to
   * repeat: a part already gone is skipped, and a failure throws so the caller tries again.
   * `space`: the space the artifact should be in (the event says); when anything of it is found
   * there, the other spaces are not looked at. An artifact this store read is deleted where the
   * read found it, without reading its key or its object's info again.
   */
  async delete(tenant: string, artifactId: string, space?: ArtifactSpace): Promise<void> {
    const name = objectName(tenant, artifactId);
    const read = this.locations.get(name);
    if (read) {
      await this.deleteRead(name, read);
      this.locations.delete(name);
      return;
    }
    for (const [where, objects] of this.spacesFrom(space)) {
      const key = dataKeyName(tenant, where, artifactId);
      const entry = await this.keys.get(key);
      const keyed = !!entry && entry.operation === 'PUT';
      if (keyed) await this.keys.purge(key);
      let purged = 0;
      try {
        // Marks the object deleted and purges its chunks; an object that is not there is left alone.
        purged = (await objects.delete(name)).purged;
      } catch (error) {
        const after = await objects.info(name);
        if (after && !after.deleted) throw new GatewayError(ErrorCode.UNAVAILABLE, 'deleting the artifact bytes failed', { cause: error });
      }
      if (where === space && (keyed || purged > 0)) return;
    }
  }

  /**
   * Deletes an artifact where a read of this store found it, as `ObjectStore.delete` does (the
   * object's info rolled up to a deleted one, its chunks purged) but from the info the read
   * had. Its key was live then: purging it again after an erasure only leaves the marker the
   * erasure left. Artifact ids are never written twice, so the object is the one that was read.
   */
  private async deleteRead(name: string, { key, objects, bucket, info }: ReadLocation): Promise<void> {
    await this.keys.purge(key);
    const deleted = {
      name: info.name,
      description: info.description,
      options: info.options,
      metadata: info.metadata,
      bucket: info.bucket,
      nuid: info.nuid,
      mtime: info.mtime,
      size: 0,
      chunks: 0,
      digest: '',
      deleted: true,
    };
    const rollup = headers();
    rollup.set(JsHeaders.RollupHdr, JsHeaders.RollupValueSubject);
    try {
      // The two go out together (one write, one wait): neither needs the other's answer, and
      // whichever fails, the whole deletion is tried again (the key is gone already).
      const jsm = await this.jsm();
      await Promise.all([
        jetstream(this.nc).publish(`$O.${bucket}.M.${base64UrlPadded(name)}`, JSON.stringify(deleted), { headers: rollup }),
        jsm.streams.purge(`OBJ_${bucket}`, { filter: `$O.${bucket}.C.${info.nuid}` }),
      ]);
    } catch (error) {
      const after = await objects.info(name).catch(() => undefined);
      if (after === undefined || (after && !after.deleted)) throw new GatewayError(ErrorCode.UNAVAILABLE, 'deleting the artifact bytes failed', { cause: error });
    }
  }
}

/** An artifact found in one of the store's spaces. */
interface Located {
  /** Its data key's name. */
  key: string;
  objects: ObjectStore;
  /** The object store's bucket. */
  bucket: string;
  record: DataKeyRecord;
}

/** Where a read found an artifact: its data key and its object's info. */
interface ReadLocation {
  key: string;
  objects: ObjectStore;
  bucket: string;
  info: ObjectInfo;
}

/** An object's meta subject token, as the Object Store names it (base64url with padding). */
function base64UrlPadded(name: string): string {
  return Buffer.from(name).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
}

/** The data key of an artifact: under its space, so each writer's NATS permissions reach its own keys only. */
export function dataKeyName(tenant: string, space: ArtifactSpace, artifactId: string): string {
  return `${assertSubjectToken('tenant', tenant)}.${space}.${assertSubjectToken('artifact id', artifactId)}`;
}

function objectName(tenant: string, artifactId: string): string {
  return `${assertSubjectToken('tenant', tenant)}.${assertSubjectToken('artifact id', artifactId)}`;
}
