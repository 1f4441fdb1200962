import { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { ErrorCode, GatewayError, bucketTtlMs, buckets, kvKeys, liveKeys, openBucket, type KV, type NatsConnection } from '@gateway/common';

export const DEFAULT_RECORD_REFRESH_MS = 15_000;

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
      throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  SIGNALING_RECORD_REFRESH_SECONDS must be at most a quarter of the ${buckets.participants} bucket's TTL (${ttlMs / 1000} s)`);
    }
    return new ParticipantStore(await openBucket(nc, buckets.participants), refreshMs);
  }

  async get(tenant: string, room: string, participantId: string): Promise<{ record: ParticipantRecord; revision: number } | undefined> {
    const entry = await this.kv.get(kvKeys.participant(tenant, room, participantId));
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return { record: ParticipantRecord.decode(entry.value), revision: entry.revision };
  }

  /** Writes the record; with `revision`, only if nobody changed it since (compare-and-set). */
  async put(tenant: string, room: string, record: ParticipantRecord, revision?: number): Promise<number> {
    const key = kvKeys.participant(tenant, room, record.info!.participantId);
    const value = ParticipantRecord.encode({ ...record, refreshedAtMs: Date.now() }).finish();
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

  /** Records of the room older than the stale limit: their replica is gone. */
  async stale(tenant: string, room: string): Promise<ParticipantRecord[]> {
    const now = Date.now();
    return (await this.all(tenant, room)).filter((r) => now - r.refreshedAtMs >= this.staleMs);
  }

  private async all(tenant: string, room: string): Promise<ParticipantRecord[]> {
    const keys: string[] = [];
    keys.push(...(await liveKeys(this.kv, kvKeys.participantsOfRoom(tenant, room))));
    const entries = await Promise.all(keys.map((key) => this.kv.get(key)));
    return entries
      .filter((e) => e !== null && e.operation === 'PUT' && e.length > 0)
      .map((e) => ParticipantRecord.decode(e!.value));
  }
}
