import { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import type { Bucket } from '@nats-io/kv';
import { isLiveEntry, ErrorCode, GatewayError, RoomIndex, buckets, decodeChecked, kvKeys, liveEntries, openBucket, participantRecordSchema, type KV, type NatsConnection } from '@gateway/common';

/** Largest participant record written to KV. */
export const MAX_RECORD_BYTES = 64 * 1024;

/** Whether a signaling replica is alive (ReplicaLiveness): its participants' records are fresh while it is. */
export interface OwnerLiveness {
  /** Alive now; a replica not seen yet (one that just started) is looked up. */
  isAliveNow(replicaId: string): Promise<boolean>;
}

/**
 * Live participants in NATS KV, so that any signaling replica can list a room and take a
 * session back on resume. The owning replica writes a record when its session changes; a record
 * is stale when its owner is no longer alive (ReplicaLiveness), and the other replicas sweep it.
 * A store opened without liveness (the recorder's) takes every record as fresh. A room is listed
 * through its record of who may be there (RoomIndex), which the writers keep.
 */
export class ParticipantStore {
  private readonly members: RoomIndex;

  private constructor(
    private readonly kv: KV,
    private readonly liveness: OwnerLiveness | undefined,
  ) {
    this.members = new RoomIndex(kv);
  }

  static async open(nc: NatsConnection, liveness?: OwnerLiveness): Promise<ParticipantStore> {
    return new ParticipantStore(await openBucket(nc, buckets.participants), liveness);
  }

  async get(tenant: string, room: string, participantId: string): Promise<{ record: ParticipantRecord; revision: number } | undefined> {
    const entry = await this.kv.get(kvKeys.participant(tenant, room, participantId));
    if (!isLiveEntry(entry)) return undefined;
    const record = readRecord(entry.value, participantId);
    return record ? { record, revision: entry.revision } : undefined;
  }

  /**
   * Writes the record; with `revision`, only if nobody changed it since (compare-and-set). A write
   * without one (a session's first on this replica) names the participant among the room's
   * members first, so that no listing can miss a record that is there.
   */
  async put(tenant: string, room: string, record: ParticipantRecord, revision?: number): Promise<number> {
    const participantId = record.info!.participantId;
    const key = kvKeys.participant(tenant, room, participantId);
    const value = ParticipantRecord.encode({ ...record, refreshedAtMs: Date.now() }).finish();
    // The per-participant limits keep a record far below this; a record over it is refused here
    // rather than by NATS (whose payload limit would fail every later write of the session).
    if (value.length > MAX_RECORD_BYTES) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a participant record is limited to ${MAX_RECORD_BYTES} bytes`);
    if (revision !== undefined) return this.kv.update(key, value, revision);
    await this.members.add(tenant, room, participantId);
    return this.kv.put(key, value);
  }

  /**
   * Purges the key's messages from the bucket's stream rather than writing a delete marker: a
   * marker would stay for the bucket's TTL (days), read by every listing of the room and the
   * tenant. Only messages up to the revision read here go: a record rewritten meanwhile (a
   * takeover) is newer, and stays.
   */
  async delete(tenant: string, room: string, participantId: string): Promise<void> {
    const key = kvKeys.participant(tenant, room, participantId);
    const entry = await this.kv.get(key).catch(() => null);
    if (entry) {
      const bucket = this.kv as unknown as Bucket;
      await bucket.jsm.streams.purge(bucket.stream, { filter: `${bucket.prefix}.${key}`, seq: entry.revision + 1 }).catch(() => undefined);
      // Rewritten meanwhile (a takeover): still a member.
      if (isLiveEntry(await this.kv.get(key).catch(() => null))) return;
    }
    // After the record: until then a listing must still find it. A failure leaves the id for a
    // later listing to drop (RoomIndex.abandoned).
    await this.members.remove(tenant, room, [participantId]).catch(() => undefined);
  }

  /** Every fresh record of the room. */
  async list(tenant: string, room: string): Promise<ParticipantRecord[]> {
    return this.withoutStale(await this.all(tenant, room), false);
  }

  /** The tenant's rooms with fresh participant records, and how many each holds (the room API's listing). */
  async rooms(tenant: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    const records: Array<{ room: string; record: ParticipantRecord }> = [];
    for (const entry of await liveEntries(this.kv, `${tenant}.*.*`)) {
      const [, room = '', participantId = ''] = entry.key.split('.');
      const record = readRecord(entry.value, participantId);
      // A record marked removed (room API) is on its way out.
      if (record && record.removedAtMs === 0) records.push({ room, record });
    }
    const stale = await this.staleOwners(records.map((r) => r.record));
    for (const { room, record } of records) if (!stale.has(record.owner)) counts.set(room, (counts.get(room) ?? 0) + 1);
    return counts;
  }

  /** Whether a record's owner is gone (its replica died or stopped without anyone taking the session over). */
  async isStale(record: ParticipantRecord): Promise<boolean> {
    return this.liveness !== undefined && !(await this.liveness.isAliveNow(record.owner));
  }

  /** Records of the room whose owner is gone. */
  async stale(tenant: string, room: string): Promise<ParticipantRecord[]> {
    return this.withoutStale(await this.all(tenant, room), true);
  }

  /** The records whose owner is alive, or (`stale`) those whose owner is gone. */
  private async withoutStale(records: ParticipantRecord[], stale: boolean): Promise<ParticipantRecord[]> {
    const gone = await this.staleOwners(records);
    return records.filter((r) => gone.has(r.owner) === stale);
  }

  /** The owners of these records that are gone, each asked once. */
  private async staleOwners(records: Iterable<ParticipantRecord>): Promise<Set<string>> {
    const gone = new Set<string>();
    if (!this.liveness) return gone;
    for (const owner of new Set([...records].map((r) => r.owner))) if (!(await this.liveness.isAliveNow(owner))) gone.add(owner);
    return gone;
  }

  /** The room's records, each read by its key, as the room's index names them. */
  private async all(tenant: string, room: string): Promise<ParticipantRecord[]> {
    const members = await this.members.read(tenant, room).catch(() => undefined);
    if (!members) return this.allByFilter(tenant, room);
    const ids = [...members.keys()];
    const entries = await Promise.all(ids.map((id) => this.kv.get(kvKeys.participant(tenant, room, id))));
    const records: ParticipantRecord[] = [];
    const withoutRecord: string[] = [];
    entries.forEach((entry, i) => {
      const record = isLiveEntry(entry) ? readRecord(entry.value, ids[i]!) : undefined;
      if (record) records.push(record);
      else if (!isLiveEntry(entry)) withoutRecord.push(ids[i]!);
    });
    // Only a writer (a store with liveness: signaling's) tidies the index.
    const abandoned = this.members.abandoned(members, withoutRecord);
    if (this.liveness && abandoned.length > 0) await this.members.remove(tenant, room, abandoned).catch(() => undefined);
    return records;
  }

  /**
   * The room's records found by the subjects of the bucket's stream: for a room whose index is
   * unreadable. nats-server goes through every room's subjects to answer it.
   */
  private async allByFilter(tenant: string, room: string): Promise<ParticipantRecord[]> {
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
