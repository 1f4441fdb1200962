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

const objectMeta = z.object({ name: z.string().max(1_024), mtime: z.string().max(64), deleted: z.boolean().optional() });

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

  /** Live objects of a store by name, with their last change. */
  async readObjects(store: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const entry of await this.read(`OBJ_${store}`, `$O.${store}.M.>`, true)) {
      const parsed = objectMeta.safeParse(parseJson(entry.data));
      if (!parsed.success || parsed.data.deleted) continue;
      const mtime = Date.parse(parsed.data.mtime);
      out.set(parsed.data.name, Number.isFinite(mtime) ? mtime : entry.timeMs);
    }
    return out;
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
