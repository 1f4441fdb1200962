import { SessionTakeover } from '@gateway/proto/gateway/events/v1/events';
import { CloseCode, type JoinResponse, type ParticipantInfo, type RecordingStatus } from '@gateway/proto/gateway/signaling/v1/signaling';
import {
  ErrorCode,
  GatewayError,
  callUnary,
  decodeChecked,
  newId,
  peerProtocolVersion,
  sessionTakeoverSchema,
  subjects,
  type ConfiguredTenants,
  type Logger,
  type NatsConnection,
  type TenantCredentials,
} from '@gateway/common';
import type { ParticipantStore, RecorderDirectory, SfuDirectory } from '@gateway/cluster';
import type { Counter, Histogram } from 'prom-client';
import type { SmartActions } from '../actions/SmartActions.js';
import type { HolderState, TokenSessions } from '../auth/TokenSessions.js';
import { preflightGrant, verifyJoinToken } from '../auth/tokens.js';
import type { ChatLog } from '../chat/ChatLog.js';
import { recordingOptions, tenantLimits, type SignalingConfig } from '../config.js';
import { mayBeRecorded, startRoomRecording } from '../rooms/recording.js';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { RoomSessions } from '../rooms/RoomSessions.js';
import { ParticipantSession, removedError, type SessionLink } from './ParticipantSession.js';
import { parseResumeToken, resumeSecretMatches, type ResumeToken } from './resumeToken.js';
import type { SessionRegistry } from './SessionRegistry.js';
import type { TurnCredentials } from './turnCredentials.js';

/** How often a resume re-reads a session record that changed under it before giving up. */
const TAKEOVER_ATTEMPTS = 4;

/** A session that cannot be resumed: the client joins again. */
const sessionExpired = () => new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session can no longer be resumed; join again');

export interface JoinServiceDeps {
  config: SignalingConfig;
  /** Whose API keys sign join tokens: GATEWAY_TENANTS' and those kept in NATS. */
  credentials: TenantCredentials;
  /** The configured tenants as they are now (their limits and recording policy). */
  tenants: Pick<ConfiguredTenants, 'find'>;
  /** The TURN servers handed out, signed with the shared secret as it is now. */
  turn: Pick<TurnCredentials, 'iceServersFor'>;
  nc: NatsConnection;
  store: ParticipantStore;
  directory: SfuDirectory;
  recorders: RecorderDirectory;
  hub: Pick<RoomHub, 'publish' | 'watch' | 'roster' | 'remove'>;
  roomSessions: Pick<RoomSessions, 'join' | 'erasedIn'>;
  tokenSessions: Pick<TokenSessions, 'claim' | 'release' | 'assertRoomOpen'>;
  chat: Pick<ChatLog, 'history'>;
  actions: Pick<SmartActions, 'list'>;
  sessions: SessionRegistry;
  /**
   * The tenant's rooms in use across the replicas: this replica's now, the others' as of their
   * last heartbeat (a few seconds old, and a room served by two replicas counts twice), so the
   * tenant's room limit holds within the joins of one heartbeat.
   */
  roomsInUse(tenant: string): number;
  metrics: { joinSeconds: Histogram; resumes: Counter<'result'> };
  log: Logger;
}

export type Joined = { session: ParticipantSession; response: JoinResponse };

/**
 * How a client gets a session: a join (a new participant, placed on a media node), or a resume
 * of one it had, held here, by another replica, or by nobody any more (a takeover from its
 * record). Another replica taking one of ours over is heard of here too.
 */
export class JoinService {
  constructor(private readonly deps: JoinServiceDeps) {}

  async join(link: SessionLink, token: string, protocolVersion: number): Promise<Joined> {
    const { config, store, directory, tokenSessions, sessions, hub, log } = this.deps;
    const started = performance.now();
    // The token is checked before any room work.
    const verified = await verifyJoinToken(this.deps.credentials, token);
    const participantId = newId('PA');
    // A pre-call check is alone in a room of its own and leaves no contact behind.
    const grant = verified.preflight ? preflightGrant(verified, participantId) : verified;
    const limits = tenantLimits(config, this.deps.tenants.find(grant.tenant));
    // A room the room API just ended takes nobody for a while (ROOM_CLOSED_MS).
    await tokenSessions.assertRoomOpen(grant.tenant, grant.room);
    // Counted before this join's own subscription makes the room one this replica serves.
    const roomsInUse = this.deps.roomsInUse(grant.tenant);
    // The room is served here from now on (its events subscribed to), then its roster is read:
    // listed once by the first join of the room on this replica, kept from the room's events
    // after that (RoomHub.roster).
    hub.watch(grant.tenant, grant.room, participantId);
    let session: ParticipantSession | undefined;
    let claimed = false;
    try {
      // Placement needs what the participant will consume and which nodes the room spans already.
      const roster = await hub.roster(grant.tenant, grant.room, () => this.listed(grant.tenant, grant.room));
      const present = roster.list();
      if (present.length >= limits.participantsPerRoom) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a room holds at most ${limits.participantsPerRoom} participants`);
      if (present.length === 0 && roomsInUse >= limits.rooms) {
        throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `the tenant has ${limits.rooms} rooms in use, its limit`);
      }
      // A token holds a slot per live session (one by default): a copied token cannot join twice.
      await tokenSessions.claim(grant.tenant, grant.tokenId, { participantId, room: grant.room }, limits.sessionsPerToken, (holder) =>
        this.sessionLives(grant.tenant, holder.room, holder.participantId),
      );
      claimed = true;
      const need = {
        consumers: grant.grants.canSubscribe ? present.reduce((n, info) => n + info.tracks.length, 0) : 0,
        // Asked only when the room's home node is full: the records name each one's node.
        roomNodes: async () => (await store.list(grant.tenant, grant.room)).map((r) => r.nodeId),
      };
      const openPlaced = async () => {
        const placed = await directory.placeParticipant(grant.tenant, grant.room, need);
        return { placed, opened: await callUnary(placed.client, placed.client.openRoom, { room: { tenant: grant.tenant, room: grant.room } }) };
      };
      // The registry as read within the last second may not show a node that began draining
      // since: the node refuses, and the registry is read afresh for the one more try.
      const {
        placed,
        opened: { rtpCapabilities, activeSpeakerParticipantId },
      } = await openPlaced().catch((error: unknown) => {
        if (GatewayError.from(error).code !== ErrorCode.DRAINING) throw error;
        directory.forgetRegistryReads();
        return openPlaced();
      });
      let resumeToken: string;
      ({ session, resumeToken } = ParticipantSession.create(sessions.persistence, log, participantId, grant, placed.nodeId, placed.client));
      session.clientProtocolVersion = protocolVersion;
      sessions.attach(session, link);
      // The session takes the place of the watch: from now on it hears the room's events itself,
      // and the roster read in the same turn has every event before those (none twice, none lost).
      sessions.add(session);
      const others = this.visibleOthers(session, roster.list());
      await session.save();
      await directory.keepPlacement(grant.tenant, grant.room, placed.nodeId);
      // The room's session record carries the participant to the CRM: a join without it is no
      // join. A pre-call check has none: it is no contact, and its room ends without session.ended.
      // Nor a supervisor: staff watching over a contact are not one of its parties.
      if (!grant.preflight && grant.role !== 'supervisor')
        await this.deps.roomSessions.join(grant.tenant, grant.room, {
          participantId: session.participantId,
          role: grant.role,
          externalId: grant.identity,
          crmContactId: grant.contact.crmContactId ?? '',
          phoneNumber: grant.contact.phoneNumber ?? '',
          deviceIds: grant.contact.deviceIds ?? [],
          joinedAtMs: session.info.joinedAtMs,
        });
      const recording = await this.recordingStatus(grant.tenant, grant.room);
      const [messages, smartActions] = await Promise.all([this.chatHistory(grant.tenant, grant.room), this.deps.actions.list(grant.tenant, grant.room)]);
      hub.publish(grant.tenant, grant.room, { $case: 'participantJoined', value: session.info });
      this.deps.metrics.joinSeconds.observe((performance.now() - started) / 1000);
      log.info({ participantId, room: `${grant.tenant}/${grant.room}`, nodeId: placed.nodeId, role: grant.role, protocolVersion: peerProtocolVersion(protocolVersion) }, 'participant joined');
      if (!recording && grant.role === 'agent' && !grant.preflight) await this.recordAgentCall(grant.tenant, grant.room);
      const response = session.joinResponse({
        participants: others,
        routerRtpCapabilities: rtpCapabilities ?? {},
        resumeToken,
        resumeWindowMs: config.resumeWindowMs,
        recording,
        messages,
        smartActions,
        activeSpeakerParticipantId: this.speakerSeenBy(session, activeSpeakerParticipantId),
        // Fresh TURN credentials on every join and resume: a client back after a while gets one
        // that can still make allocations.
        iceServers: this.deps.turn.iceServersFor(session.participantId),
      });
      return { session, response };
    } catch (error) {
      // Nothing of a join that failed half-way stays: its media, record, slot and membership go.
      if (session) await sessions.end(session, 'left').catch((rollbackError: unknown) => log.warn({ err: rollbackError, participantId }, 'rolling back a failed join failed'));
      else {
        hub.remove(grant.tenant, grant.room, participantId);
        if (claimed) await tokenSessions.release(grant.tenant, grant.tokenId, participantId, limits.sessionsPerToken).catch(() => undefined);
      }
      throw error;
    }
  }

  async resume(link: SessionLink, resumeToken: string, protocolVersion: number): Promise<Joined> {
    const { config, store, sessions, metrics, log } = this.deps;
    const parsed = parseResumeToken(resumeToken);
    if (!parsed) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the resume token is malformed');
    const { tenant, room, participantId, secret } = parsed;
    let session = sessions.get(participantId);
    if (session && (session.tenant !== tenant || session.room !== room || !session.matchesResumeSecret(secret))) {
      throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the resume token is invalid');
    }
    if (session) {
      // The same rule as for a session held elsewhere (takeOver reads it from the record).
      const refusal = this.resumeRefusal(tenant, session.info.joinedAtMs, session.connected, session.disconnectedAt);
      if (refusal) {
        metrics.resumes.inc({ result: 'expired' });
        throw refusal;
      }
    } else session = await this.takeOver(parsed);
    session.clientProtocolVersion = protocolVersion;
    sessions.attach(session, link);
    try {
      // The room must still be the one the session's media lives in.
      const { rtpCapabilities, created, activeSpeakerParticipantId } = await callUnary(session.sfu, session.sfu.openRoom, { room: { tenant, room } });
      if (created) {
        sessions.forget(session);
        await store.delete(tenant, room, participantId);
        await this.releaseTokenSlot(session).catch(() => undefined);
        metrics.resumes.inc({ result: 'expired' });
        throw sessionExpired();
      }
      await session.save();
      const others = await this.othersInRoom(session);
      const [recording, messages, smartActions] = await Promise.all([this.recordingStatus(tenant, room), this.chatHistory(tenant, room), this.deps.actions.list(tenant, room)]);
      metrics.resumes.inc({ result: 'resumed' });
      log.info({ participantId, room: `${tenant}/${room}`, protocolVersion: peerProtocolVersion(protocolVersion) }, 'session resumed');
      const response = session.joinResponse({
        participants: others,
        routerRtpCapabilities: rtpCapabilities ?? {},
        resumeToken,
        resumeWindowMs: config.resumeWindowMs,
        recording,
        messages,
        smartActions,
        activeSpeakerParticipantId: this.speakerSeenBy(session, activeSpeakerParticipantId),
        // Fresh TURN credentials on every join and resume: a client back after a while gets one
        // that can still make allocations.
        iceServers: this.deps.turn.iceServersFor(session.participantId),
      });
      return { session, response };
    } catch (error) {
      // A resume that failed half-way leaves the session as it was before: dropped, waiting for
      // the client's next resume within the window (its media untouched).
      sessions.detach(session, link);
      throw error;
    }
  }

  /** Gives back the slot of the join token a session held. */
  releaseTokenSlot(session: ParticipantSession): Promise<void> {
    return this.deps.tokenSessions.release(session.tenant, session.grant.tokenId, session.participantId, tenantLimits(this.deps.config, this.deps.tenants.find(session.tenant)).sessionsPerToken);
  }

  /** Another replica resumed one of our sessions: let go of it without touching its media. */
  listenForTakeovers(): void {
    const { nc, config, sessions, log } = this.deps;
    const subscription = nc.subscribe(subjects.sessionTakeover('*', '*'));
    void (async () => {
      for await (const message of subscription) {
        try {
          const { participantId, newOwner } = decodeChecked(SessionTakeover, message.data, sessionTakeoverSchema, 'session takeover');
          if (newOwner === config.replicaId) continue;
          const session = sessions.get(participantId);
          if (!session) continue;
          const link = session.currentLink;
          sessions.forget(session);
          link?.close(CloseCode.CLOSE_CODE_SESSION_REPLACED, 'session resumed elsewhere');
        } catch (error) {
          log.warn({ err: error }, 'bad session takeover message');
        }
      }
    })().catch((error: unknown) => log.error({ err: error }, 'listening for session takeovers stopped'));
  }

  /**
   * Takes a session held by another replica (or by nobody) from its record. The old owner may
   * still be writing the record as its socket closes, so a lost compare-and-set is read again.
   */
  private async takeOver({ tenant, room, participantId, secret }: ResumeToken): Promise<ParticipantSession> {
    const { config, store, directory, sessions, metrics, log } = this.deps;
    for (let attempt = 1; ; attempt++) {
      const stored = await store.get(tenant, room, participantId).catch(() => undefined);
      if (!stored) {
        metrics.resumes.inc({ result: 'expired' });
        throw sessionExpired();
      }
      const { record, revision } = stored;
      if (!resumeSecretMatches(record.resumeTokenHash, secret)) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the resume token is invalid');
      if (record.removedAtMs > 0) {
        metrics.resumes.inc({ result: 'expired' });
        throw removedError();
      }
      const refusal = this.resumeRefusal(tenant, record.info!.joinedAtMs, record.connected, record.disconnectedAtMs);
      if (refusal) {
        metrics.resumes.inc({ result: 'expired' });
        throw refusal;
      }
      // The media must still be where the record says: a live node that still hosts the room.
      // (A room spans several nodes: the session's node need not be the room's home.)
      const node = await directory.node(record.nodeId);
      if (!node) throw sessionExpired();
      const client = directory.clientForNode(node);
      const session = ParticipantSession.fromRecord(sessions.persistence, log, tenant, room, { ...record, owner: config.replicaId, connected: true }, client);
      // Claim the record: fails if anyone changed it meanwhile (the old owner noting the drop, a parallel resume).
      try {
        await session.claim(revision);
      } catch (error) {
        if (attempt < TAKEOVER_ATTEMPTS) continue;
        throw new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session changed while resuming; try again', { cause: error });
      }
      if (record.owner && record.owner !== config.replicaId) {
        const takeover = SessionTakeover.encode({ participantId, newOwner: config.replicaId }).finish();
        this.deps.nc.publish(subjects.sessionTakeover(tenant, participantId), takeover);
      }
      sessions.add(session);
      return session;
    }
  }

  /**
   * The one rule for resuming, wherever the session is held: the session's own credential lasts
   * while it is connected and for the resume window after it drops, and never past the tenant's
   * maximum session length. The join token's expiry gates joining only, so a customer's
   * short-lived join token does not end a call on the next network drop.
   */
  private resumeRefusal(tenant: string, startedAtMs: number, connected: boolean, disconnectedAtMs: number): GatewayError | undefined {
    const now = Date.now();
    if (!connected && disconnectedAtMs > 0 && now - disconnectedAtMs > this.deps.config.resumeWindowMs) return sessionExpired();
    if (now - startedAtMs > tenantLimits(this.deps.config, this.deps.tenants.find(tenant)).maxSessionMs) {
      return new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session reached its maximum length; join again');
    }
    return undefined;
  }

  /**
   * Whether a session still holds its join token's slot: `live` when its record is fresh and it
   * is connected or within its resume window, `ended` when its record went stale (its replica
   * died) or the window passed, `unknown` without a record. Only a live holder keeps the token
   * from joining again (the SDK rejoins with it).
   */
  private async sessionLives(tenant: string, room: string, participantId: string): Promise<HolderState> {
    const { store, config } = this.deps;
    const stored = await store.get(tenant, room, participantId);
    if (!stored) return 'unknown';
    if (await store.isStale(stored.record)) return 'ended';
    const { connected, disconnectedAtMs } = stored.record;
    return connected || disconnectedAtMs === 0 || Date.now() - disconnectedAtMs <= config.resumeWindowMs ? 'live' : 'ended';
  }

  /**
   * Everyone else in the room the session may see, as a joining or resuming client is shown
   * them; the session notes who it may see of all of them (participant/visibility.ts).
   */
  private async othersInRoom(session: ParticipantSession) {
    return this.visibleOthers(session, await this.listed(session.tenant, session.room));
  }

  /** The room's participants as the store lists them (every fresh record). */
  private async listed(tenant: string, room: string): Promise<ParticipantInfo[]> {
    return (await this.deps.store.list(tenant, room)).flatMap((r) => (r.info ? [r.info] : []));
  }

  /** Of the room's participants, the others this session may see; it notes who it may see of all of them. */
  private visibleOthers(session: ParticipantSession, participants: ParticipantInfo[]): ParticipantInfo[] {
    const others = participants.filter((info) => info.participantId !== session.participantId);
    session.visibility.learn(others);
    return others.filter((info) => session.visibility.sees(info.participantId));
  }

  /** The voice the session is told speaks now: nobody, when it may not hear that one. */
  private speakerSeenBy(session: ParticipantSession, participantId: string): string {
    return participantId === '' || participantId === session.participantId || session.visibility.sees(participantId) ? participantId : '';
  }

  /** The room's recording, as a client joining or resuming is told of it. */
  private async recordingStatus(tenant: string, room: string): Promise<RecordingStatus | undefined> {
    const recording = await this.deps.recorders.recordingOf(tenant, room).catch(() => undefined);
    return recording ? { recordingId: recording.recordingId, state: recording.state, by: '' } : undefined;
  }

  /** The conversation a joining client is shown; a chat store that does not answer does not stop the join. */
  private async chatHistory(tenant: string, room: string) {
    return this.deps.chat.history(tenant, room, this.deps.config.chat.historyLimit).catch((error) => {
      this.deps.log.warn({ err: error, room: `${tenant}/${room}` }, 'reading the chat history failed');
      return [];
    });
  }

  /**
   * The tenant records every call an agent takes; the agent's own media joins the recording as
   * it is published. Not a session where an end user asked for erasure: the recording would hold
   * them again. The join does not wait for the recorder.
   */
  private async recordAgentCall(tenantName: string, room: string): Promise<void> {
    const tenant = this.deps.tenants.find(tenantName);
    if (!tenant?.recording?.onAgentJoin || !(await mayBeRecorded((t, r) => this.deps.roomSessions.erasedIn(t, r), tenantName, room))) return;
    void startRoomRecording(this.deps.recorders, tenantName, room, '', recordingOptions(tenant)).catch((error) => {
      if (!(error instanceof GatewayError && error.code === ErrorCode.ALREADY_EXISTS)) this.deps.log.error({ err: error, room: `${tenantName}/${room}` }, 'starting the automatic recording failed');
    });
  }
}
