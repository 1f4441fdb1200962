import { KvWatchInclude, type KV } from '@nats-io/kv';
import { isLiveEntry, liveEntries, type Logger } from '@gateway/common';

/** A mark as kept here: refused until `untilMs`; `revision` deletes it once it has expired. */
export interface KeptMark {
  untilMs: number;
  revision: number;
}

/**
 * The marks of one kind that stop joins (TokenSessions: revoked tokens, closed rooms), kept from
 * a watch of their keys, so that a join looks them up here rather than reading the bucket. A mark
 * written on another replica is heard of within the watch's delivery. Each value is checked once,
 * as it enters (`read`); one that fails its check holds nothing, as when it was read at each join.
 * Until the watch has read the marks, and whenever it stopped, `lookUp` answers undefined and the
 * caller reads the bucket.
 */
export class JoinMarks {
  private readonly marks = new Map<string, KeptMark>();
  private current = false;
  private stopped = false;
  private stopWatch: (() => void) | undefined;

  private constructor(
    private readonly kv: KV,
    private readonly filter: string,
    private readonly read: (value: Uint8Array) => { untilMs: number } | undefined,
    private readonly log: Logger,
  ) {}

  /** Starts watching the keys matching `filter`; resolves once they were read (or at `readyWithinMs`, reading the bucket until then). */
  static async watch(kv: KV, filter: string, read: (value: Uint8Array) => { untilMs: number } | undefined, log: Logger, readyWithinMs = 5_000): Promise<JoinMarks> {
    const marks = new JoinMarks(kv, filter, read, log);
    await Promise.race([marks.run(), new Promise((resolve) => setTimeout(resolve, readyWithinMs).unref())]);
    return marks;
  }

  /** The mark under `key` (undefined: none) when the watch is current; `unknown` when the bucket must be read. */
  lookUp(key: string): KeptMark | undefined | 'unknown' {
    return this.current ? this.marks.get(key) : 'unknown';
  }

  /** A mark this replica wrote (or read): kept at once, before the watch brings it back. */
  note(key: string, value: Uint8Array, revision: number): void {
    const mark = this.read(value);
    if (mark) this.marks.set(key, { untilMs: mark.untilMs, revision });
    else this.marks.delete(key);
  }

  /** A mark deleted here (expired). */
  forget(key: string): void {
    this.marks.delete(key);
  }

  close(): void {
    this.stopped = true;
    this.current = false;
    this.stopWatch?.();
  }

  /** Resolves when the marks were read (the changes heard since the watch started applied over them); keeps watching, and starts again after a failure. */
  private run(): Promise<void> {
    return new Promise((caughtUp) => {
      const follow = async (): Promise<void> => {
        // Changes from now on first, then the listing: no change falls between the two.
        const watch = await this.kv.watch({ key: this.filter, include: KvWatchInclude.UpdatesOnly });
        this.stopWatch = () => watch.stop();
        const changed = new Set<string>();
        this.marks.clear();
        const listing = liveEntries(this.kv, this.filter).then((entries) => {
          for (const entry of entries) if (!changed.has(entry.key)) this.note(entry.key, entry.value, entry.revision);
          this.current = true;
          caughtUp();
        });
        listing.catch(() => watch.stop());
        for await (const entry of watch) {
          const key = entry.key;
          changed.add(key);
          if (isLiveEntry(entry)) this.note(key, entry.value, entry.revision);
          else this.marks.delete(key);
        }
        await listing;
      };
      const loop = async () => {
        while (!this.stopped) {
          try {
            await follow();
          } catch (error) {
            this.log.warn({ err: error, marks: this.filter }, 'watching the join marks failed; joins read them from the bucket until it runs again');
          }
          this.current = false;
          if (!this.stopped) await new Promise((r) => setTimeout(r, 1_000));
        }
      };
      void loop();
    });
  }
}
