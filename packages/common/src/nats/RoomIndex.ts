import type { Bucket } from '@nats-io/kv';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '../errors.js';
import { schemas } from '../schemas/validation.js';
import { isLiveEntry, type KV } from './connection.js';
import { kvKeys } from './subjects.js';

/**
 * The ids of a room's entries in a bucket whose keys are `${tenant}.${room}.${id}` (participants,
 * Smart Actions): one record per room beside them (key `${tenant}.${room}`, two tokens where an
 * entry's has three, so no listing of entries matches it), so that a room is listed by reading
 * its own keys. A listing by subject filter instead makes nats-server go through the subjects of
 * every room in the bucket, a cost that grows with everyone joined.
 *
 * The record holds a superset of the room's ids with an entry: an id goes in before its entry is
 * first written and comes out only after the entry is gone. An id whose entry never came (its
 * writer died in between) is dropped by a later listing once it is older than PENDING_ID_MS.
 * Every change is a compare-and-set against the revision read, retried.
 */
export class RoomIndex {
  /**
   * Each room's record as this process last read or wrote it: a change tries against it first
   * and reads the record again only when someone else changed it since (the compare-and-set
   * fails), so a join or a leave costs one request, not two.
   */
  private readonly lastKnown = new Map<string, Known>();
  /** Changes waiting for the write in progress of their room (a key is here while one is). */
  private readonly queued = new Map<string, Waiting[]>();

  constructor(
    private readonly kv: KV,
    private readonly now: () => number = Date.now,
  ) {}

  /** The ids the room's record names, with when each went in; empty for a room without one; undefined when it does not decode. */
  async read(tenant: string, room: string): Promise<Map<string, number> | undefined> {
    const known = await this.readEntry(tenant, room);
    return known.ids && new Map(known.ids);
  }

  /** Adds an id (before its entry is first written). */
  async add(tenant: string, room: string, id: string): Promise<void> {
    await this.change(tenant, room, (ids) => {
      if (ids.has(id)) return false;
      // The room limits (at most 1,000 participants) refuse long before; an entry the record cannot name would never be listed.
      if (ids.size >= MAX_IDS) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a room holds at most ${MAX_IDS} entries of a kind`);
      ids.set(id, this.now());
      return true;
    });
  }

  /** Removes ids (once their entries are gone); the record goes with the last of them. */
  async remove(tenant: string, room: string, gone: readonly string[]): Promise<void> {
    await this.change(tenant, room, (ids) => {
      let changed = false;
      for (const id of gone) changed = ids.delete(id) || changed;
      return changed;
    });
  }

  /** Of these ids (named by the room's record, without an entry), those old enough to be taken for gone. */
  abandoned(ids: ReadonlyMap<string, number>, withoutEntry: readonly string[]): string[] {
    const before = this.now() - PENDING_ID_MS;
    return withoutEntry.filter((id) => (ids.get(id) ?? 0) < before);
  }

  /**
   * The changes of one room asked here go out together, one write at a time: fifty joins of a room
   * at once make a few writes, where each on its own would retry its compare-and-set against all
   * the others. An edit that throws fails alone.
   */
  private change(tenant: string, room: string, edit: Edit): Promise<void> {
    const key = kvKeys.room(tenant, room);
    return new Promise<void>((resolve, reject) => {
      const waiting: Waiting = { edit, done: (error) => (error === undefined ? resolve() : reject(error)) };
      const queue = this.queued.get(key);
      if (queue) {
        queue.push(waiting);
        return;
      }
      this.queued.set(key, [waiting]);
      void this.flush(tenant, room, key);
    });
  }

  private async flush(tenant: string, room: string, key: string): Promise<void> {
    for (;;) {
      const batch = this.queued.get(key) ?? [];
      if (batch.length === 0) {
        this.queued.delete(key);
        return;
      }
      this.queued.set(key, []);
      const failed = new Map<Waiting, unknown>();
      let error: unknown;
      try {
        await this.write(tenant, room, key, (ids) => {
          let changed = false;
          for (const waiting of batch) {
            if (failed.has(waiting)) continue;
            try {
              changed = waiting.edit(ids) || changed;
            } catch (thrown) {
              failed.set(waiting, thrown);
            }
          }
          return changed;
        });
      } catch (thrown) {
        error = thrown ?? new Error('the room index could not be written');
      }
      for (const waiting of batch) waiting.done(failed.get(waiting) ?? error);
    }
  }

  private async write(tenant: string, room: string, key: string, edit: Edit): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const remembered = attempt === 0 ? this.lastKnown.get(key) : undefined;
      const known = remembered ?? (await this.readEntry(tenant, room));
      const ids = new Map(known.ids);
      const { revision } = known;
      if (!edit(ids)) {
        // Nothing to change, as far as the record read says; a remembered one may be out of date.
        if (!remembered) return;
        this.lastKnown.delete(key);
        continue;
      }
      try {
        const value = JSON.stringify({ ids: Object.fromEntries(ids) });
        const written = await (revision === undefined ? this.kv.create(key, value) : this.kv.update(key, value, revision));
        if (ids.size > 0) {
          this.remember(key, { ids, revision: written });
          return;
        }
        // The last id went (by compare-and-set, like any change): the record is purged rather than
        // deleted, since a delete marker would stay for the bucket's TTL. Only messages up to the
        // one just written go; an id added meanwhile (a newer message) stays.
        const bucket = this.kv as unknown as Bucket;
        await bucket.jsm.streams.purge(bucket.stream, { filter: `${bucket.prefix}.${key}`, seq: written + 1 });
        this.remember(key, { ids: new Map() });
        return;
      } catch (error) {
        // Another replica changed the record first: read it again. Anything else fails the same way each time.
        this.lastKnown.delete(key);
        if (attempt >= MAX_ATTEMPTS || !isConflict(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** attempt)));
      }
    }
  }

  private async readEntry(tenant: string, room: string): Promise<Known> {
    const key = kvKeys.room(tenant, room);
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return this.remember(key, { ids: new Map() });
    const parsed = indexSchema.safeParse(safeJson(entry.string()));
    // A record that does not decode is replaced by the next change, starting from none: the
    // listings meanwhile go through the bucket's subjects.
    return parsed.success ? this.remember(key, { ids: new Map(Object.entries(parsed.data.ids)), revision: entry.revision }) : { revision: entry.revision };
  }

  private remember(key: string, known: Known): Known {
    this.lastKnown.delete(key);
    if (this.lastKnown.size >= MAX_ROOMS_KNOWN) this.lastKnown.delete(this.lastKnown.keys().next().value!);
    this.lastKnown.set(key, known);
    return known;
  }
}

/** A change of a room's ids: whether it changed them (it may throw: that change alone fails). */
type Edit = (ids: Map<string, number>) => boolean;
interface Waiting {
  edit: Edit;
  done(error?: unknown): void;
}

/** A room's record as read or written: its ids (none when it does not decode) and revision (none when absent). */
interface Known {
  ids?: ReadonlyMap<string, number>;
  revision?: number;
}

/** Rooms whose record a process remembers at most (the oldest forgotten first): a few MiB. */
const MAX_ROOMS_KNOWN = 20_000;

/** How long an id may wait for its entry's first write before a listing drops it. */
export const PENDING_ID_MS = 60_000;
/** Ids a room's record holds at most: the room limits (1,000 participants at most) and ids still pending. */
const MAX_IDS = 2_000;
/** Compare-and-set attempts before a change gives up: enough for 50 joins racing into one room. */
const MAX_ATTEMPTS = 60;

const indexSchema = z
  .object({ ids: z.record(schemas.id(), z.number().int().min(0).max(8.64e15)) })
  .strict()
  .refine((value) => Object.keys(value.ids).length <= MAX_IDS, `a room's record names at most ${MAX_IDS} ids`);

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** nats-server's answer to a compare-and-set against another revision, or a create of a key that exists. */
function isConflict(error: unknown): boolean {
  const text = String((error as { message?: unknown })?.message ?? error);
  return /wrong last sequence|key exists/i.test(text) || (error as { api_error?: { err_code?: number } })?.api_error?.err_code === 10071;
}
