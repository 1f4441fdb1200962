import type { KV } from '@nats-io/kv';
import { jetstream } from '@nats-io/jetstream';
import { RoomSessionRecord, SessionEnded } from '@gateway/proto/gateway/events/v1/events';
import {
  isLiveEntry,
  ErrorCode,
  GatewayError,
  decodeChecked,
  kvKeys,
  liveEntries,
  liveKeys,
  roomSessionRecordSchema,
  natsHeadersWithTrace,
  newId,
  openParticipants,
  sealParticipants,
  subjects,
  type Keyring,
  type NatsConnection,
  type SessionParticipant,
  type WebhookEvents,
} from '@gateway/common';

/** Compare-and-set retries when replicas update one room's record at once. */
const MAX_ATTEMPTS = 10;
/** Rooms whose last written session record a replica remembers (RoomSessions.written). */
const MAX_WRITTEN_REMEMBERED = 50_000;

/** A session record as this replica last wrote or read it. */
interface WrittenSession {
  revision: number;
  sessionId: string;
  startedAtMs: number;
  participants: SessionParticipant[];
}

/**
 * The session of each live room: when it started and who took part, with what the customer's
 * app gave about them (sealed). When the room ends the record is claimed (and so deleted) by one
 * replica and becomes a session.ended event for crm-sync.
 */
export class RoomSessions {
  /**
   * The session records this replica wrote last, by key, with their revision: a join in a room
   * whose record nobody else changed since updates it without reading and opening it first.
   */
  private readonly written = new Map<string, WrittenSession>();
  /** Per room key, the last of this replica's joins under way (RoomSessions.join). */
  private readonly joining = new Map<string, Promise<void>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    private readonly keyring: Keyring,
    private readonly webhooks?: WebhookEvents,
  ) {}

  /**
   * Adds (or updates) a participant, starting the session with the room's first one. This
   * replica's joins of one room take their turn: at once, each would lose the compare-and-set to
   * the others and read again, and fifty joining together ran out of attempts.
   */
  join(tenant: string, room: string, participant: SessionParticipant): Promise<void> {
    const key = kvKeys.room(tenant, room);
    const previous = this.joining.get(key) ?? Promise.resolve();
    const joined = previous.then(() => this.joinNow(key, tenant, room, participant));
    const settled = joined.catch(() => undefined);
    this.joining.set(key, settled);
    void settled.then(() => {
      if (this.joining.get(key) === settled) this.joining.delete(key);
    });
    return joined;
  }

  private async joinNow(key: string, tenant: string, room: string, participant: SessionParticipant): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      // What this replica last wrote is tried first, without reading it back: when anyone
      // changed it since, the compare-and-set fails and the record is read.
      const current = (attempt === 0 ? this.written.get(key) : undefined) ?? (await this.read(key));
      const sessionId = current?.sessionId ?? newId('SE');
      const startedAtMs = current?.startedAtMs ?? Date.now();
      const others = (current?.participants ?? []).filter((p) => p.participantId !== participant.participantId);
      // An end user erased earlier in this session stays erased when they join again.
      const joining = others.some((p) => p.erased && p.externalId === participant.externalId) ? erasedEntry(participant) : participant;
      const participants = [...others, joining];
      const record = RoomSessionRecord.encode({ sessionId, startedAtMs, sealedParticipants: await sealParticipants(this.keyring, tenant, sessionId, participants) }).finish();
      try {
        const revision = current ? await this.kv.update(key, record, current.revision) : await this.kv.create(key, record);
        this.remember(key, { revision, sessionId, startedAtMs, participants });
        if (!current) this.webhooks?.emit(tenant, { type: 'room.started', key: sessionId, data: { room: { name: room, sessionId, startedAtMs: Number(startedAtMs) } } });
        return;
      } catch {
        // Another replica (or a finish, an erasure) changed it meanwhile: read again.
        this.written.delete(key);
      }
    }
    throw new Error('the room session record kept changing');
  }

  /** A live room's session record, its participants opened. */
  private async read(key: string): Promise<WrittenSession | undefined> {
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return undefined;
    const record = readRecord(entry.value);
    const tenant = key.split('.')[0]!;
    return {
      revision: entry.revision,
      sessionId: record.sessionId,
      startedAtMs: Number(record.startedAtMs),
      participants: await openParticipants(this.keyring, tenant, record.sessionId, record.sealedParticipants),
    };
  }

  private remember(key: string, session: WrittenSession): void {
    // Only a shortcut: dropping it all costs one read per room at its next join.
    if (this.written.size >= MAX_WRITTEN_REMEMBERED) this.written.clear();
    this.written.set(key, session);
  }

  /**
   * The room ended: takes its session record, so that of the replicas noticing the empty room at
   * once exactly one finishes it. The record moves to an "ending" key (created only once) and
   * the room's key is deleted (compare-and-set: a participant who joined meanwhile keeps the
   * session going). The ending record stays until `finished`, so a finisher that fails or dies
   * leaves it for `takeStale`. A participant joining from now on starts a new session. Returns
   * undefined when another caller took it first or the room is not empty after all.
   */
  async claim(tenant: string, room: string): Promise<RoomSessionRecord | undefined> {
    const key = kvKeys.room(tenant, room);
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return undefined;
    const record = readRecord(entry.value);
    const ending = kvKeys.endingRoomSession(tenant, room, record.sessionId);
    try {
      await this.kv.create(ending, entry.value);
    } catch {
      return undefined;
    }
    try {
      await this.kv.delete(key, { previousSeq: entry.revision });
    } catch {
      await this.kv.purge(ending).catch(() => undefined);
      return undefined;
    }
    await this.kv.purge(key).catch(() => undefined);
    this.written.delete(key);
    return record;
  }

  /** The session was announced: its ending record goes. */
  async finished(tenant: string, room: string, record: RoomSessionRecord): Promise<void> {
    await this.kv.purge(kvKeys.endingRoomSession(tenant, room, record.sessionId));
  }

  /**
   * Sessions whose finisher stopped (it failed, or its replica died) more than `staleMs` ago.
   * Each is taken by rewriting it (compare-and-set), which makes it fresh again: one replica
   * takes it, and takes it again only after another `staleMs`.
   */
  async takeStale(staleMs: number): Promise<Array<{ tenant: string; room: string; record: RoomSessionRecord }>> {
    const taken: Array<{ tenant: string; room: string; record: RoomSessionRecord }> = [];
    for (const entry of await liveEntries(this.kv, kvKeys.endingRoomSessions)) {
      const key = entry.key;
      if (Date.now() - entry.created.getTime() < staleMs) continue;
      try {
        await this.kv.update(key, entry.value, entry.revision);
      } catch {
        continue;
      }
      const [tenant, room] = key.split('.') as [string, string];
      taken.push({ tenant, room, record: readRecord(entry.value) });
    }
    return taken;
  }

  /** Rooms with a live session record (not those being finished). */
  async rooms(): Promise<Array<{ tenant: string; room: string }>> {
    return (await liveKeys(this.kv, '*.*')).map((key) => {
      const [tenant, room] = key.split('.') as [string, string];
      return { tenant, room };
    });
  }

  /**
   * The sessions of a tenant's live rooms and of rooms being finished, with their participants
   * opened: what a data-subject request looks through.
   */
  async ofTenant(tenant: string): Promise<Array<{ key: string; room: string; ending: boolean; participants: SessionParticipant[] }>> {
    const entries = [...(await liveEntries(this.kv, kvKeys.roomSessionsOfTenant(tenant))), ...(await liveEntries(this.kv, kvKeys.endingRoomSessionsOfTenant(tenant)))];
    const found: Array<{ key: string; room: string; ending: boolean; participants: SessionParticipant[] }> = [];
    for (const entry of entries) {
      const key = entry.key;
      const record = readRecord(entry.value);
      const room = key.split('.')[1]!;
      found.push({ key, room, ending: key.includes('.ending.'), participants: await openParticipants(this.keyring, tenant, record.sessionId, record.sealedParticipants) });
    }
    return found;
  }

  /**
   * Changes the participants of a session record (a live room's or an ending one's) with
   * compare-and-set; `edit` returns the new list, or undefined to leave the record as it is.
   */
  async changeParticipants(tenant: string, key: string, edit: (participants: SessionParticipant[]) => SessionParticipant[] | undefined): Promise<void> {
    // An erasure or a rectification leaves no copy of what it changed here.
    this.written.delete(key);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.kv.get(key);
      if (!isLiveEntry(entry)) return;
      const record = readRecord(entry.value);
      const next = edit(await openParticipants(this.keyring, tenant, record.sessionId, record.sealedParticipants));
      if (!next) return;
      const changed = RoomSessionRecord.encode({ ...record, sealedParticipants: await sealParticipants(this.keyring, tenant, record.sessionId, next) }).finish();
      try {
        await this.kv.update(key, changed, entry.revision);
        return;
      } catch {
        // Changed meanwhile (a join): read again.
      }
    }
    throw new GatewayError(ErrorCode.UNAVAILABLE, 'the room session record kept changing');
  }

  /** External ids of the end users erased during the room's live session. */
  async erasedIn(tenant: string, room: string): Promise<Set<string>> {
    const entry = await this.kv.get(kvKeys.room(tenant, room));
    if (!isLiveEntry(entry)) return new Set();
    const record = readRecord(entry.value);
    return erasedOf(await openParticipants(this.keyring, tenant, record.sessionId, record.sealedParticipants));
  }

  /**
   * A claimed session as it is now: an erasure or a rectification during the finish changes
   * the ending record, and the finisher reads it again before announcing.
   */
  async current(tenant: string, room: string, claimed: RoomSessionRecord): Promise<RoomSessionRecord> {
    const entry = await this.kv.get(kvKeys.endingRoomSession(tenant, room, claimed.sessionId));
    return isLiveEntry(entry) ? readRecord(entry.value) : claimed;
  }

  /** The participants of a session record, opened. */
  participantsOf(tenant: string, record: RoomSessionRecord): Promise<SessionParticipant[]> {
    return openParticipants(this.keyring, tenant, record.sessionId, record.sealedParticipants);
  }

  /**
   * Announces a claimed session; JetStream drops a repeated announcement by its id. Erased end
   * users are left out; a session of nobody else is not announced.
   */
  async announce(tenant: string, room: string, record: RoomSessionRecord, conversationId: string | undefined): Promise<void> {
    // The room's end is the tenant's to know whoever was in it (erased end users included): it names nobody.
    this.webhooks?.emit(tenant, {
      type: 'room.ended',
      key: record.sessionId,
      data: { room: { name: room, sessionId: record.sessionId, startedAtMs: Number(record.startedAtMs), endedAtMs: Date.now() } },
    });
    const participants = await openParticipants(this.keyring, tenant, record.sessionId, record.sealedParticipants);
    const kept = participants.filter((p) => !p.erased);
    if (kept.length === 0 && participants.length > 0) return;
    const sealedParticipants = kept.length === participants.length ? record.sealedParticipants : await sealParticipants(this.keyring, tenant, record.sessionId, kept);
    const event = SessionEnded.encode({
      tenant,
      room,
      sessionId: record.sessionId,
      startedAtMs: record.startedAtMs,
      endedAtMs: Date.now(),
      conversationId: conversationId ?? '',
      sealedParticipants,
    }).finish();
    await jetstream(this.nc).publish(subjects.sessionEnded(tenant), event, { msgID: record.sessionId, timeout: 10_000, headers: natsHeadersWithTrace() });
  }
}

/** A participant entry once its end user asked for erasure: no contact details left. */
export function erasedEntry(participant: SessionParticipant): SessionParticipant {
  return { ...participant, crmContactId: '', phoneNumber: '', deviceIds: [], erased: true };
}

function erasedOf(participants: SessionParticipant[]): Set<string> {
  return new Set(participants.filter((p) => p.erased).map((p) => p.externalId));
}

/** A room session record read back from KV, checked before use. */
function readRecord(bytes: Uint8Array): RoomSessionRecord {
  try {
    return decodeChecked(RoomSessionRecord, bytes, roomSessionRecordSchema, 'room session record');
  } catch (error) {
    // Ours to have written: a client is told of an internal failure, not of a bad frame.
    throw new GatewayError(ErrorCode.INTERNAL, 'the room session record is unreadable', { cause: error });
  }
}
