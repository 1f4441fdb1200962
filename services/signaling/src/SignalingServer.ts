import type { Readable } from 'node:stream';
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { SessionTakeover, type RoomSessionRecord } from '@gateway/proto/gateway/events/v1/events';
import { CloseCode, type JoinResponse, type RecordingStatus } from '@gateway/proto/gateway/signaling/v1/signaling';
import {
  ArtifactStore,
  DeviceKeys,
  ErrorCode,
  GatewayError,
  createKeyring,
  buckets,
  callUnary,
  connectNats,
  createMetricsRegistry,
  observeKeyring,
  newId,
  openBucket,
  ensureStream,
  decodeChecked,
  hardenHttpServer,
  sessionTakeoverSchema,
  streams,
  startOpsServer,
  subjects,
  type Logger,
  type NatsConnection,
} from '@gateway/common';
import { recordingOptions, redactionPolicy, tenantLimits, type SignalingConfig } from './config.js';
import { TokenSessions, type HolderState } from './auth/TokenSessions.js';
import { ChatLog } from './chat/ChatLog.js';
import { finishRoom } from './chat/transcript.js';
import { SmartActions } from './actions/SmartActions.js';

import { verifyJoinToken } from './auth/tokens.js';
import { Session, parseResumeToken, type SessionContext, type SessionLink } from './Session.js';
import { ParticipantStore, RecorderDirectory, SfuDirectory } from '@gateway/cluster';
import { startRoomRecording } from './recording.js';
import { RoomHub } from './rooms/RoomHub.js';
import { RoomSessions } from './rooms/RoomSessions.js';
import { LiveDataSubjects } from './rooms/LiveDataSubjects.js';
import { Connection, type SessionBroker } from './ws/Connection.js';
import { createHttpHandler } from './http/routes.js';

/** How often a replica checks that the media nodes of its rooms are alive. */
const NODE_CHECK_MS = 2_000;

/**
 * One signaling replica: the public HTTP/WebSocket server, the sessions it holds, and its
 * links to NATS (events, registry, participants) and to the SFU nodes.
 */
/** A session that cannot be resumed: the client joins again. */
const sessionExpired = () => new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session can no longer be resumed; join again');

/** How often a resume re-reads a session record that changed under it before giving up. */
const TAKEOVER_ATTEMPTS = 4;

export class SignalingServer implements SessionBroker {
  readonly sessions = new Map<string, Session>();
  readonly connections = new Set<Connection>();
  private readonly ctx: SessionContext;
  private readonly timers: NodeJS.Timeout[] = [];
  private closing: Promise<void> | undefined;
  private shuttingDown = false;
  port = 0;
  opsPort = 0;
  private httpServer: http.Server | undefined;
  private wss: WebSocketServer | undefined;
  private stopOps: (() => Promise<void>) | undefined;
  private readonly metrics: ReturnType<typeof createSignalingMetrics>;
  private readonly dataSubjects: LiveDataSubjects;

  private constructor(
    readonly config: SignalingConfig,
    private readonly nc: NatsConnection,
    readonly directory: SfuDirectory,
    readonly recorders: RecorderDirectory,
    readonly store: ParticipantStore,
    readonly hub: RoomHub,
    readonly chat: ChatLog,
    readonly actions: SmartActions,
    private readonly artifacts: ArtifactStore,
    private readonly roomSessions: RoomSessions,
    private readonly tokenSessions: TokenSessions,
    readonly registry: Registry,
    private readonly log: Logger,
  ) {
    this.ctx = {
      replicaId: config.replicaId,
      resumeWindowMs: config.resumeWindowMs,
      directory,
      recorders,
      recordingOptions: (tenant) => recordingOptions(config.tenants.find((t) => t.name === tenant)),
      store,
      hub,
      chat,
      actions,
      chatLimits: config.chat,
      redactionPolicy: (tenant) => redactionPolicy(config.tenants.find((t) => t.name === tenant)),
      log,
      forget: (session) => {
        if (this.sessions.get(session.participantId) === session) this.sessions.delete(session.participantId);
      },
      participantGone: (tenant, room) => void this.finishConversationIfEmpty(tenant, room),
      erasedIn: (tenant, room) => this.roomSessions.erasedIn(tenant, room),
      releaseToken: (session) => this.releaseToken(session),
      mediaLimits: { transports: config.limits.transportsPerParticipant, producers: config.limits.producersPerParticipant, consumers: config.limits.consumersPerParticipant },
    };
    this.metrics = createSignalingMetrics(registry, this);
    this.dataSubjects = new LiveDataSubjects(nc, () => config.tenants, roomSessions, chat, actions, recorders, log);
  }

  static async start(config: SignalingConfig, log: Logger): Promise<SignalingServer> {
    const nc = await connectNats(config.nats, config.replicaId, log);
    const directory = await SfuDirectory.open(nc, config.grpcTls, log);
    const recorders = await RecorderDirectory.open(nc, config.grpcTls);
    const store = await ParticipantStore.open(nc, config.recordRefreshMs);
    const hub = new RoomHub(nc, config.replicaId, log);
    const keyring = await createKeyring(config.keyring);
    const registry = createMetricsRegistry('signaling');
    observeKeyring(registry, keyring);
    const chat = await ChatLog.open(nc, keyring);
    const artifacts = await ArtifactStore.open(nc, keyring, 'conversations');
    // The page origins WebAuthn accepts: configured, or this server's own port on localhost.
    let port = 0;
    const actions = new SmartActions(
      await openBucket(nc, buckets.smartActions),
      await openBucket(nc, buckets.webauthnChallenges),
      new DeviceKeys(await openBucket(nc, buckets.deviceKeys)),
      artifacts,
      () => config.tenants,
      { rpId: config.webauthn.rpId, rpName: 'Gateway', origins: () => config.webauthn.origins ?? [`http://localhost:${port}`, `https://localhost:${port}`] },
      { ...config.smartActions, concurrentUploads: config.limits.concurrentUploads },
      await openBucket(nc, buckets.uploadLeases),
    );
    await ensureStream(nc, streams.sessions);
    const roomSessions = new RoomSessions(nc, await openBucket(nc, buckets.roomSessions), keyring);
    const tokenSessions = new TokenSessions(await openBucket(nc, buckets.tokenSessions));
    const server = new SignalingServer(config, nc, directory, recorders, store, hub, chat, actions, artifacts, roomSessions, tokenSessions, registry, log);
    server.listenForTakeovers();
    server.dataSubjects.listen();
    server.timers.push(setInterval(() => void server.checkNodes(), NODE_CHECK_MS));
    server.timers.push(setInterval(() => void server.sweepEndingSessions(), config.sessionFinishStaleMs / 2));
    // Rooms a stopped replica left behind are ended at start too.
    void server.sweepAbandonedRooms();
    server.timers.push(setInterval(() => void server.refreshRecords().then(() => server.sweepStaleRecords()), config.recordRefreshMs));
    await server.listen();
    port = server.port;
    return server;
  }

  private async listen(): Promise<void> {
    const wss = new WebSocketServer({ noServer: true, maxPayload: this.config.hardFrameLimitBytes });
    this.wss = wss;
    const httpServer = http.createServer(createHttpHandler(this.config, this.log, this));
    hardenHttpServer(httpServer);
    httpServer.on('upgrade', (req, socket, head) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/ws' || this.shuttingDown) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const connection = new Connection(ws, this, this.config, this.metrics.observer, this.log, (c) => this.connections.delete(c));
        this.connections.add(connection);
      });
    });
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(this.config.port, this.config.host, () => resolve());
    });
    this.httpServer = httpServer;
    const address = httpServer.address();
    this.port = typeof address === 'object' && address ? address.port : this.config.port;
    const ops = await startOpsServer({
      port: this.config.opsPort,
      registry: this.registry,
      readiness: () => (this.shuttingDown ? 'shutting down' : this.nc.isClosed() ? 'nats connection closed' : undefined),
    });
    this.opsPort = ops.port;
    this.stopOps = ops.close;
  }

  async join(link: SessionLink, token: string): Promise<{ session: Session; response: JoinResponse }> {
    const started = performance.now();
    // The token is checked before any room work.
    const grant = await verifyJoinToken(this.config.tenants, token);
    const limits = tenantLimits(this.config, grant.tenant);
    // Placement needs what the participant will consume and which nodes the room spans already.
    const present = await this.store.list(grant.tenant, grant.room);
    if (present.length >= limits.participantsPerRoom) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a room holds at most ${limits.participantsPerRoom} participants`);
    if (present.length === 0 && (await this.store.roomCountReaches(grant.tenant, limits.rooms))) {
      throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `the tenant has ${limits.rooms} rooms in use, its limit`);
    }
    const participantId = newId('PA');
    // A token holds a slot per live session (one by default): a copied token cannot join twice.
    await this.tokenSessions.claim(grant.tenant, grant.tokenId, { participantId, room: grant.room }, limits.sessionsPerToken, (holder) => this.sessionLives(grant.tenant, holder.room, holder.participantId));
    let session: Session | undefined;
    try {
      const placed = await this.directory.placeParticipant(grant.tenant, grant.room, {
        consumers: grant.grants.canSubscribe ? present.reduce((n, r) => n + (r.info?.tracks.length ?? 0), 0) : 0,
        roomNodes: present.map((r) => r.nodeId),
      });
      const { rtpCapabilities, activeSpeakerParticipantId } = await callUnary(placed.client, placed.client.openRoom, { room: { tenant: grant.tenant, room: grant.room } });
      let resumeToken: string;
      ({ session, resumeToken } = Session.create(this.ctx, participantId, grant, placed.nodeId, placed.client));
      session.attach(link);
      this.sessions.set(session.participantId, session);
      // Subscribe before announcing, so nothing published from now on is missed.
      this.hub.add(grant.tenant, grant.room, session);
      await session.save();
      await this.directory.keepPlacement(grant.tenant, grant.room, placed.nodeId);
      // The room's session record carries the participant to the CRM: a join without it is no join.
      await this.roomSessions.join(grant.tenant, grant.room, {
        participantId: session.participantId,
        role: grant.role,
        externalId: grant.identity,
        crmContactId: grant.contact.crmContactId ?? '',
        phoneNumber: grant.contact.phoneNumber ?? '',
        deviceIds: grant.contact.deviceIds ?? [],
        joinedAtMs: session.info.joinedAtMs,
      });
      const others = (await this.store.list(grant.tenant, grant.room))
        .filter((r) => r.info && r.info.participantId !== participantId)
        .map((r) => r.info!);
      const recording = await this.recordingStatus(grant.tenant, grant.room);
      const [messages, smartActions] = await Promise.all([this.chatHistory(grant.tenant, grant.room), this.actions.list(grant.tenant, grant.room)]);
      this.hub.publish(grant.tenant, grant.room, { $case: 'participantJoined', value: session.info });
      this.metrics.joinSeconds.observe((performance.now() - started) / 1000);
      this.log.info({ participantId, room: `${grant.tenant}/${grant.room}`, nodeId: placed.nodeId, role: grant.role }, 'participant joined');
      const tenant = this.config.tenants.find((t) => t.name === grant.tenant);
      if (!recording && grant.role === 'agent' && tenant?.recording?.onAgentJoin && (await this.roomSessions.erasedIn(grant.tenant, grant.room)).size === 0) {
        // The tenant records every call an agent takes; the agent's own media joins the recording as it is published.
        // Not a session where an end user asked for erasure: the recording would hold them again.
        void startRoomRecording(this.recorders, grant.tenant, grant.room, '', recordingOptions(tenant)).catch((error) => {
          if (!(error instanceof GatewayError && error.code === ErrorCode.ALREADY_EXISTS)) this.log.error({ err: error, room: `${grant.tenant}/${grant.room}` }, 'starting the automatic recording failed');
        });
      }
      return { session, response: session.joinResponse({ participants: others, routerRtpCapabilities: rtpCapabilities ?? {}, resumeToken, resumeWindowMs: this.config.resumeWindowMs, recording, messages, smartActions, activeSpeakerParticipantId }) };
    } catch (error) {
      // Nothing of a join that failed half-way stays: its media, record, slot and membership go.
      if (session) await session.end('left').catch((rollbackError: unknown) => this.log.warn({ err: rollbackError, participantId }, 'rolling back a failed join failed'));
      else await this.tokenSessions.release(grant.tenant, grant.tokenId, participantId, limits.sessionsPerToken).catch(() => undefined);
      throw error;
    }
  }

  async resume(link: SessionLink, resumeToken: string): Promise<{ session: Session; response: JoinResponse }> {
    const parsed = parseResumeToken(resumeToken);
    if (!parsed) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the resume token is malformed');
    const { tenant, room, participantId, secret } = parsed;
    let session = this.sessions.get(participantId);
    if (session && (session.tenant !== tenant || session.room !== room || !session.matchesResumeSecret(secret))) {
      throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the resume token is invalid');
    }
    if (session) {
      // The same rule as for a session held elsewhere (takeOverSession reads it from the record).
      const refusal = this.resumeRefusal(tenant, session.info.joinedAtMs, session.connected, session.disconnectedAt);
      if (refusal) {
        this.metrics.resumes.inc({ result: 'expired' });
        throw refusal;
      }
    } else session = await this.takeOverSession(parsed);
    session.attach(link);
    try {
      // The room must still be the one the session's media lives in.
      const { rtpCapabilities, created, activeSpeakerParticipantId } = await callUnary(session.sfu, session.sfu.openRoom, { room: { tenant, room } });
      if (created) {
        session.forgetLocally();
        await this.store.delete(tenant, room, participantId);
        await this.releaseToken(session).catch(() => undefined);
        this.metrics.resumes.inc({ result: 'expired' });
        throw sessionExpired();
      }
      await session.save();
      const others = (await this.store.list(tenant, room)).filter((r) => r.info && r.info.participantId !== participantId).map((r) => r.info!);
      const [recording, messages, smartActions] = await Promise.all([this.recordingStatus(tenant, room), this.chatHistory(tenant, room), this.actions.list(tenant, room)]);
      this.metrics.resumes.inc({ result: 'resumed' });
      this.log.info({ participantId, room: `${tenant}/${room}` }, 'session resumed');
      return { session, response: session.joinResponse({ participants: others, routerRtpCapabilities: rtpCapabilities ?? {}, resumeToken, resumeWindowMs: this.config.resumeWindowMs, recording, messages, smartActions, activeSpeakerParticipantId }) };
    } catch (error) {
      // A resume that failed half-way leaves the session as it was before: dropped, waiting for
      // the client's next resume within the window (its media untouched).
      session.detach(link);
      throw error;
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
    if (!connected && disconnectedAtMs > 0 && now - disconnectedAtMs > this.config.resumeWindowMs) return sessionExpired();
    if (now - startedAtMs > tenantLimits(this.config, tenant).maxSessionMs) {
      return new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session reached its maximum length; join again');
    }
    return undefined;
  }

  /**
   * Whether a session still holds its join token's slot: its record exists, its replica is
   * alive, and it is connected or still resumable (`unknown` without a record). A session past its resume window, or held by
   * a replica that died, does not keep the token from joining again (the SDK rejoins with it).
   */
  private async sessionLives(tenant: string, room: string, participantId: string): Promise<HolderState> {
    const stored = await this.store.get(tenant, room, participantId);
    if (!stored) return 'unknown';
    if (this.store.isStale(stored.record)) return 'ended';
    const { connected, disconnectedAtMs } = stored.record;
    return connected || disconnectedAtMs === 0 || Date.now() - disconnectedAtMs <= this.config.resumeWindowMs ? 'live' : 'ended';
  }

  /** Gives back the slot of the join token a session held. */
  private releaseToken(session: Session): Promise<void> {
    return this.tokenSessions.release(session.tenant, session.grant.tokenId, session.participantId, tenantLimits(this.config, session.tenant).sessionsPerToken);
  }

  /**
   * Takes a session held by another replica (or by nobody) from its record. The old owner may
   * still be writing the record as its socket closes, so a lost compare-and-set is read again.
   */
  private async takeOverSession({ tenant, room, participantId, secret }: { tenant: string; room: string; participantId: string; secret: string }): Promise<Session> {
    for (let attempt = 1; ; attempt++) {
      const stored = await this.store.get(tenant, room, participantId).catch(() => undefined);
      if (!stored) {
        this.metrics.resumes.inc({ result: 'expired' });
        throw sessionExpired();
      }
      const { record, revision } = stored;
      if (!Session.secretMatches(record.resumeTokenHash, secret)) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the resume token is invalid');
      const refusal = this.resumeRefusal(tenant, record.info!.joinedAtMs, record.connected, record.disconnectedAtMs);
      if (refusal) {
        this.metrics.resumes.inc({ result: 'expired' });
        throw refusal;
      }
      // The media must still be where the record says: a live node that still hosts the room.
      const node = await this.directory.node(record.nodeId);
      // (A room spans several nodes: the session's node need not be the room's home.)
      if (!node) throw sessionExpired();
      const client = this.directory.clientForNode(node);
      const session = Session.fromRecord(this.ctx, tenant, room, { ...record, owner: this.config.replicaId, connected: true }, client);
      // Claim the record: fails if anyone changed it meanwhile (the old owner noting the drop, a parallel resume).
      try {
        await session.claim(revision);
      } catch (error) {
        if (attempt < TAKEOVER_ATTEMPTS) continue;
        throw new GatewayError(ErrorCode.SESSION_EXPIRED, 'the session changed while resuming; try again', { cause: error });
      }
      if (record.owner && record.owner !== this.config.replicaId) {
        const takeover = SessionTakeover.encode({ participantId, newOwner: this.config.replicaId }).finish();
        this.nc.publish(subjects.sessionTakeover(tenant, participantId), takeover);
      }
      this.sessions.set(participantId, session);
      this.hub.add(tenant, room, session);
      return session;
    }
  }

  /** The room's recording, as a client joining or resuming is told of it. */
  private async recordingStatus(tenant: string, room: string): Promise<RecordingStatus | undefined> {
    const recording = await this.recorders.recordingOf(tenant, room).catch(() => undefined);
    return recording ? { recordingId: recording.recordingId, state: recording.state, by: '' } : undefined;
  }

  /** Another replica resumed one of our sessions: let go of it without touching its media. */
  private listenForTakeovers(): void {
    const subscription = this.nc.subscribe(subjects.sessionTakeover('*', '*'));
    void (async () => {
      for await (const message of subscription) {
        try {
          const { participantId, newOwner } = decodeChecked(SessionTakeover, message.data, sessionTakeoverSchema, 'session takeover');
          if (newOwner === this.config.replicaId) continue;
          const session = this.sessions.get(participantId);
          if (!session) continue;
          session.forgetLocally();
          const connection = [...this.connections].find((c) => c.participantId === participantId);
          connection?.close(CloseCode.CLOSE_CODE_SESSION_REPLACED, 'session resumed elsewhere');
        } catch (error) {
          this.log.warn({ err: error }, 'bad session takeover message');
        }
      }
    })();
  }

  /** For every room this replica serves: if its media node is gone, its clients must rejoin. */
  private async checkNodes(): Promise<void> {
    for (const { tenant, room } of this.hub.servedRooms()) {
      try {
        const sessions = [...this.sessions.values()].filter((s) => s.tenant === tenant && s.room === room);
        for (const nodeId of new Set(sessions.map((s) => s.nodeId))) {
          if (await this.directory.node(nodeId)) continue;
          this.log.warn({ room: `${tenant}/${room}`, nodeId }, 'media node of the room is gone; clients must rejoin');
          await this.directory.forgetPlacement(tenant, room, nodeId);
          this.hub.publish(tenant, room, { $case: 'roomClosed', value: { reason: 'node_gone', nodeId } });
          for (const s of sessions) if (s.nodeId === nodeId) await s.abandon('node_gone');
        }
      } catch (error) {
        this.log.warn({ err: error, room: `${tenant}/${room}` }, 'room check failed');
      }
    }
  }

  /**
   * Participants whose records went stale belong to a replica that died: close their media and
   * tell the room they left.
   */
  private async sweepStaleRecords(): Promise<void> {
    for (const { tenant, room } of this.hub.servedRooms()) {
      try {
        for (const participantId of await this.removeStaleParticipants(tenant, room)) {
          this.hub.publish(tenant, room, { $case: 'participantLeft', value: { participantId, reason: 'disconnected' } });
          void this.finishConversationIfEmpty(tenant, room);
        }
      } catch (error) {
        this.log.warn({ err: error, room: `${tenant}/${room}` }, 'sweeping stale participants failed');
      }
    }
  }

  /**
   * Removes the room's participants whose records went stale (and that no session here holds):
   * their media closed at the SFU, their records deleted, their token slots released. Returns
   * their ids.
   */
  private async removeStaleParticipants(tenant: string, room: string): Promise<string[]> {
    const removed: string[] = [];
    for (const record of await this.store.stale(tenant, room)) {
      const participantId = record.info?.participantId;
      if (!participantId || this.sessions.has(participantId)) continue;
      const client = this.directory.clientFor(record.nodeId);
      if (client) await callUnary(client, client.closeParticipant, { room: { tenant, room }, participantId }).catch(() => undefined);
      await this.store.delete(tenant, room, participantId);
      if (record.tokenId) await this.tokenSessions.release(tenant, record.tokenId, participantId, tenantLimits(this.config, tenant).sessionsPerToken).catch(() => undefined);
      removed.push(participantId);
    }
    return removed;
  }

  /**
   * Rooms no replica serves any more (their replica stopped or died, and nobody resumed): their
   * participants' records go stale, then the room ends here like any other, its session finished.
   */
  private async sweepAbandonedRooms(): Promise<void> {
    try {
      const served = new Set(this.hub.servedRooms().map(({ tenant, room }) => `${tenant}.${room}`));
      for (const { tenant, room } of await this.roomSessions.rooms()) {
        if (served.has(`${tenant}.${room}`) || this.shuttingDown) continue;
        await this.removeStaleParticipants(tenant, room);
        await this.finishConversationIfEmpty(tenant, room);
      }
    } catch (error) {
      this.log.warn({ err: error }, 'sweeping abandoned rooms failed');
    }
  }

  /**
   * An end user's upload answering a Smart Action, authenticated by their session's resume token
   * (checked against the participant record, so any replica serves it).
   */
  async uploadForAction(actionId: string, authorization: string | undefined, body: Readable) {
    const bearer = /^Bearer (.+)$/.exec(authorization ?? '')?.[1];
    const parsed = bearer ? parseResumeToken(bearer) : undefined;
    if (!parsed) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'send the session token as Authorization: Bearer');
    const stored = await this.store.get(parsed.tenant, parsed.room, parsed.participantId).catch(() => undefined);
    if (!stored || !Session.secretMatches(stored.record.resumeTokenHash, parsed.secret)) throw new GatewayError(ErrorCode.UNAUTHENTICATED, 'the session token is not valid');
    const info = stored.record.info!;
    const actor = { tenant: parsed.tenant, room: parsed.room, participantId: info.participantId, identity: info.identity, role: info.role };
    const action = await this.actions.upload(actor, actionId, body);
    this.hub.publish(parsed.tenant, parsed.room, { $case: 'smartAction', value: action });
    return action;
  }

  /** The last participant left: the room's conversation becomes its transcript. */
  private async finishConversationIfEmpty(tenant: string, room: string): Promise<void> {
    let claimed: Awaited<ReturnType<RoomSessions['claim']>>;
    try {
      if ((await this.store.list(tenant, room)).length > 0) return;
      // One finisher per room end, whichever replica or leave got here first.
      claimed = await this.roomSessions.claim(tenant, room);
    } catch (error) {
      this.log.error({ err: error, room: `${tenant}/${room}` }, 'checking whether the room ended failed');
      return;
    }
    if (claimed) await this.finishSession(tenant, room, claimed);
  }

  /**
   * Turns an ended room's conversation into its transcript and announces the session. What
   * fails here is retried a few times, then left to the sweep: the session's ending record and
   * the conversation stay stored (encrypted) until it succeeds.
   */
  private async finishSession(tenant: string, room: string, claimed: RoomSessionRecord): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        // Read again: an erasure or a rectification may have changed it since it was claimed.
        const current = await this.roomSessions.current(tenant, room, claimed);
        const participants = await this.roomSessions.participantsOf(tenant, current);
        const conversationId = await finishRoom({ nc: this.nc, chat: this.chat, actions: this.actions, artifacts: this.artifacts, log: this.log }, tenant, room, participants);
        await this.roomSessions.announce(tenant, room, current, conversationId);
        await this.roomSessions.finished(tenant, room, claimed);
        // The room's placement ends with it (a joiner meanwhile keeps one: keepPlacement).
        if ((await this.store.list(tenant, room)).length === 0) await this.directory.forgetRoom(tenant, room).catch((error) => this.log.warn({ err: error, room: `${tenant}/${room}` }, 'forgetting the room placement failed'));
        return;
      } catch (error) {
        this.log.error({ err: error, room: `${tenant}/${room}`, attempt }, 'finishing the room session failed');
        if (attempt >= 5 || this.shuttingDown) return;
        await new Promise((r) => setTimeout(r, 1_000 * 2 ** attempt));
      }
    }
  }

  /** Room sessions left unfinished (a finisher that gave up or died) are finished here. */
  private async sweepEndingSessions(): Promise<void> {
    await this.sweepAbandonedRooms();
    try {
      for (const { tenant, room, record } of await this.roomSessions.takeStale(this.config.sessionFinishStaleMs)) {
        this.log.warn({ room: `${tenant}/${room}` }, 'finishing a room session left unfinished');
        await this.finishSession(tenant, room, record);
      }
    } catch (error) {
      this.log.warn({ err: error }, 'sweeping unfinished room sessions failed');
    }
  }

  /** The conversation a joining client is shown; a chat store that does not answer does not stop the join. */
  private async chatHistory(tenant: string, room: string) {
    return this.chat.history(tenant, room, this.config.chat.historyLimit).catch((error) => {
      this.log.warn({ err: error, room: `${tenant}/${room}` }, 'reading the chat history failed');
      return [];
    });
  }

  private async refreshRecords(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.persist()));
  }

  /**
   * Stops the replica. Sockets are closed with 4503 and sessions are left resumable, so clients
   * carry on through another replica; their media is not touched.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.shuttingDown = true;
      for (const timer of this.timers) clearInterval(timer);
      for (const connection of [...this.connections]) connection.close(CloseCode.CLOSE_CODE_SERVER_SHUTDOWN, 'server shutting down');
      await Promise.all([...this.sessions.values()].map((s) => s.persist()));
      for (const session of [...this.sessions.values()]) session.forgetLocally();
      this.hub.close();
      await this.dataSubjects.close();
      this.wss?.close();
      await new Promise<void>((resolve) => {
        if (!this.httpServer) return resolve();
        this.httpServer.closeAllConnections();
        this.httpServer.close(() => resolve());
      });
      await this.stopOps?.();
      this.directory.close();
      this.recorders.close();
      await this.nc.drain().catch(() => undefined);
    })();
    return this.closing;
  }
}

function createSignalingMetrics(registry: Registry, server: SignalingServer) {
  new Gauge({
    name: 'gateway_signaling_connections',
    help: 'Open WebSocket connections',
    registers: [registry],
    collect() {
      this.set(server.connections.size);
    },
  });
  new Gauge({
    name: 'gateway_signaling_sessions',
    help: 'Sessions held by this replica (connected or within the resume window)',
    registers: [registry],
    collect() {
      this.set(server.sessions.size);
    },
  });
  new Gauge({
    name: 'gateway_signaling_chat_keys_cached',
    help: 'Unwrapped conversation keys this replica holds (bounded in number and time, dropped on erasure)',
    registers: [registry],
    collect() {
      this.set(server.chat.cachedKeys);
    },
  });
  const requests = new Counter({
    name: 'gateway_signaling_requests_total',
    help: 'Client requests by method and result code',
    labelNames: ['method', 'code'] as const,
    registers: [registry],
  });
  const rateLimited = new Counter({ name: 'gateway_signaling_rate_limited_total', help: 'Requests refused by the rate limit', registers: [registry] });
  const joinSeconds = new Histogram({
    name: 'gateway_signaling_join_duration_seconds',
    help: 'Time to serve a join: token check, placement, room open, state',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const resumes = new Counter({ name: 'gateway_signaling_resumes_total', help: 'Resume attempts by result', labelNames: ['result'] as const, registers: [registry] });
  return {
    joinSeconds,
    resumes,
    observer: {
      request: (method: string, code: string) => requests.inc({ method, code }),
      rateLimited: () => rateLimited.inc(),
    },
  };
}
