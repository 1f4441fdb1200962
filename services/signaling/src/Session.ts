import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RoomEvent, ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import {
  MediaKind,
  TrackSource,
  TransportDirection,
  type SfuClient,
} from '@gateway/proto/gateway/sfu/v1/sfu';
import type {
  ChatMessage,
  JoinResponse,
  SmartAction,
  Notification,
  ParticipantInfo,
  RecordingStatus,
  Request,
  Response,
  TrackInfo,
} from '@gateway/proto/gateway/signaling/v1/signaling';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, ID_PATTERN, callUnary, redact, type Logger, type RedactionPolicy } from '@gateway/common';
import type { ChatLog } from './chat/ChatLog.js';
import type { Actor, SmartActions } from './actions/SmartActions.js';
import { RateLimiter } from './ws/RateLimiter.js';
import type { JoinGrant } from './auth/tokens.js';
import type { ParticipantStore, RecorderDirectory, SfuDirectory } from '@gateway/cluster';
import type { RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import { startRoomRecording } from './recording.js';
import type { RoomHub } from './rooms/RoomHub.js';

export const PROTOCOL_VERSION = 1;

const erasedRefusal = (what: string) => new GatewayError(ErrorCode.PERMISSION_DENIED, `${what}: an end user of this call asked for erasure`);

/** What a session needs from the replica that holds it. */
export interface SessionContext {
  replicaId: string;
  resumeWindowMs: number;
  directory: SfuDirectory;
  recorders: RecorderDirectory;
  /** The tenant's recording policy, as the recorder is told of it. */
  recordingOptions(tenant: string): RecordingOptions;
  store: ParticipantStore;
  hub: RoomHub;
  chat: ChatLog;
  actions: SmartActions;
  chatLimits: { maxChars: number; ratePerSecond: number; rateBurst: number };
  /** The tenant's chat redaction policy. */
  redactionPolicy(tenant: string): RedactionPolicy;
  log: Logger;
  /** Called when the session ends or moves to another replica. */
  forget(session: Session): void;
  /** External ids of the end users erased during the room's session (RoomSessions.erasedIn). */
  erasedIn(tenant: string, room: string): Promise<Set<string>>;
  /** Called once a participant left the room for good (the room may now be empty). */
  participantGone(tenant: string, room: string): void;
  /** Gives back the join token's slot the session held. */
  releaseToken(session: Session): Promise<void>;
  /** What one participant may hold on the SFU. */
  mediaLimits: { transports: number; producers: number; consumers: number };
}

/** The socket side of a session, implemented by the WebSocket connection. */
export interface SessionLink {
  notify(notification: Notification['event']): void;
  close(code: CloseCode, reason: string): void;
}

type Method = NonNullable<Request['method']>;
type Result = NonNullable<Response['result']>;
type Source = 'camera' | 'microphone' | 'screen' | 'screen_audio';

const sourceToProto: Record<Source, TrackSource> = {
  camera: TrackSource.TRACK_SOURCE_CAMERA,
  microphone: TrackSource.TRACK_SOURCE_MICROPHONE,
  screen: TrackSource.TRACK_SOURCE_SCREEN,
  screen_audio: TrackSource.TRACK_SOURCE_SCREEN_AUDIO,
};
const sourceFromProto = Object.fromEntries(Object.entries(sourceToProto).map(([k, v]) => [v, k])) as Record<number, Source>;
/** Which media kind each source carries, and which granted source allows it. */
const sourceRules: Record<Source, { kind: 'audio' | 'video'; grant: 'camera' | 'microphone' | 'screen' }> = {
  camera: { kind: 'video', grant: 'camera' },
  microphone: { kind: 'audio', grant: 'microphone' },
  screen: { kind: 'video', grant: 'screen' },
  screen_audio: { kind: 'audio', grant: 'screen' },
};

const hashSecret = (secret: string) => createHash('sha256').update(secret).digest();

export function parseResumeToken(token: string): { tenant: string; room: string; participantId: string; secret: string } | undefined {
  if (typeof token !== 'string' || token.length > 512) return undefined;
  const parts = token.split('.');
  if (parts.length !== 4 || parts.some((p) => !ID_PATTERN.test(p))) return undefined;
  const [tenant, room, participantId, secret] = parts as [string, string, string, string];
  return { tenant, room, participantId, secret };
}

/**
 * One participant in one room, held by this replica. It outlives its WebSocket for the resume
 * window, so a client that reconnects gets its media back without publishing again.
 */
export class Session {
  readonly participantId: string;
  readonly tenant: string;
  readonly room: string;
  private link: SessionLink | undefined;
  private readonly transports = new Set<string>();
  private readonly tracks = new Map<string, TrackInfo>();
  /** consumer id -> producer id */
  private readonly consumers = new Map<string, string>();
  private recvTransportId: string | undefined;
  private resumeHash: Buffer;
  private windowTimer: NodeJS.Timeout | undefined;
  private disconnectedAtMs = 0;
  private ended = false;
  private persistChain: Promise<void> = Promise.resolve();
  /** The record's revision as this replica last wrote it. */
  private revision: number | undefined;
  private readonly log: Logger;
  /** Chat has its own budget, well below the request rate limit. */
  private readonly chatLimiter: RateLimiter;

  private constructor(
    private readonly ctx: SessionContext,
    readonly info: ParticipantInfo,
    readonly grant: JoinGrant,
    readonly nodeId: string,
    readonly sfu: SfuClient,
    resumeHash: Buffer,
  ) {
    this.participantId = info.participantId;
    this.tenant = grant.tenant;
    this.room = grant.room;
    this.resumeHash = resumeHash;
    this.log = ctx.log.child({ participantId: this.participantId, room: `${this.tenant}/${this.room}` });
    this.chatLimiter = new RateLimiter(ctx.chatLimits.ratePerSecond, ctx.chatLimits.rateBurst);
  }

  /** A fresh session after a verified join on the room's node. Returns the resume token too. */
  static create(ctx: SessionContext, participantId: string, grant: JoinGrant, nodeId: string, sfu: SfuClient): { session: Session; resumeToken: string } {
    const secret = randomBytes(24).toString('base64url');
    const info: ParticipantInfo = { participantId, identity: grant.identity, role: grant.role, joinedAtMs: Date.now(), tracks: [] };
    const session = new Session(ctx, info, grant, nodeId, sfu, hashSecret(secret));
    return { session, resumeToken: `${grant.tenant}.${grant.room}.${participantId}.${secret}` };
  }

  /** A session taken over from a record another replica (or this one) wrote. */
  static fromRecord(ctx: SessionContext, tenant: string, room: string, record: ParticipantRecord, sfu: SfuClient): Session {
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
      },
      expiresAt: record.tokenExpiresAt,
      // The contact details went into the room's session record at join.
      contact: {},
      tokenId: record.tokenId,
    };
    const session = new Session(ctx, { ...info, tracks: [] }, grant, record.nodeId, sfu, Buffer.from(record.resumeTokenHash));
    for (const id of record.transportIds) session.transports.add(id);
    session.recvTransportId = record.recvTransportId || undefined;
    for (const track of info.tracks) session.tracks.set(track.producerId, track);
    for (const [consumerId, producerId] of Object.entries(record.consumers)) session.consumers.set(consumerId, producerId);
    return session;
  }

  /** Checks a presented resume secret against this session's. */
  matchesResumeSecret(secret: string): boolean {
    return Session.secretMatches(this.resumeHash, secret);
  }

  static secretMatches(hash: Uint8Array, secret: string): boolean {
    const presented = hashSecret(secret);
    return hash.length === presented.length && timingSafeEqual(Buffer.from(hash), presented);
  }

  get connected(): boolean {
    return this.link !== undefined;
  }

  /** When the socket dropped (0 while connected). */
  get disconnectedAt(): number {
    return this.disconnectedAtMs;
  }

  toRecord(): ParticipantRecord {
    return {
      info: { ...this.info, tracks: [...this.tracks.values()] },
      owner: this.ctx.replicaId,
      connected: this.connected,
      disconnectedAtMs: this.disconnectedAtMs,
      refreshedAtMs: Date.now(),
      nodeId: this.nodeId,
      transportIds: [...this.transports],
      grants: { canPublish: this.grant.grants.canPublish, canSubscribe: this.grant.grants.canSubscribe, sources: this.grant.grants.sources, canRecord: this.grant.grants.canRecord },
      tokenExpiresAt: this.grant.expiresAt,
      resumeTokenHash: this.resumeHash,
      consumers: Object.fromEntries(this.consumers),
      recvTransportId: this.recvTransportId ?? '',
      tokenId: this.grant.tokenId,
    };
  }

  /** Writes the session's record; writes are serialised so the newest state always wins. */
  persist(): Promise<void> {
    this.persistChain = this.persistChain.then(async () => {
      if (this.ended) return;
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
      if (this.ended) throw new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session ended meanwhile');
      return this.writeRecord();
    });
    this.persistChain = write.catch(() => undefined);
    return write;
  }

  /** Claims the record as read at `revision` (compare-and-set); throws if it changed since. */
  async claim(revision: number): Promise<void> {
    this.revision = await this.ctx.store.put(this.tenant, this.room, this.toRecord(), revision);
  }

  /**
   * Writes against the revision this replica last wrote, so a replica that has lost the session
   * (it was resumed elsewhere while this one was still noting the dropped socket) cannot
   * overwrite the new owner's record; it lets go instead.
   */
  private async writeRecord(): Promise<void> {
    if (this.revision !== undefined) {
      try {
        this.revision = await this.ctx.store.put(this.tenant, this.room, this.toRecord(), this.revision);
        return;
      } catch {
        const current = await this.ctx.store.get(this.tenant, this.room, this.participantId);
        if (current && current.record.owner !== this.ctx.replicaId) {
          this.link?.close(CloseCode.CLOSE_CODE_SESSION_REPLACED, 'session resumed elsewhere');
          this.forgetLocally();
          return;
        }
        if (current) {
          this.revision = await this.ctx.store.put(this.tenant, this.room, this.toRecord(), current.revision);
          return;
        }
        // Deleted behind this replica's back (another replica took this one for dead and closed
        // the participant's media): writing it again would leave a participant without media.
        this.link?.notify({ $case: 'rejoinRequired', value: { reason: 'session_lost' } });
        this.link?.close(CloseCode.CLOSE_CODE_REJOIN_REQUIRED, 'rejoin required');
        this.forgetLocally();
        return;
      }
    }
    this.revision = await this.ctx.store.put(this.tenant, this.room, this.toRecord());
  }

  attach(link: SessionLink): void {
    const previous = this.link;
    this.link = link;
    clearTimeout(this.windowTimer);
    this.disconnectedAtMs = 0;
    if (previous && previous !== link) previous.close(CloseCode.CLOSE_CODE_SESSION_REPLACED, 'session resumed elsewhere');
  }

  /** The socket dropped: keep the media for the resume window. */
  detach(link: SessionLink): void {
    if (this.link !== link || this.ended) return;
    this.link = undefined;
    this.disconnectedAtMs = Date.now();
    void this.persist();
    clearTimeout(this.windowTimer);
    this.windowTimer = setTimeout(() => void this.expireWindow(), this.ctx.resumeWindowMs);
  }

  private async expireWindow(): Promise<void> {
    if (this.connected || this.ended) return;
    // Another replica may have resumed the session meanwhile; then it is theirs.
    const current = await this.ctx.store.get(this.tenant, this.room, this.participantId).catch(() => undefined);
    if (current && current.record.owner !== this.ctx.replicaId) {
      this.forgetLocally();
      return;
    }
    await this.end('disconnected');
  }

  /** Drops the session from this replica without touching its media (it lives on elsewhere). */
  forgetLocally(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.windowTimer);
    this.ctx.hub.remove(this.tenant, this.room, this.participantId);
    this.ctx.forget(this);
  }

  /** Ends the session: media closed on the SFU, record deleted, everyone told. */
  async end(reason: 'left' | 'disconnected' | 'removed'): Promise<void> {
    if (this.ended) return;
    this.forgetLocally();
    await this.sfuCall(this.sfu.closeParticipant, { room: this.roomRef(), participantId: this.participantId }).catch(() => undefined);
    await this.persistChain;
    await this.ctx.store.delete(this.tenant, this.room, this.participantId);
    await this.ctx.releaseToken(this).catch((error: unknown) => this.log.warn({ err: error }, 'releasing the join token failed'));
    this.ctx.hub.publish(this.tenant, this.room, { $case: 'participantLeft', value: { participantId: this.participantId, reason } });
    this.ctx.participantGone(this.tenant, this.room);
  }

  /**
   * The session's media node is gone: tell the client to join again; nothing to close on the
   * SFU. Participants on the room's other nodes see it leave: it comes back as a new one.
   */
  async abandon(reason: string): Promise<void> {
    if (this.ended) return;
    const link = this.link;
    this.forgetLocally();
    await this.persistChain;
    await this.ctx.store.delete(this.tenant, this.room, this.participantId);
    // The token's slot is free before the client hears it must join again (with the same token).
    await this.ctx.releaseToken(this).catch((error: unknown) => this.log.warn({ err: error }, 'releasing the join token failed'));
    link?.notify({ $case: 'rejoinRequired', value: { reason } });
    link?.close(CloseCode.CLOSE_CODE_REJOIN_REQUIRED, 'rejoin required');
    this.ctx.hub.publish(this.tenant, this.room, { $case: 'participantLeft', value: { participantId: this.participantId, reason: 'node_gone' } });
  }

  onRoomEvent(event: RoomEvent): void {
    const e = event.event;
    if (!e || this.ended) return;
    switch (e.$case) {
      case 'roomClosed':
        if (e.value.nodeId === '' || e.value.nodeId === this.nodeId) void this.abandon(e.value.reason);
        return;
      case 'participantJoined':
        if (e.value.participantId !== this.participantId) this.link?.notify(e);
        return;
      case 'participantLeft':
      case 'producerAdded':
      case 'producerPaused':
      case 'producerResumed':
        if (e.value.participantId !== this.participantId) this.link?.notify(e);
        return;
      case 'producerClosed':
        // The SFU closes our consumers of that producer by itself.
        for (const [consumerId, producerId] of this.consumers) if (producerId === e.value.producerId) this.consumers.delete(consumerId);
        if (e.value.participantId !== this.participantId) this.link?.notify(e);
        return;
      case 'activeSpeaker':
        // Each node of a room judges over the voices it holds: this session's node holds every
        // voice the participant hears, and one judge per participant means no flicker.
        if (event.origin === '' || event.origin === this.nodeId) this.link?.notify(e);
        return;
      case 'recording':
        this.link?.notify(e);
        return;
      case 'chatMessage':
        this.link?.notify({ $case: 'message', value: e.value });
        return;
      case 'messageRedacted':
      case 'smartAction':
        this.link?.notify(e);
        return;
    }
  }

  /** The join (or resume) answer: this session, and the room as it is now. */
  joinResponse(room: Pick<JoinResponse, 'participants' | 'routerRtpCapabilities' | 'resumeToken' | 'resumeWindowMs' | 'recording' | 'messages' | 'smartActions' | 'activeSpeakerParticipantId'>): JoinResponse {
    return {
      ...room,
      participant: { ...this.info, tracks: [...this.tracks.values()] },
      room: this.room,
      grants: this.grant.grants,
      protocolVersion: PROTOCOL_VERSION,
      transportIds: [...this.transports],
    };
  }

  roomRef() {
    return { tenant: this.tenant, room: this.room };
  }

  /** Handles one request of the joined client. */
  async handle(method: Method): Promise<Result> {
    switch (method.$case) {
      case 'createTransport': {
        const direction = method.value.direction;
        if (direction !== 'send' && direction !== 'recv') throw new GatewayError(ErrorCode.BAD_REQUEST, 'direction must be "send" or "recv"');
        if (direction === 'send' && !this.grant.grants.canPublish) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not publish');
        if (direction === 'recv' && !this.grant.grants.canSubscribe) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not subscribe');
        this.withinLimit(this.transports.size, this.ctx.mediaLimits.transports, 'transports');
        const transport = await this.sfuCall(this.sfu.createWebRtcTransport, {
          room: this.roomRef(),
          participantId: this.participantId,
          direction: direction === 'send' ? TransportDirection.TRANSPORT_DIRECTION_SEND : TransportDirection.TRANSPORT_DIRECTION_RECV,
        });
        this.transports.add(transport.transportId);
        if (direction === 'recv') this.recvTransportId = transport.transportId;
        void this.persist();
        return {
          $case: 'createTransport',
          value: {
            transportId: transport.transportId,
            direction,
            iceParameters: transport.iceParameters,
            iceCandidates: transport.iceCandidates,
            dtlsParameters: transport.dtlsParameters,
          },
        };
      }
      case 'connectTransport': {
        const transportId = this.ownTransport(method.value.transportId);
        if (!method.value.dtlsParameters) throw new GatewayError(ErrorCode.BAD_REQUEST, 'dtlsParameters is required');
        await this.sfuCall(this.sfu.connectTransport, { transport: { room: this.roomRef(), transportId }, dtlsParameters: method.value.dtlsParameters });
        return { $case: 'connectTransport', value: {} };
      }
      case 'restartIce': {
        const transportId = this.ownTransport(method.value.transportId);
        const { iceParameters } = await this.sfuCall(this.sfu.restartIce, { room: this.roomRef(), transportId });
        return { $case: 'restartIce', value: { iceParameters } };
      }
      case 'getStats': {
        const transportId = this.ownTransport(method.value.transportId);
        const { stats } = await this.sfuCall(this.sfu.getTransportStats, { room: this.roomRef(), transportId });
        return { $case: 'getStats', value: { stats } };
      }
      case 'produce': {
        const { transportId: requestedTransport, kind, rtpParameters, source, paused } = method.value;
        const rule = sourceRules[source as Source];
        if (!rule) throw new GatewayError(ErrorCode.BAD_REQUEST, 'source must be camera, microphone, screen or screen_audio');
        if (!this.grant.grants.canPublish || !this.grant.grants.sources.includes(rule.grant)) {
          throw new GatewayError(ErrorCode.PERMISSION_DENIED, `this token may not publish ${source}`);
        }
        if (kind !== rule.kind) throw new GatewayError(ErrorCode.BAD_REQUEST, `${source} must be ${rule.kind}`);
        if ([...this.tracks.values()].some((t) => t.source === source)) {
          throw new GatewayError(ErrorCode.ALREADY_EXISTS, `${source} is already published; unpublish it first`);
        }
        if (!rtpParameters) throw new GatewayError(ErrorCode.BAD_REQUEST, 'rtpParameters is required');
        this.withinLimit(this.tracks.size, this.ctx.mediaLimits.producers, 'published tracks');
        const transportId = this.ownTransport(requestedTransport);
        const { producerId } = await this.sfuCall(this.sfu.produce, {
          transport: { room: this.roomRef(), transportId },
          participantId: this.participantId,
          kind: kind === 'audio' ? MediaKind.MEDIA_KIND_AUDIO : MediaKind.MEDIA_KIND_VIDEO,
          rtpParameters,
          source: sourceToProto[source as Source],
          paused,
        });
        const track: TrackInfo = { producerId, source, kind, paused };
        this.tracks.set(producerId, track);
        // Stored before anyone hears of it: a participant on another node finds the producer's
        // node in this record when it consumes.
        await this.persist();
        await this.shareWithHomeNode(producerId);
        this.ctx.hub.publish(this.tenant, this.room, { $case: 'producerAdded', value: { participantId: this.participantId, track } });
        return { $case: 'produce', value: { producerId } };
      }
      case 'pauseProducer':
      case 'resumeProducer': {
        const producerId = this.ownProducer(method.value.producerId);
        const pause = method.$case === 'pauseProducer';
        const ref = { room: this.roomRef(), producerId };
        await this.sfuCall(pause ? this.sfu.pauseProducer : this.sfu.resumeProducer, ref);
        this.tracks.get(producerId)!.paused = pause;
        void this.persist();
        this.ctx.hub.publish(this.tenant, this.room, {
          $case: pause ? 'producerPaused' : 'producerResumed',
          value: { participantId: this.participantId, producerId },
        });
        return { $case: method.$case, value: {} };
      }
      case 'closeProducer': {
        const producerId = this.ownProducer(method.value.producerId);
        await this.sfuCall(this.sfu.closeProducer, { room: this.roomRef(), producerId });
        this.tracks.delete(producerId);
        void this.persist();
        this.ctx.hub.publish(this.tenant, this.room, { $case: 'producerClosed', value: { participantId: this.participantId, producerId } });
        return { $case: 'closeProducer', value: {} };
      }
      case 'consume': {
        if (!this.grant.grants.canSubscribe) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not subscribe');
        const { producerId, rtpCapabilities } = method.value;
        if (!producerId || !rtpCapabilities) throw new GatewayError(ErrorCode.BAD_REQUEST, 'producerId and rtpCapabilities are required');
        const transportId = method.value.transportId ? this.ownTransport(method.value.transportId) : this.receiveTransport();
        // One consumer per producer: a second consume of it (a retry after a timeout, a client
        // that lost track) replaces the first, so repeating it cannot pile consumers up.
        const previous = [...this.consumers].find(([, consumed]) => consumed === producerId)?.[0];
        if (previous) {
          await this.sfuCall(this.sfu.closeConsumer, { room: this.roomRef(), consumerId: previous }).catch((error: GatewayError) => {
            if (error.code !== ErrorCode.NOT_FOUND) throw error;
          });
          this.consumers.delete(previous);
        }
        this.withinLimit(this.consumers.size, this.ctx.mediaLimits.consumers, 'received tracks');
        const request = { transport: { room: this.roomRef(), transportId }, producerId, rtpCapabilities };
        const consumer = await this.sfuCall(this.sfu.consume, request).catch(async (error: GatewayError) => {
          // A producer of the room's other node: pipe it here, then consume it like a local one.
          if (error.code !== ErrorCode.NOT_FOUND || !(await this.importProducer(producerId))) throw error;
          return this.sfuCall(this.sfu.consume, request);
        });
        this.consumers.set(consumer.consumerId, producerId);
        void this.persist();
        return {
          $case: 'consume',
          value: {
            consumerId: consumer.consumerId,
            producerId: consumer.producerId,
            participantId: consumer.producerParticipantId,
            source: sourceFromProto[consumer.source] ?? '',
            kind: consumer.kind === MediaKind.MEDIA_KIND_AUDIO ? 'audio' : 'video',
            rtpParameters: consumer.rtpParameters,
            type: consumer.type,
            producerPaused: consumer.producerPaused,
          },
        };
      }
      case 'resumeConsumer':
      case 'pauseConsumer': {
        const consumerId = this.ownConsumer(method.value.consumerId);
        const call = method.$case === 'resumeConsumer' ? this.sfu.resumeConsumer : this.sfu.pauseConsumer;
        await this.sfuCall(call, { room: this.roomRef(), consumerId });
        return { $case: method.$case, value: {} };
      }
      case 'setPreferredLayers': {
        const consumerId = this.ownConsumer(method.value.consumerId);
        await this.sfuCall(this.sfu.setPreferredLayers, {
          consumer: { room: this.roomRef(), consumerId },
          spatialLayer: method.value.spatialLayer,
          temporalLayer: method.value.temporalLayer,
        });
        return { $case: 'setPreferredLayers', value: {} };
      }
      case 'ping':
        return { $case: 'ping', value: { clientTimeMs: method.value.clientTimeMs, serverTimeMs: Date.now() } };
      case 'leave':
        await this.end('left');
        return { $case: 'leave', value: {} };
      case 'startRecording':
      case 'pauseRecording':
      case 'resumeRecording':
      case 'stopRecording':
        return { $case: method.$case, value: await this.controlRecording(method.$case) };
      case 'sendMessage':
        return { $case: 'sendMessage', value: await this.sendMessage(method.value.text, method.value.clientMessageId) };
      case 'redactMessage':
        await this.redactMessage(method.value.messageId);
        return { $case: 'redactMessage', value: {} };
      case 'requestSmartAction':
        return { $case: 'requestSmartAction', value: await this.requestSmartAction(method.value.kind, method.value.participantId) };
      case 'answerSmartAction': {
        const { actionId, decline, webauthnResponse } = method.value;
        const action = await this.ctx.actions.answer(this.actor(), actionId, { decline, webauthnResponse });
        this.announce(action);
        return { $case: 'answerSmartAction', value: action };
      }
      case 'deviceKeyOptions':
        await this.refuseIfErased(this.info.identity, 'no device key is registered');
        return { $case: 'deviceKeyOptions', value: await this.ctx.actions.registrationOptions(this.actor()) };
      case 'registerDeviceKey':
        if (!method.value.response) throw new GatewayError(ErrorCode.BAD_REQUEST, 'response is required');
        await this.refuseIfErased(this.info.identity, 'no device key is registered');
        return { $case: 'registerDeviceKey', value: { credentialId: await this.ctx.actions.register(this.actor(), method.value.response) } };
      case 'artifactUrl':
        return { $case: 'artifactUrl', value: await this.ctx.actions.attachmentUrl(this.actor(), method.value.artifactId) };
      case 'join':
      case 'resume':
        throw new GatewayError(ErrorCode.ALREADY_JOINED, 'this connection already holds a session');
    }
  }

  actor(): Actor {
    return { tenant: this.tenant, room: this.room, participantId: this.participantId, identity: this.info.identity, role: this.info.role };
  }

  /** Tells the room a Smart Action was asked for or changed. */
  announce(action: SmartAction): void {
    this.ctx.hub.publish(this.tenant, this.room, { $case: 'smartAction', value: action });
  }

  /** An agent asks an end user of the room (the only one when none is named). */
  private async requestSmartAction(kind: string, participantId: string): Promise<SmartAction> {
    if (this.info.role !== 'agent') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only agents may request Smart Actions');
    const endUsers = (await this.ctx.store.list(this.tenant, this.room)).map((r) => r.info!).filter((i) => i?.role === 'end_user');
    const target = participantId ? endUsers.find((i) => i.participantId === participantId) : endUsers.length === 1 ? endUsers[0] : undefined;
    if (!target) throw new GatewayError(participantId ? ErrorCode.NOT_FOUND : ErrorCode.BAD_REQUEST, participantId ? 'no such end user in this room' : 'name the end user (participantId): the room has none or several');
    await this.refuseIfErased(target.identity, 'nothing is asked of this end user');
    const action = await this.ctx.actions.request(this.actor(), kind, { participantId: target.participantId, identity: target.identity });
    this.announce(action);
    return action;
  }

  /**
   * An end user erased during the session (a data-subject request) keeps their call, but no new
   * data of theirs is taken in it: no Smart Action asks them, they register no device key.
   */
  private async refuseIfErased(identity: string, what: string): Promise<void> {
    if ((await this.ctx.erasedIn(this.tenant, this.room)).has(identity)) throw erasedRefusal(what);
  }

  /** Redacts, stores, then tells the room; the response is the sender's acknowledgement. */
  private async sendMessage(text: string, clientMessageId: string): Promise<ChatMessage> {
    const wait = this.chatLimiter.take();
    if (wait > 0) throw new GatewayError(ErrorCode.RATE_LIMITED, 'too many messages; slow down', { details: { retryAfterMs: wait } });
    if (text.trim().length === 0) throw new GatewayError(ErrorCode.BAD_REQUEST, 'text must not be empty');
    const { maxChars } = this.ctx.chatLimits;
    if ([...text].length > maxChars) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, `a message holds at most ${maxChars} characters`);
    if (clientMessageId.length > 64) throw new GatewayError(ErrorCode.BAD_REQUEST, 'clientMessageId holds at most 64 characters');
    const redacted = redact(text, this.ctx.redactionPolicy(this.tenant));
    const { message, duplicate } = await this.ctx.chat.append(this.tenant, this.room, {
      participantId: this.participantId,
      identity: this.info.identity,
      role: this.info.role,
      text: redacted.text,
      clientMessageId,
      redacted: false,
      redactedKinds: Object.keys(redacted.counts),
      redactedBy: '',
    });
    if (!duplicate) this.ctx.hub.publish(this.tenant, this.room, { $case: 'chatMessage', value: message });
    return message;
  }

  /** Agents take a message out of the conversation after the fact, for everyone and in storage. */
  private async redactMessage(messageId: string): Promise<void> {
    if (this.info.role !== 'agent') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only agents may redact messages');
    if (!messageId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'messageId is required');
    await this.ctx.chat.redact(this.tenant, this.room, messageId, this.participantId);
    this.ctx.hub.publish(this.tenant, this.room, { $case: 'messageRedacted', value: { messageId, by: this.participantId } });
  }

  /** Recording controls: agents whose token grants canRecord. */
  private async controlRecording(action: 'startRecording' | 'pauseRecording' | 'resumeRecording' | 'stopRecording'): Promise<RecordingStatus> {
    if (this.info.role !== 'agent' || !this.grant.grants.canRecord) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not control recording');
    const recorders = this.ctx.recorders;
    if (action === 'startRecording') {
      // A recording would hold the erased end user again.
      if ((await this.ctx.erasedIn(this.tenant, this.room)).size > 0) throw erasedRefusal('this call may not be recorded');
      return startRoomRecording(recorders, this.tenant, this.room, this.participantId, this.ctx.recordingOptions(this.tenant));
    }
    const { recording, client } = await recorders.clientForRoom(this.tenant, this.room);
    const ref = { tenant: this.tenant, recordingId: recording.recordingId, requestedBy: this.participantId };
    const call = action === 'pauseRecording' ? client.pauseRecording : action === 'resumeRecording' ? client.resumeRecording : client.stopRecording;
    await callUnary(client, call, ref, action === 'stopRecording' ? 60_000 : 10_000);
    const state = action === 'pauseRecording' ? 'paused' : action === 'resumeRecording' ? 'resumed' : 'stopped';
    return { recordingId: recording.recordingId, state, by: this.participantId };
  }

  private withinLimit(held: number, limit: number, what: string): void {
    if (held >= limit) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a participant holds at most ${limit} ${what}`);
  }

  private ownTransport(id: string): string {
    if (!this.transports.has(id)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such transport in this session');
    return id;
  }

  private ownProducer(id: string): string {
    if (!this.tracks.has(id)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such producer in this session');
    return id;
  }

  private ownConsumer(id: string): string {
    if (!this.consumers.has(id)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such consumer in this session');
    return id;
  }

  private receiveTransport(): string {
    if (!this.recvTransportId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'create a receive transport first');
    return this.recvTransportId;
  }

  /** Calls the room's SFU node; an unreachable node triggers a check of the room's placement. */
  /**
   * A producer published away from the room's home node is imported there before anyone hears
   * of it, so the home node holds every stream of the room: the recorder taps the room there.
   */
  private async shareWithHomeNode(producerId: string): Promise<void> {
    try {
      const homeId = await this.ctx.directory.placementOf(this.tenant, this.room);
      if (!homeId || homeId === this.nodeId) return;
      const [home, self] = await Promise.all([this.ctx.directory.node(homeId), this.ctx.directory.node(this.nodeId)]);
      if (!home || !self) return;
      const client = this.ctx.directory.clientForNode(home);
      await callUnary(client, client.importProducer, { room: this.roomRef(), producerId, origin: { nodeId: self.nodeId, grpcAddress: self.grpcAddress } });
    } catch (error) {
      // The call goes on; only a recording of the room would miss this stream.
      this.log.warn({ err: error, producerId }, 'importing a producer into the room\'s home node failed');
    }
  }

  /**
   * Asks this session's node to import a producer published on another node of the room.
   * False when no participant of the room publishes it from another live node.
   */
  private async importProducer(producerId: string): Promise<boolean> {
    const records = await this.ctx.store.list(this.tenant, this.room);
    const owner = records.find((r) => r.info?.tracks.some((t) => t.producerId === producerId));
    if (!owner || owner.nodeId === this.nodeId) return false;
    const origin = await this.ctx.directory.node(owner.nodeId);
    if (!origin) return false;
    await this.sfuCall(this.sfu.importProducer, { room: this.roomRef(), producerId, origin: { nodeId: origin.nodeId, grpcAddress: origin.grpcAddress } });
    return true;
  }

  private sfuCall<Req, Res>(method: Parameters<typeof callUnary<Req, Res>>[1], request: Req): Promise<Res> {
    return callUnary<Req, Res>(this.sfu, method, request).catch((error: GatewayError) => {
      if (error.code === ErrorCode.UNAVAILABLE) this.log.warn({ err: error }, 'media node unreachable');
      throw error;
    });
  }
}
