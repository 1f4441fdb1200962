import { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import type { Bucket } from '@nats-io/kv';
import {
  isLiveEntry,
  ErrorCode,
  GatewayError,
  bucketTtlMs,
  buckets,
  decodeChecked,
  kvKeys,
  liveEntries,
  liveKeys,
  openBucket,
  participantRecordSchema,
  type KV,
  type NatsConnection,
} from '@gateway/common';

export const DEFAULT_RECORD_REFRESH_MS = 15_000;
/** Largest participant record written to KV. */
export const MAX_RECORD_BYTES = 64 * 1024;

/**
 * Live participants in NATS KV, so that any signaling replica can list a room and take a
 * session back on resume. The owning replica refreshes its records; the bucket's TTL removes
 * the records of a replica that died.
 */
export class ParticipantStore {
  /** Records not refreshed for this long belong to a replica that is gone. */
  private readonly staleMs: number;

  private constructor(
    private readonly kv: KV,
    /** How often the owning replica refreshes the records of its sessions. */
    readonly refreshMs: number,
  ) {
    this.staleMs = refreshMs * 3;
  }

  /** `refreshMs`: how often signaling replicas refresh their records (SIGNALING_RECORD_REFRESH_SECONDS). */
  static async open(nc: NatsConnection, refreshMs = DEFAULT_RECORD_REFRESH_MS): Promise<ParticipantStore> {
    // The bucket's TTL (provisioned, catalog.ts) removes what even the sweep of the other
    // replicas missed; a live record must outlast several refreshes, and a dead replica's must
    // stay until the sweep has seen it stale.
    const ttlMs = await bucketTtlMs(nc, buckets.participants);
    if (ttlMs > 0 && refreshMs * 4 > ttlMs) {
      throw new GatewayError(
        ErrorCode.CONFIG_INVALID,
        `invalid configuration:\n  SIGNALING_RECORD_REFRESH_SECONDS must be at most a quarter of the ${buckets.participants} bucket's TTL (${ttlMs / 1000} s)`,
      );
    }
    return new ParticipantStore(await openBucket(nc, buckets.participants), refreshMs);
  }

  async get(tenant: string, room: string, participantId: string): Promise<{ record: ParticipantRecord; revision: number } | undefined> {
    const entry = await this.kv.get(kvKeys.participant(tenant, room, participantId));
    if (!isLiveEntry(entry)) return undefined;
    const record = readRecord(entry.value, participantId);
    return record ? { record, revision: entry.revision } : undefined;
  }

  /** Writes the record; with `revision`, only if nobody changed it since (compare-and-set). */
  async put(tenant: string, room: string, record: ParticipantRecord, revision?: number): Promise<number> {
    const key = kvKeys.participant(tenant, room, record.info!.participantId);
    const value = ParticipantRecord.encode({ ...record, refreshedAtMs: Date.now() }).finish();
    // The per-participant limits keep a record far below this; a record over it is refused here
    // rather than by NATS (whose payload limit would fail every later write of the session).
    if (value.length > MAX_RECORD_BYTES) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a participant record is limited to ${MAX_RECORD_BYTES} bytes`);
    return revision === undefined ? this.kv.put(key, value) : this.kv.update(key, value, revision);
  }

  async delete(tenant: string, room: string, participantId: string): Promise<void> {
    await this.kv.delete(kvKeys.participant(tenant, room, participantId)).catch(() => undefined);
  }

  /** Every fresh record of the room. */
  async list(tenant: string, room: string): Promise<ParticipantRecord[]> {
    const now = Date.now();
    return (await this.all(tenant, room)).filter((r) => now - r.refreshedAtMs < this.staleMs);
  }

  /**
   * Whether a tenant has `limit` rooms with participants. The keys the bucket's stream holds are
   * counted first (cheap, but they include records deleted in the last TTL); only when those
   * reach the limit are the live records read one by one.
   */
  async roomCountReaches(tenant: string, limit: number): Promise<boolean> {
    const rooms = (keys: string[]) => new Set(keys.map((key) => key.split('.')[1]!)).size;
    const bucket = this.kv as unknown as Bucket;
    const prefix = `${bucket.prefix}.`;
    const info = await bucket.jsm.streams.info(bucket.stream, { subjects_filter: `${prefix}${tenant}.*.*` });
    if (rooms(Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length))) < limit) return false;
    return rooms(await liveKeys(this.kv, `${tenant}.*.*`)) >= limit;
  }

  /** The tenant's rooms with fresh participant records, and how many each holds (the room API's listing). */
  async rooms(tenant: string): Promise<Map<string, number>> {
    const now = Date.now();
    const counts = new Map<string, number>();
    for (const entry of await liveEntries(this.kv, `${tenant}.*.*`)) {
      const [, room = '', participantId = ''] = entry.key.split('.');
      const record = readRecord(entry.value, participantId);
      // A record marked removed (room API) is on its way out.
      if (!record || this.isStale(record, now) || record.removedAtMs > 0) continue;
      counts.set(room, (counts.get(room) ?? 0) + 1);
    }
    return counts;
  }

  /** Whether a record was last refreshed longer ago than the stale limit (its replica is gone). */
  isStale(record: ParticipantRecord, now = Date.now()): boolean {
    return now - record.refreshedAtMs >= this.staleMs;
  }

  /** Records of the room older than the stale limit: their replica is gone. */
  async stale(tenant: string, room: string): Promise<ParticipantRecord[]> {
    const now = Date.now();
    return (await this.all(tenant, room)).filter((r) => now - r.refreshedAtMs >= this.staleMs);
  }

  private async all(tenant: string, room: string): Promise<ParticipantRecord[]> {
    // Each key is read once (liveEntries reads the values it checks).
    const records: ParticipantRecord[] = [];
    for (const entry of await liveEntries(this.kv, kvKeys.participantsOfRoom(tenant, room))) {
      const record = readRecord(entry.value, entry.key.split('.')[2] ?? '');
      if (record) records.push(record);
    }
    return records;
  }
}

/**
 * A record read back from KV, checked before anything trusts it (grants are rebuilt from it on a
 * resume): undefined when it does not decode, breaks a bound or names another participant than
 * its key. Such a record counts as absent: its session cannot be resumed or listed.
 */
function readRecord(bytes: Uint8Array, participantId: string): ParticipantRecord | undefined {
  try {
    const record = decodeChecked(ParticipantRecord, bytes, participantRecordSchema, 'participant record');
    return record.info?.participantId === participantId ? record : undefined;
  } catch {
    return undefined;
  }
}
