import { z } from 'zod';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { readStream } from '../nats/streamRead.js';

/** A stored message as the residue scan sees it: where and when it was written, and its bytes. */
export interface StoredEntry {
  subject: string;
  seq: number;
  timeMs: number;
  data: Uint8Array;
}

const objectMeta = z.object({ name: z.string().max(1_024), mtime: z.string().max(64), nuid: z.string().max(64).optional(), deleted: z.boolean().optional() });

/** The last chunk of an object's chunk subject: its stream sequence and write time. */
export interface LastChunk {
  seq: number;
  timeMs: number;
}

/**
 * Reads what NATS stores straight from the streams beneath KV buckets and object stores, so that
 * a scan sees every key with its write time, values only where they are needed.
 */
export class StoreReader {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /**
   * The last value of every key (or object) of a KV bucket's (or object store's) stream, or every
   * message of a stream. `headersOnly`: where only keys and times matter, the values stay on the
   * server (an empty value then shows in the size header).
   */
  async read(stream: string, filter: string, lastPerSubject: boolean, headersOnly = false): Promise<StoredEntry[]> {
    const out: StoredEntry[] = [];
    for await (const message of readStream(this.js, this.jsm, stream, filter, { lastPerSubject, headersOnly })) {
      const operation = message.headers?.get('KV-Operation');
      // Deleted and purged keys keep a marker (markers.ts): they are gone; so is a key whose value is empty.
      const empty = headersOnly ? message.headers?.get('Nats-Msg-Size') === '0' : message.data.length === 0;
      if (!operation && !(lastPerSubject && empty)) out.push({ subject: message.subject, seq: message.seq, timeMs: Math.floor(message.info.timestampNanos / 1e6), data: message.data });
    }
    return out;
  }

  async readKv(bucket: string, headersOnly: boolean): Promise<Map<string, StoredEntry>> {
    const prefix = `$KV.${bucket}.`;
    const entries = await this.read(`KV_${bucket}`, `${prefix}>`, true, headersOnly);
    return new Map(entries.map((e) => [e.subject.slice(prefix.length), e]));
  }

  /**
   * Live objects of a store by name, with their last change, and the nuids their chunks are
   * stored under (`$O.<store>.C.<nuid>`). A meta record that cannot be read holds its nuid too:
   * its chunks are never taken for a write's leftovers.
   */
  async readObjects(store: string): Promise<{ objects: Map<string, number>; liveNuids: Set<string> }> {
    const objects = new Map<string, number>();
    const liveNuids = new Set<string>();
    for (const entry of await this.read(`OBJ_${store}`, `$O.${store}.M.>`, true)) {
      const parsed = objectMeta.safeParse(parseJson(entry.data));
      if (!parsed.success) {
        const nuid = z.object({ nuid: z.string().max(64) }).safeParse(parseJson(entry.data));
        if (nuid.success) liveNuids.add(nuid.data.nuid);
        continue;
      }
      if (parsed.data.deleted) continue;
      if (parsed.data.nuid) liveNuids.add(parsed.data.nuid);
      const mtime = Date.parse(parsed.data.mtime);
      objects.set(parsed.data.name, Number.isFinite(mtime) ? mtime : entry.timeMs);
    }
    return { objects, liveNuids };
  }

  /**
   * The nuids an object store holds chunks under, from the stream's subject listing
   * (`subjects_filter`, paged by the client): no chunk is read.
   */
  async chunkNuids(store: string): Promise<string[]> {
    const prefix = `$O.${store}.C.`;
    const info = await this.jsm.streams.info(`OBJ_${store}`, { subjects_filter: `${prefix}>` });
    return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
  }

  /** The last chunk stored under a nuid, or undefined when there is none (purged meanwhile). */
  async lastChunk(store: string, nuid: string): Promise<LastChunk | undefined> {
    const message = await this.jsm.streams.getMessage(`OBJ_${store}`, { last_by_subj: `$O.${store}.C.${nuid}` }).catch((error: unknown) => {
      if (String((error as Error)?.message ?? error).includes('no message found')) return null;
      throw error;
    });
    return message ? { seq: message.seq, timeMs: message.time.getTime() } : undefined;
  }
}

/** A stored value as JSON, or undefined when it is not. */
export function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
