import type { ParticipantStore } from '@gateway/cluster';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, type Logger } from '@gateway/common';
import type { RoomHub } from '../rooms/RoomHub.js';
import { callSessionNode } from './nodeCall.js';
import type { ParticipantPersistence, ParticipantSession, SessionLink } from './ParticipantSession.js';
import { relayRoomEvent, type ParticipantLookUp } from './roomEvents.js';

/** How often marking a record removed re-reads it after losing a compare-and-set. */
const REMOVE_MARK_ATTEMPTS = 5;

/** How a removal went on this replica. */
export interface Removal {
  /** False when the record was already marked (another replica removes it; nothing to clean up here). */
  first: boolean;
  /** The replica owning the record when it was marked, when not this one: it took the session over meanwhile and must close its socket too. */
  otherOwner: string | undefined;
  /**
   * The rest of the removal (media closed, record deleted, the room told), for the caller to run
   * once a replica named by `otherOwner` has closed its socket (deleting the record under that
   * replica first would tell its client to rejoin, 4010, rather than that it was removed).
   */
  finish(): Promise<void>;
}

export interface SessionRegistryDeps {
  replicaId: string;
  resumeWindowMs: number;
  store: Pick<ParticipantStore, 'get' | 'put' | 'delete'>;
  hub: Pick<RoomHub, 'add' | 'remove' | 'publish'>;
  /** Gives back the join token's slot a session held. */
  releaseTokenSlot(session: ParticipantSession): Promise<void>;
  /** Refuses any later join with the session's join token until the token expires (a removal). */
  revokeToken(session: ParticipantSession): Promise<void>;
  /** A participant left the room for good: the room may now be empty. */
  participantGone(tenant: string, room: string): void;
  log: Logger;
}

/**
 * The sessions this replica holds, and how each one ends: it leaves (media closed, record
 * deleted, room told), its resume window runs out, its node goes (the client must rejoin), or it
 * moves to another replica (forgotten here, media untouched). A session outlives its socket for
 * the resume window, so a client that reconnects gets its media back without publishing again.
 */
export class SessionRegistry {
  private readonly held = new Map<string, ParticipantSession>();
  private readonly windowTimers = new Map<ParticipantSession, NodeJS.Timeout>();
  /** What sessions write their records with; a session that lost its record is forgotten. */
  readonly persistence: ParticipantPersistence;

  constructor(private readonly deps: SessionRegistryDeps) {
    this.persistence = { replicaId: deps.replicaId, store: deps.store, lost: (session) => this.forget(session) };
  }

  get size(): number {
    return this.held.size;
  }

  get(participantId: string): ParticipantSession | undefined {
    return this.held.get(participantId);
  }

  holds(participantId: string): boolean {
    return this.held.has(participantId);
  }

  all(): ParticipantSession[] {
    return [...this.held.values()];
  }

  /** The sessions held here in one room. */
  inRoom(tenant: string, room: string): ParticipantSession[] {
    return this.all().filter((s) => s.tenant === tenant && s.room === room);
  }

  /** A participant of a session's room as its record has it (one the session has not heard of). */
  private readonly lookUp: ParticipantLookUp = async (session, participantId) => (await this.deps.store.get(session.tenant, session.room, participantId))?.record.info;

  /** Holds the session and relays its room's events to it. */
  add(session: ParticipantSession): void {
    this.held.set(session.participantId, session);
    this.deps.hub.add(session.tenant, session.room, {
      participantId: session.participantId,
      onRoomEvent: (event) => relayRoomEvent(session, event, (reason) => void this.abandon(session, reason), this.lookUp),
    });
  }

  /** Binds the session to a socket, stopping its resume window. */
  attach(session: ParticipantSession, link: SessionLink): void {
    this.clearWindow(session);
    session.attach(link);
  }

  /** The socket dropped: the session keeps its media for the resume window. */
  detach(session: ParticipantSession, link: SessionLink): void {
    if (!session.detach(link)) return;
    void session.persist();
    this.clearWindow(session);
    this.windowTimers.set(
      session,
      setTimeout(() => void this.expireWindow(session), this.deps.resumeWindowMs),
    );
  }

  /** Drops the session from this replica without touching its media (it lives on elsewhere). */
  forget(session: ParticipantSession): void {
    if (!session.markEnded()) return;
    this.clearWindow(session);
    this.deps.hub.remove(session.tenant, session.room, session.participantId);
    if (this.held.get(session.participantId) === session) this.held.delete(session.participantId);
  }

  /** Ends the session: media closed on the SFU, record deleted, token slot given back, everyone told. */
  async end(session: ParticipantSession, reason: 'left' | 'disconnected'): Promise<void> {
    if (session.ended) return;
    this.forget(session);
    await callSessionNode(session, session.sfu.closeParticipant, { room: session.roomRef(), participantId: session.participantId }).catch(() => undefined);
    await this.deleteRecordAndSlot(session);
    this.deps.hub.publish(session.tenant, session.room, { $case: 'participantLeft', value: { participantId: session.participantId, reason } });
    this.deps.participantGone(session.tenant, session.room);
  }

  /**
   * Removes the participant for good (the room API). Before anything else the record is marked
   * removed with compare-and-set and the join token revoked, so that no resume or takeover on any
   * replica (they read the mark) nor a rejoin with the token (refused with REMOVED) brings it
   * back; then the session is forgotten here and its socket closed with 4005. Resolves at that
   * point; media, record and the room's notice follow with `finish`.
   */
  async remove(session: ParticipantSession): Promise<Removal> {
    const link = session.currentLink;
    // Forgotten first: nothing of this replica writes the record or resumes the session from now.
    this.forget(session);
    const mark = await this.markRemoved(session).catch((error: unknown) => {
      session.log.warn({ err: error }, 'marking the participant removed failed; removing it anyway');
      return { first: true, owner: this.deps.replicaId };
    });
    if (mark.first) await this.deps.revokeToken(session).catch((error: unknown) => session.log.warn({ err: error }, 'revoking the join token failed'));
    link?.close(CloseCode.CLOSE_CODE_REMOVED, 'removed from the room');
    // A resume on this replica between the forget and the mark took the session back: close it too.
    const usurper = this.held.get(session.participantId);
    if (usurper && usurper !== session) {
      const usurperLink = usurper.currentLink;
      this.forget(usurper);
      usurperLink?.close(CloseCode.CLOSE_CODE_REMOVED, 'removed from the room');
    }
    const finish = mark.first ? () => this.finishRemoval(session) : () => Promise.resolve();
    return { first: mark.first, otherOwner: mark.owner && mark.owner !== this.deps.replicaId ? mark.owner : undefined, finish };
  }

  /**
   * Marks the record removed (compare-and-set, read again when it changed meanwhile). `first` is
   * false when it already was; a record already gone counts as marked here (nothing can resume it).
   */
  private async markRemoved(session: ParticipantSession): Promise<{ first: boolean; owner: string }> {
    await session.writesSettled();
    for (let attempt = 1; attempt <= REMOVE_MARK_ATTEMPTS; attempt++) {
      const current = await this.deps.store.get(session.tenant, session.room, session.participantId);
      if (!current) return { first: true, owner: this.deps.replicaId };
      if (current.record.removedAtMs > 0) return { first: false, owner: current.record.owner };
      try {
        await this.deps.store.put(session.tenant, session.room, { ...current.record, removedAtMs: Date.now() }, current.revision);
        return { first: true, owner: current.record.owner };
      } catch {
        // Changed meanwhile (a resume claiming it elsewhere): read it again.
      }
    }
    throw new GatewayError(ErrorCode.UNAVAILABLE, 'the participant record kept changing');
  }

  private async finishRemoval(session: ParticipantSession): Promise<void> {
    await callSessionNode(session, session.sfu.closeParticipant, { room: session.roomRef(), participantId: session.participantId }).catch(() => undefined);
    await this.deleteRecordAndSlot(session).catch((error: unknown) => session.log.warn({ err: error }, 'deleting the removed participant failed'));
    this.deps.hub.publish(session.tenant, session.room, { $case: 'participantLeft', value: { participantId: session.participantId, reason: 'removed' } });
    this.deps.participantGone(session.tenant, session.room);
  }

  /**
   * The session's media node is gone: tell the client to join again; nothing to close on the
   * SFU. Participants on the room's other nodes see it leave: it comes back as a new one.
   */
  async abandon(session: ParticipantSession, reason: string): Promise<void> {
    if (session.ended) return;
    const link = session.currentLink;
    this.forget(session);
    // The token's slot is free before the client hears it must join again (with the same token).
    await this.deleteRecordAndSlot(session);
    link?.notify({ $case: 'rejoinRequired', value: { reason } });
    link?.close(CloseCode.CLOSE_CODE_REJOIN_REQUIRED, 'rejoin required');
    this.deps.hub.publish(session.tenant, session.room, { $case: 'participantLeft', value: { participantId: session.participantId, reason: 'node_gone' } });
  }

  /** Writes every held session's record as it stands (at shutdown, for a resume on another replica). */
  async persistAll(): Promise<void> {
    await Promise.all(this.all().map((s) => s.persist()));
  }

  private async deleteRecordAndSlot(session: ParticipantSession): Promise<void> {
    await session.writesSettled();
    await this.deps.store.delete(session.tenant, session.room, session.participantId);
    await this.deps.releaseTokenSlot(session).catch((error: unknown) => session.log.warn({ err: error }, 'releasing the join token failed'));
  }

  private async expireWindow(session: ParticipantSession): Promise<void> {
    this.windowTimers.delete(session);
    if (session.connected || session.ended) return;
    // Another replica may have resumed the session meanwhile; then it is theirs.
    const current = await this.deps.store.get(session.tenant, session.room, session.participantId).catch(() => undefined);
    if (current && current.record.owner !== this.deps.replicaId) {
      this.forget(session);
      return;
    }
    await this.end(session, 'disconnected');
  }

  private clearWindow(session: ParticipantSession): void {
    clearTimeout(this.windowTimers.get(session));
    this.windowTimers.delete(session);
  }
}
