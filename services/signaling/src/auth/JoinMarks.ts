import type { KV } from '@nats-io/kv';
import { WatchedKeys, type Logger } from '@gateway/common';

/** A mark as kept here: refused until `untilMs`; `revision` deletes it once it has expired. */
export interface KeptMark {
  untilMs: number;
  revision: number;
}

/**
 * The marks of one kind that stop joins (TokenSessions: revoked tokens, closed rooms), kept from
 * a watch of their keys (WatchedKeys), so that a join looks them up here rather than reading the
 * bucket. A mark written on another replica is heard of within the watch's delivery. Each value
 * is checked once, as it enters (`read`); one that fails its check holds nothing, as when it was
 * read at each join. Until the watch has read the marks, and whenever it stopped, `lookUp`
 * answers `unknown` and the caller reads the bucket. A mark stays kept until it is deleted
 * (TokenSessions deletes one it finds expired) or the watch starts again.
 */
export class JoinMarks {
  private constructor(private readonly watched: WatchedKeys<KeptMark, Map<string, KeptMark>>) {}

  /** Starts watching the keys matching `filter`; resolves once they were read (or at `readyWithinMs`, reading the bucket until then). */
  static async watch(kv: KV, filter: string, read: (value: Uint8Array) => { untilMs: number } | undefined, log: Logger, readyWithinMs = 5_000): Promise<JoinMarks> {
    const watched = await WatchedKeys.watch(kv, {
      filter,
      values: true,
      check: ({ value, revision }) => {
        const mark = read(value);
        return mark ? { untilMs: mark.untilMs, revision } : undefined;
      },
      kept: new Map<string, KeptMark>(),
      failure: 'watching the join marks failed; joins read them from the bucket until it runs again',
      log: log.child({ marks: filter }),
      readyWithinMs,
    });
    return new JoinMarks(watched);
  }

  /** The mark under `key` (undefined: none) when the watch is current; `unknown` when the bucket must be read. */
  lookUp(key: string): KeptMark | undefined | 'unknown' {
    const marks = this.watched.current();
    return marks ? marks.get(key) : 'unknown';
  }

  /** A mark this replica wrote (or read): kept at once, before the watch brings it back. */
  note(key: string, value: Uint8Array, revision: number): void {
    this.watched.note(key, value, revision);
  }

  /** A mark deleted here (expired). */
  forget(key: string): void {
    this.watched.forget(key);
  }

  close(): void {
    this.watched.close();
  }
}
