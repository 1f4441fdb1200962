import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import type { SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { CloseCode, type JoinResponse, type Notification, type ParticipantInfo, type TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, PROTOCOL_VERSION, type Logger } from '@gateway/common';
import type { ParticipantStore } from '@gateway/cluster';
import { isPreflightRoom, type JoinGrant } from '../auth/tokens.js';
import type { Actor } from '../actions/SmartActions.js';
import { mintResumeToken, resumeSecretMatches } from './resumeToken.js';
import { RoomVisibility } from './visibility.js';

/** The answer to resuming (or rejoining with the token of) a participant the room API removed. */
export const removedError = () => new GatewayError(ErrorCode.REMOVED, 'the participant was removed from the room; do not rejoin');

/** The socket side of a session, implemented by the WebSocket connection. */
export interface SessionLink {
  notify(notification: Notification['event']): void;
  close(code: CloseCode, reason: string): void;
}

/** Where a session's record is kept, and who is told when this replica has lost it. */
export interface ParticipantPersistence {
  readonly replicaId: string;
  readonly store: Pick<ParticipantStore, 'get' | 'put'>;
  /** The record was taken by another replica, or deleted behind this one's back: drop the session here. */
  lost(session: ParticipantSession): void;
}

/**
 * One participant in one room as this replica holds it: what it has on its media node, its link
 * to the client, and its record in the participant store, written with compare-and-set so that
 * only the replica owning the session writes it. What the participant may do and how it ends are
 * decided elsewhere (requests/, SessionRegistry); this is state only.
 */
export class ParticipantSession {
  readonly participantId: string;
  readonly tenant: string;
  readonly room: string;
  /** The protocol version the client sent in its join or latest resume (0 when it sent none). */
  clientProtocolVersion = 0;
  /** Transports of this participant on its node. */
  readonly transports = new Set<string>();
  /** Published tracks, by producer id. */
  readonly tracks = new Map<string, TrackInfo>();
  /** consumer id -> producer id */
  readonly consumers = new Map<string, string>();
  /** The transport consumers are created on when a request names none. */
  recvTransportId: string | undefined;
  /**
   * The connection quality this client was last told of, by participant: the media node
   * announces both sides of a participant, while the others are told only of its upstream.
   */
  readonly qualityTold = new Map<string, string>();
  /** Which of the room's participants this one may see (hidden supervisors). */
  readonly visibility: RoomVisibility;
  readonly log: Logger;
  private link: SessionLink | undefined;
  private disconnectedAtMs = 0;
  private isEnded = false;
  private persistChain: Promise<void> = Promise.resolve();
  /** The record's revision as this replica last wrote it. */
  private revision: number | undefined;

  private constructor(
    private readonly persistence: ParticipantPersistence,
    readonly info: ParticipantInfo,
    readonly grant: JoinGrant,
    /** The media node holding this participant's transports (not necessarily the room's home). */
    readonly nodeId: string,
    readonly sfu: SfuClient,
    private readonly resumeHash: Buffer,
    log: Logger,
  ) {
    this.participantId = info.participantId;
    this.tenant = grant.tenant;
    this.room = grant.room;
    this.visibility = new RoomVisibility(grant.role);
    // Ids only: the identity is personal data and stays out of logs.
    this.log = log.child({ participantId: this.participantId, room: `${this.tenant}/${this.room}` });
  }

  /** A fresh session after a verified join, placed on `nodeId`. Returns its resume token too. */
  static create(persistence: ParticipantPersistence, log: Logger, participantId: string, grant: JoinGrant, nodeId: string, sfu: SfuClient): { session: ParticipantSession; resumeToken: string } {
    const { token, hash } = mintResumeToken(grant.tenant, grant.room, participantId);
    const info: ParticipantInfo = {
      participantId,
      identity: grant.identity,
      role: grant.role,
      joinedAtMs: Date.now(),
      tracks: [],
      name: grant.name,
      metadata: grant.metadata,
      visibleTo: grant.visibleTo,
    };
    return { session: new ParticipantSession(persistence, info, grant, nodeId, sfu, hash, log), resumeToken: token };
  }

  /** A session taken over from a record another replica (or this one) wrote. */
  static fromRecord(persistence: ParticipantPersistence, log: Logger, tenant: string, room: string, record: ParticipantRecord, sfu: SfuClient): ParticipantSession {
    const info = record.info!;
    const grant: JoinGrant = {
      tenant,
      room,
      identity: info.identity,
      role: info.role as JoinGrant['role'],
      grants: {
        canPublish: record.grants?.canPublish ?? false,
        canSubscribe: record.grants?.canSubscribe ?? false,
        sources: (record.grants?.sources ?? []) as JoinGrant['grants']['sources'],
        canRecord: record.grants?.canRecord ?? false,
        canUpdateMetadata: record.grants?.canUpdateMetadata ?? false,
      },
      name: info.name,
      metadata: info.metadata,
      // The room says it: a pre-call check's room is its own.
      preflight: isPreflightRoom(room),
      expiresAt: record.tokenExpiresAt,
      // The contact details went into the room's session record at join.
      contact: {},
      tokenId: record.tokenId,
      visibleTo: info.visibleTo as JoinGrant['visibleTo'],
    };
    const session = new ParticipantSession(persistence, { ...info, tracks: [] }, grant, record.nodeId, sfu, Buffer.from(record.resumeTokenHash), log);
    for (const id of record.transportIds) session.transports.add(id);
    session.recvTransportId = record.recvTransportId || undefined;
    for (const track of info.tracks) session.tracks.set(track.producerId, track);
    for (const [consumerId, producerId] of Object.entries(record.consumers)) session.consumers.set(consumerId, producerId);
    return session;
  }

  /** Checks a presented resume secret against this session's. */
  matchesResumeSecret(secret: string): boolean {
    return resumeSecretMatches(this.resumeHash, secret);
  }

  get connected(): boolean {
    return this.link !== undefined;
  }

  /** When the socket dropped (0 while connected). */
  get disconnectedAt(): number {
    return this.disconnectedAtMs;
  }

  /** True once the session left this replica (ended, lost or forgotten); it writes nothing more. */
  get ended(): boolean {
    return this.isEnded;
  }

  /** The client's socket, while it is connected. */
  get currentLink(): SessionLink | undefined {
    return this.link;
  }

  /** Marks the session ended here; false when it already was. */
  markEnded(): boolean {
    if (this.isEnded) return false;
    this.isEnded = true;
    return true;
  }

  /** Binds the session to a socket; a socket it was bound to before is closed as replaced. */
  attach(link: SessionLink): void {
    const previous = this.link;
    this.link = link;
    this.disconnectedAtMs = 0;
    // What went to a former socket may never have arrived.
    this.qualityTold.clear();
    if (previous && previous !== link) previous.close(CloseCode.CLOSE_CODE_SESSION_REPLACED, 'session resumed elsewhere');
  }

  /** The socket dropped. False when it was not this session's socket, or the session ended. */
  detach(link: SessionLink): boolean {
    if (this.link !== link || this.isEnded) return false;
    this.link = undefined;
    this.disconnectedAtMs = Date.now();
    return true;
  }

  notify(event: Notification['event']): void {
    this.link?.notify(event);
  }

  toRecord(): ParticipantRecord {
    return {
      info: { ...this.info, tracks: [...this.tracks.values()] },
      owner: this.persistence.replicaId,
      connected: this.connected,
      disconnectedAtMs: this.disconnectedAtMs,
      refreshedAtMs: Date.now(),
      nodeId: this.nodeId,
      transportIds: [...this.transports],
      grants: { ...this.grant.grants },
      tokenExpiresAt: this.grant.expiresAt,
      resumeTokenHash: this.resumeHash,
      consumers: Object.fromEntries(this.consumers),
      recvTransportId: this.recvTransportId ?? '',
      tokenId: this.grant.tokenId,
      // A removed session is forgotten before its record is marked: it never writes a mark.
      removedAtMs: 0,
    };
  }

  /** Writes the session's record; writes are serialised so the newest state always wins. A failure is logged. */
  persist(): Promise<void> {
    this.persistChain = this.persistChain.then(async () => {
      if (this.isEnded) return;
      try {
        await this.writeRecord();
      } catch (error) {
        this.log.warn({ err: error }, 'writing participant record failed');
      }
    });
    return this.persistChain;
  }

  /** Writes the session's record now, in order with the other writes; throws when it fails (a join or resume must not go on without it). */
  save(): Promise<void> {
    const write = this.persistChain.then(() => {
      if (this.isEnded) throw new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session ended meanwhile');
      return this.writeRecord();
    });
    this.persistChain = write.catch(() => undefined);
    return write;
  }

  /** Resolves once the writes begun so far are done (before the record is deleted). */
  writesSettled(): Promise<void> {
    return this.persistChain;
  }

  /** Claims the record as read at `revision` (compare-and-set); throws if it changed since. */
  async claim(revision: number): Promise<void> {
    this.revision = await this.persistence.store.put(this.tenant, this.room, this.toRecord(), revision);
  }

  /**
   * Writes against the revision this replica last wrote, so a replica that has lost the session
   * (it was resumed elsewhere while this one was still noting the dropped socket) cannot
   * overwrite the new owner's record; it lets go instead.
   */
  private async writeRecord(): Promise<void> {
    const { store, replicaId } = this.persistence;
    if (this.revision === undefined) {
      this.revision = await store.put(this.tenant, this.room, this.toRecord());
      return;
    }
    try {
      this.revision = await store.put(this.tenant, this.room, this.toRecord(), this.revision);
      return;
    } catch {
      // Someone else wrote it: see who.
    }
    const current = await store.get(this.tenant, this.room, this.participantId);
    if (current && current.record.removedAtMs > 0) {
      // Removed by the room API while this replica held (or was taking over) the session.
      this.link?.close(CloseCode.CLOSE_CODE_REMOVED, 'removed from the room');
      this.persistence.lost(this);
      throw removedError();
    }
    if (current && current.record.owner !== replicaId) {
      this.link?.close(CloseCode.CLOSE_CODE_SESSION_REPLACED, 'session resumed elsewhere');
      this.persistence.lost(this);
      return;
    }
    if (current) {
      this.revision = await store.put(this.tenant, this.room, this.toRecord(), current.revision);
      return;
    }
    // Deleted behind this replica's back (another replica took this one for dead and closed
    // the participant's media): writing it again would leave a participant without media.
    this.link?.notify({ $case: 'rejoinRequired', value: { reason: 'session_lost' } });
    this.link?.close(CloseCode.CLOSE_CODE_REJOIN_REQUIRED, 'rejoin required');
    this.persistence.lost(this);
  }

  /** The join (or resume) answer: this session, and the room as it is now. */
  joinResponse(
    room: Pick<JoinResponse, 'participants' | 'routerRtpCapabilities' | 'resumeToken' | 'resumeWindowMs' | 'recording' | 'messages' | 'smartActions' | 'activeSpeakerParticipantId' | 'iceServers'>,
  ): JoinResponse {
    return {
      ...room,
      participant: { ...this.info, tracks: [...this.tracks.values()] },
      room: this.room,
      grants: this.grant.grants,
      // The server's own version: the client speaks the older of the two (peerProtocolVersion).
      protocolVersion: PROTOCOL_VERSION,
      transportIds: [...this.transports],
    };
  }

  roomRef(): { tenant: string; room: string } {
    return { tenant: this.tenant, room: this.room };
  }

  /** Who this participant is to Smart Actions. */
  actor(): Actor {
    return { tenant: this.tenant, room: this.room, participantId: this.participantId, identity: this.info.identity, role: this.info.role };
  }

  ownTransport(id: string): string {
    if (!this.transports.has(id)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such transport in this session');
    return id;
  }

  ownProducer(id: string): string {
    if (!this.tracks.has(id)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such producer in this session');
    return id;
  }

  ownConsumer(id: string): string {
    if (!this.consumers.has(id)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such consumer in this session');
    return id;
  }

  receiveTransport(): string {
    if (!this.recvTransportId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'create a receive transport first');
    return this.recvTransportId;
  }
}
