import type { NatsConnection } from '@nats-io/transport-node';
import { KvWatchInclude, type KV } from '@nats-io/kv';
import type { Logger } from '../runtime/logger.js';
import { isLiveEntry, liveEntries } from './connection.js';

/**
 * Where a WatchedKeys keeps what each key holds: a `Map` by key, or a structure of its user's
 * (grouped by tenant, say) when readers ask something other than "what is under this key".
 * `delete` is what a key deleted, purged or expired from the bucket (or whose value fails its
 * check) comes to; `clear` empties it before a watch starts again.
 */
export interface KeptEntries<T> {
  set(key: string, value: T): unknown;
  delete(key: string): unknown;
  clear(): void;
}

export interface WatchedKeysOptions<T, S extends KeptEntries<T>> {
  /** The keys watched, as a KV filter (`>`: every key). */
  filter?: string;
  /**
   * Whether the watch delivers values. Without them (headers only) `check` gets an empty value
   * from the watch: a user that needs only which keys hold something (never their contents,
   * such as sealed secrets) does not have them sent. The listing reads each key once whatever
   * this says (liveEntries): telling a live key from a delete marker takes its last message.
   */
  values: boolean;
  /**
   * What a live entry holds, checked once as it enters (listed, watched or noted), so readers
   * never check it again; undefined: it holds nothing, and the key is dropped as if deleted.
   */
  check: (entry: { key: string; value: Uint8Array; revision: number }) => T | undefined;
  /** Where the entries are kept (the same object for the watch's whole life, cleared at each start). */
  kept: S;
  /** Logged (warn) when the watch fails: what readers do until it runs again. `log` carries the user's own fields. */
  failure: string;
  log: Logger;
  /** How long `watch` waits for the first listing before resolving not yet current. */
  readyWithinMs?: number;
}

/** How long after a failed or ended watch the next one starts: soon enough that readers fall back briefly, far enough apart not to hammer a server that is struggling. */
const RESTART_AFTER_MS = 1_000;

/**
 * The keys of a KV bucket matching a filter, with what each holds, kept in memory from a watch:
 * readers look them up here instead of reading the bucket, and a key written on another replica
 * is heard of within the watch's delivery. Used by the join marks (signaling) and the webhook
 * audience.
 *
 * How it keeps up, and why each step matters:
 * - The watch of updates starts first, then the bucket is listed: a change made between the two
 *   would otherwise be in neither.
 * - Updates apply as they arrive, in the watch's order; the listing, which can be older than an
 *   update heard meanwhile, is applied only to the keys no update touched. Otherwise a key
 *   deleted while the listing ran could come back. Keys are only remembered as touched until the
 *   listing is applied, so memory stays bounded by the keys themselves.
 * - Each value is checked once as it enters (`check`); one that fails holds nothing, as when it
 *   was checked at each read.
 * - Until the listing is applied, and whenever the watch has failed or ended, `current()` answers
 *   undefined and readers read the bucket themselves (or assume the safe answer): a stale or
 *   partial mirror is never taken for the bucket.
 * - After a failure (logged with `failure`) or the watch's end, it starts again from an empty
 *   mirror after RESTART_AFTER_MS, for as long as it is not closed: changes missed while it was
 *   down are in the new listing. A dropped connection makes the mirror not current at once and
 *   ends the watch once the connection is back (`followConnection`); a failed start or listing,
 *   or a closed subscription, ends it too.
 * - Each user keeps its entries as its readers ask for them (`kept`), so a lookup costs a map
 *   read, never a scan; what a deleted, purged or expired key comes to is `kept.delete`.
 * - `watch` resolves once the first listing is applied, or at `readyWithinMs` (a service starts
 *   even when NATS is slow; its readers read the bucket meanwhile).
 */
export class WatchedKeys<T, S extends KeptEntries<T> = Map<string, T>> {
  private isCurrent = false;
  private stopped = false;
  private stopWatch: (() => void) | undefined;

  private constructor(
    private readonly kv: KV,
    private readonly options: WatchedKeysOptions<T, S>,
  ) {}

  /** Starts watching; resolves once the keys were read (or at `readyWithinMs`, readers reading the bucket until then). */
  static async watch<T, S extends KeptEntries<T>>(kv: KV, options: WatchedKeysOptions<T, S>): Promise<WatchedKeys<T, S>> {
    const watched = new WatchedKeys(kv, options);
    await Promise.race([watched.run(), new Promise((resolve) => setTimeout(resolve, options.readyWithinMs ?? 5_000).unref())]);
    return watched;
  }

  /** The entries kept when the watch is current; undefined when the caller must read the bucket. */
  current(): S | undefined {
    return this.isCurrent ? this.options.kept : undefined;
  }

  /** A value this replica wrote (or read): kept at once, before the watch brings it back. */
  note(key: string, value: Uint8Array, revision: number): void {
    const held = this.options.check({ key, value, revision });
    if (held === undefined) this.options.kept.delete(key);
    else this.options.kept.set(key, held);
  }

  /** A key this replica deleted: dropped at once, before the watch brings the deletion back. */
  forget(key: string): void {
    this.options.kept.delete(key);
  }

  close(): void {
    this.stopped = true;
    this.isCurrent = false;
    this.stopWatch?.();
  }

  /**
   * A connection that drops leaves the mirror not current at once (changes made meanwhile were
   * never heard), and the watch starts again once it is back. nats.js would otherwise resume its
   * ordered consumer only after missing its heartbeats, seconds during which a mark written on
   * another replica (a revoked token) would go unheard.
   */
  private async followConnection(): Promise<void> {
    // The bucket's JetStream client holds its connection (not in its declared type).
    const nc = (this.kv as unknown as { js?: { nc?: NatsConnection } }).js?.nc;
    if (!nc) return;
    for await (const status of nc.status()) {
      if (this.stopped) return;
      if (status.type === 'disconnect') this.isCurrent = false;
      if (status.type === 'reconnect') {
        this.isCurrent = false;
        this.stopWatch?.();
      }
    }
  }

  /** Resolves when the first listing was applied; keeps watching, and starts again after a failure, in the background. */
  private run(): Promise<void> {
    void this.followConnection().catch(() => undefined);
    return new Promise((caughtUp) => {
      const loop = async () => {
        while (!this.stopped) {
          try {
            await this.follow(caughtUp);
          } catch (error) {
            this.options.log.warn({ err: error }, this.options.failure);
          }
          this.isCurrent = false;
          if (!this.stopped) await new Promise((r) => setTimeout(r, RESTART_AFTER_MS));
        }
      };
      void loop();
    });
  }

  /** One watch, from its start to its end (a failure throws). */
  private async follow(caughtUp: () => void): Promise<void> {
    const { filter = '>', values, kept } = this.options;
    // Changes from now on first, then the listing: no change falls between the two.
    const watch = await this.kv.watch({ key: filter, include: KvWatchInclude.UpdatesOnly, headers_only: !values });
    this.stopWatch = () => watch.stop();
    // Closed while the watch was being created: nobody would stop it otherwise.
    if (this.stopped) watch.stop();
    let watching = true;
    let changed: Set<string> | undefined = new Set<string>();
    kept.clear();
    const listing = liveEntries(this.kv, filter).then((entries) => {
      for (const entry of entries) if (!changed?.has(entry.key)) this.note(entry.key, entry.value, entry.revision);
      changed = undefined;
      // A watch that ended while the listing ran leaves nothing current.
      if (!watching) return;
      this.isCurrent = true;
      caughtUp();
    });
    listing.catch(() => watch.stop());
    try {
      for await (const entry of watch) {
        const key = entry.key;
        changed?.add(key);
        if (isLiveEntry(entry)) this.note(key, entry.value, entry.revision);
        else kept.delete(key);
      }
    } finally {
      watching = false;
      this.isCurrent = false;
    }
    await listing;
  }
}
