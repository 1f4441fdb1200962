import { z } from 'zod';
import { SIGNALING_REPLICA_TTL_MS, buckets, isLiveEntry, liveEntries, openBucket, type KV, type Logger, type NatsConnection } from '@gateway/common';

export const DEFAULT_HEARTBEAT_MS = 5_000;
/** How long a replica looked up and not found stays not found before it is read again. */
const NOT_FOUND_HOLD_MS = 1_000;

/** What a replica's liveness key holds: how many rooms it serves per tenant (the tenants' room limits). */
const replicaBeatSchema = z.object({
  rooms: z.record(z.string().max(128), z.number().int().min(0).max(1_000_000)).refine((rooms) => Object.keys(rooms).length <= 1_000, 'too many tenants'),
});
export type ReplicaBeat = z.infer<typeof replicaBeatSchema>;

/** A replica as last read: its key's revision and when this replica saw that revision first. */
interface Seen {
  revision: number;
  seenAtMs: number;
  beat: ReplicaBeat;
}

/**
 * Which signaling replicas are alive. Each replica writes its own key every heartbeat; the
 * bucket drops a key 15 s after its last write. Every heartbeat a replica reads the whole bucket
 * (one listing and a get per replica: a handful), and counts another alive while its key is
 * there and its revision moved within three heartbeats, by this replica's own clock (no
 * comparison of clocks across machines). A replica seen before and not alive now has departed:
 * `onDeparted` hears of it once, and the participants it held are swept.
 *
 * A participant record is stale exactly when its owner is not alive, so records are written only
 * when a session changes, never to keep them fresh.
 */
export class ReplicaLiveness {
  private readonly seen = new Map<string, Seen>();
  private timer: NodeJS.Timeout | undefined;
  private readonly staleMs: number;
  private departedListeners: Array<(replicaIds: string[]) => void> = [];
  /** The other replicas alive at the last read: one missing from the next has departed. */
  private aliveAtLastRead = new Set<string>();
  /** Departed replicas and the revision their key last had: a key left at it is no sign of life. */
  private readonly departedAt = new Map<string, number>();
  /** Replicas just looked up and not found alive, until when that answer holds (one read per second at most). */
  private readonly notFoundUntil = new Map<string, number>();

  private constructor(
    private readonly kv: KV,
    readonly replicaId: string,
    private readonly heartbeatMs: number,
    /** What this replica announces with each heartbeat. */
    private readonly announce: () => ReplicaBeat,
    private readonly log: Logger,
  ) {
    this.staleMs = heartbeatMs * 3;
  }

  /** Opens the bucket, writes the first heartbeat and reads who else is alive. */
  static async open(nc: NatsConnection, options: { replicaId: string; heartbeatMs?: number; announce: () => ReplicaBeat; log: Logger }): Promise<ReplicaLiveness> {
    const liveness = new ReplicaLiveness(await openBucket(nc, buckets.signalingReplicas), options.replicaId, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, options.announce, options.log);
    await liveness.beat();
    await liveness.read();
    return liveness;
  }

  /** Why a heartbeat interval does not fit the bucket's TTL, or undefined. */
  static heartbeatProblem(heartbeatMs: number): string | undefined {
    return heartbeatMs * 3 > SIGNALING_REPLICA_TTL_MS
      ? `SIGNALING_HEARTBEAT_SECONDS must be at most a third of the ${buckets.signalingReplicas} bucket's TTL (${SIGNALING_REPLICA_TTL_MS / 1000} s)`
      : undefined;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.heartbeatMs);
  }

  /** Stops the heartbeat; the key expires with the bucket's TTL (the sessions stay resumable until then and after). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  onDeparted(listener: (replicaIds: string[]) => void): void {
    this.departedListeners.push(listener);
  }

  /** Whether the replica is alive: this one always; another while its heartbeat moves. */
  isAlive(replicaId: string, now = Date.now()): boolean {
    if (replicaId === this.replicaId) return true;
    const seen = this.seen.get(replicaId);
    return seen !== undefined && now - seen.seenAtMs < this.staleMs;
  }

  /**
   * Whether the replica is alive, reading its key when this replica has not seen it: one that
   * started since the last read (its participants are live at once, not a heartbeat later).
   */
  async isAliveNow(replicaId: string, now = Date.now()): Promise<boolean> {
    if (this.isAlive(replicaId, now)) return true;
    if (this.seen.has(replicaId) || (this.notFoundUntil.get(replicaId) ?? 0) > now) return false;
    const entry = await this.kv.get(replicaId).catch(() => null);
    const beat = isLiveEntry(entry) && this.departedAt.get(replicaId) !== entry.revision ? readBeat(entry.value) : undefined;
    if (!entry || !beat) {
      if (this.notFoundUntil.size > 1_000) this.notFoundUntil.clear();
      this.notFoundUntil.set(replicaId, now + NOT_FOUND_HOLD_MS);
      return false;
    }
    this.notFoundUntil.delete(replicaId);
    if (!this.seen.has(replicaId)) this.seen.set(replicaId, { revision: entry.revision, seenAtMs: now, beat });
    return this.isAlive(replicaId, now);
  }

  /** The other live replicas' last announcements. */
  others(now = Date.now()): ReplicaBeat[] {
    return [...this.seen.entries()].filter(([id]) => id !== this.replicaId && this.isAlive(id, now)).map(([, seen]) => seen.beat);
  }

  private async tick(): Promise<void> {
    try {
      await this.beat();
    } catch (error) {
      this.log.warn({ err: error }, 'writing the replica heartbeat failed');
    }
    try {
      await this.read();
    } catch (error) {
      this.log.warn({ err: error }, 'reading the replica heartbeats failed');
    }
  }

  private async beat(): Promise<void> {
    await this.kv.put(this.replicaId, JSON.stringify(this.announce()));
  }

  private async read(): Promise<void> {
    const now = Date.now();
    const entries = await liveEntries(this.kv);
    const keys = new Set(entries.map((entry) => entry.key));
    // A departed replica's key that is gone cannot mislead a lookup any more.
    for (const id of this.departedAt.keys()) if (!keys.has(id)) this.departedAt.delete(id);
    for (const entry of entries) {
      const beat = readBeat(entry.value);
      if (!beat) {
        this.log.warn({ replicaId: entry.key }, 'a replica heartbeat that does not decode is ignored');
        continue;
      }
      const known = this.seen.get(entry.key);
      if (!known || known.revision !== entry.revision) this.seen.set(entry.key, { revision: entry.revision, seenAtMs: now, beat });
    }
    const alive = new Set([...this.seen.keys()].filter((id) => id !== this.replicaId && this.isAlive(id, now)));
    const departed = [...this.aliveAtLastRead].filter((id) => !alive.has(id));
    this.aliveAtLastRead = alive;
    // A replica no longer alive is forgotten: should its key come back, it counts as new.
    for (const [id, seen] of this.seen) {
      if (id === this.replicaId || alive.has(id)) continue;
      this.departedAt.set(id, seen.revision);
      this.seen.delete(id);
    }
    if (departed.length === 0) return;
    this.log.warn({ replicaIds: departed }, 'signaling replicas departed; their participants are swept');
    for (const listener of this.departedListeners) listener(departed);
  }
}

/** A heartbeat value read back, checked; undefined when it does not decode. */
function readBeat(bytes: Uint8Array): ReplicaBeat | undefined {
  try {
    const parsed = replicaBeatSchema.safeParse(JSON.parse(new TextDecoder().decode(bytes)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
