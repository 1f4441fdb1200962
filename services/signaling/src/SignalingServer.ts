import http from 'node:http';
import type { Readable } from 'node:stream';
import { WebSocketServer } from 'ws';
import { DeskConnection } from './desk/DeskConnection.js';
import { DeskHub } from './desk/DeskHub.js';
import { RoutingClient } from './desk/RoutingClient.js';
import type { Registry } from 'prom-client';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import {
  ArtifactStore,
  ConfiguredTenants,
  DeviceKeys,
  buckets,
  closeHttp,
  connectNats,
  createKeyring,
  createMetricsRegistry,
  ensureStream,
  hardenHttpServer,
  listenHttp,
  observeKeyring,
  openBucket,
  startOpsServer,
  Startup,
  streams,
  WebhookAudience,
  WebhookEvents,
  TenantAuth,
  watchGrpcTls,
  type Logger,
  type NatsConnection,
  type TenantCredentials,
} from '@gateway/common';
import { ParticipantStore, RecorderDirectory, ReplicaLiveness, SfuDirectory } from '@gateway/cluster';
import { recordingOptions, redactionPolicy, tenantLimits, type SignalingConfig } from './config.js';
import { TokenSessions } from './auth/TokenSessions.js';
import { ChatLog } from './chat/ChatLog.js';
import { SmartActions } from './actions/SmartActions.js';
import { createSignalingMetrics } from './metrics.js';
import { JoinService } from './participant/JoinService.js';
import { SessionControl } from './participant/SessionControl.js';
import { SessionRegistry } from './participant/SessionRegistry.js';
import { createHandlerTable, dispatch } from './requests/dispatch.js';
import { RoomHub } from './rooms/RoomHub.js';
import { RoomService } from './rooms/RoomService.js';
import { RoomSessions } from './rooms/RoomSessions.js';
import { RoomSupervisor } from './rooms/RoomSupervisor.js';
import { LiveDataSubjects } from './rooms/LiveDataSubjects.js';
import { Connection, type SessionBroker } from './ws/Connection.js';
import { createHttpHandler } from './http/routes.js';
import { uploadForAction } from './http/uploads.js';
import { TurnCredentials } from './participant/turnCredentials.js';

/** The parts of a replica, built by `start` and wired together here. */
interface Parts {
  config: SignalingConfig;
  /** The tenants as they are now: looked up at each use, never kept (they change with their file). */
  tenants: ConfiguredTenants;
  /** The TURN servers handed out: the shared secret is taken up again when its file changes (a rotation). */
  turn: TurnCredentials;
  nc: NatsConnection;
  directory: SfuDirectory;
  recorders: RecorderDirectory;
  store: ParticipantStore;
  liveness: ReplicaLiveness;
  hub: RoomHub;
  chat: ChatLog;
  actions: SmartActions;
  artifacts: ArtifactStore;
  roomSessions: RoomSessions;
  tokenSessions: TokenSessions;
  credentials: TenantCredentials;
  registry: Registry;
  log: Logger;
}

/**
 * One signaling replica: the public HTTP/WebSocket server and its links to NATS (events,
 * registry, participants) and to the SFU nodes. It only wires: joins and resumes are the
 * JoinService's, held sessions the SessionRegistry's, requests the dispatch table's
 * (requests/), sweeps and room ends the RoomSupervisor's, the room API the RoomService's (with
 * SessionControl reaching sessions on any replica).
 */
export class SignalingServer {
  readonly connections = new Set<Connection>();
  readonly sessions: SessionRegistry;
  port = 0;
  opsPort = 0;
  private readonly joins: JoinService;
  private readonly supervisor: RoomSupervisor;
  private readonly broker: SessionBroker;
  private readonly dataSubjects: LiveDataSubjects;
  private readonly control: SessionControl;
  private readonly rooms: RoomService;
  private readonly metrics: ReturnType<typeof createSignalingMetrics>;
  private closing: Promise<void> | undefined;
  private shuttingDown = false;
  private httpServer: http.Server | undefined;
  private wss: WebSocketServer | undefined;
  private readonly desks = new Set<DeskConnection>();
  private deskHub: DeskHub | undefined;
  private stopOps: (() => Promise<void>) | undefined;

  private constructor(private readonly parts: Parts) {
    const { config, tenants, turn, nc, directory, recorders, store, liveness, hub, chat, actions, artifacts, roomSessions, tokenSessions, credentials, registry, log } = parts;
    const tenant = (name: string) => tenants.find(name);
    const erasedIn = (tenantName: string, room: string) => roomSessions.erasedIn(tenantName, room);
    const participants = (tenantName: string, room: string) => store.list(tenantName, room);
    const releaseTokenSlot = (tenantName: string, tokenId: string, participantId: string) =>
      tokenSessions.release(tenantName, tokenId, participantId, tenantLimits(config, tenant(tenantName)).sessionsPerToken);
    this.metrics = createSignalingMetrics(registry, { connections: () => this.connections.size, sessions: () => this.sessions.size, chatKeysCached: () => chat.cachedKeys });
    this.sessions = new SessionRegistry({
      replicaId: config.replicaId,
      resumeWindowMs: config.resumeWindowMs,
      store,
      hub,
      releaseTokenSlot: (session) => releaseTokenSlot(session.tenant, session.grant.tokenId, session.participantId),
      revokeToken: async (session) => {
        if (session.grant.tokenId) await tokenSessions.revoke(session.tenant, session.grant.tokenId, session.grant.expiresAt * 1000);
      },
      participantGone: (tenantName, room) => this.supervisor.participantGone(tenantName, room),
      log,
    });
    this.supervisor = new RoomSupervisor({
      sessions: this.sessions,
      store,
      directory,
      hub,
      roomSessions,
      releaseTokenSlot,
      roomEnd: { nc, chat, actions, artifacts, log },
      sessionFinishStaleMs: config.sessionFinishStaleMs,
      log,
    });
    liveness.onDeparted(() => this.supervisor.replicasDeparted());
    // The tenant's rooms in use: those served here now, and the others' as of their last heartbeat.
    const roomsInUse = (tenantName: string) => (hub.roomsPerTenant().get(tenantName) ?? 0) + liveness.others().reduce((n, beat) => n + (beat.rooms[tenantName] ?? 0), 0);
    this.joins = new JoinService({
      config,
      tenants,
      turn,
      credentials,
      nc,
      store,
      directory,
      recorders,
      hub,
      roomSessions,
      tokenSessions,
      chat,
      actions,
      sessions: this.sessions,
      roomsInUse,
      metrics: this.metrics,
      log,
    });
    const table = createHandlerTable({
      lifecycle: { end: (session, reason) => this.sessions.end(session, reason) },
      media: {
        limits: { transports: config.limits.transportsPerParticipant, producers: config.limits.producersPerParticipant, consumers: config.limits.consumersPerParticipant },
        hub,
        participants,
        nodes: directory,
        iceServers: (session) => turn.iceServersFor(session.participantId),
      },
      chat: { chat, hub, limits: config.chat, redactionPolicy: (name) => redactionPolicy(tenant(name)) },
      data: { hub, limits: config.data },
      participant: { hub },
      recording: { recorders, recordingOptions: (name) => recordingOptions(tenant(name)), erasedIn },
      smartActions: { actions, hub, participants, erasedIn },
      deviceKeys: { actions, erasedIn },
    });
    this.broker = {
      join: (link, token, version) => this.joins.join(link, token, version),
      resume: (link, resumeToken, version) => this.joins.resume(link, resumeToken, version),
      handle: (session, request) => dispatch(table, session, request),
      detach: (session, link) => this.sessions.detach(session, link),
    };
    this.control = new SessionControl({ nc, sessions: this.sessions, store, hub, log });
    this.rooms = new RoomService({
      store,
      control: this.control,
      hub,
      recorders,
      recordingOptions: (name) => recordingOptions(tenant(name)),
      erasedIn,
      closeRoom: (tenantName, room, forMs) => tokenSessions.closeRoom(tenantName, room, forMs),
      log,
    });
    this.dataSubjects = new LiveDataSubjects(nc, () => tenants.current, roomSessions, chat, actions, recorders, log);
  }

  static async start(config: SignalingConfig, log: Logger): Promise<SignalingServer> {
    return Startup.run(async (startup) => {
      // No caller stack kept per NATS request (connectNats): a join makes a score of them.
      const nc = startup.opened(await connectNats(config.nats, config.replicaId, log, { asyncTraces: false }), (connection) => connection.close());
      // Tenants given as a file are taken up again when it changes (a Secret updated in place).
      const tenants = startup.opened(ConfiguredTenants.start(config.tenants, log), (configured) => configured.close());
      // The TURN secret too (a rotation without a restart, docs/turn.md).
      const turn = startup.opened(TurnCredentials.start(config.turn, log), (credentials) => credentials.close());
      // Certificates are taken up again when their files change (cert-manager renews them); nothing of it keeps the process alive.
      const tls = startup.opened(watchGrpcTls(config.grpcTls, log), (source) => source?.close());
      const directory = startup.opened(await SfuDirectory.open(nc, tls, log), (sfus) => sfus.close());
      const recorders = startup.opened(await RecorderDirectory.open(nc, tls), (nodes) => nodes.close());
      // What the tenants' backends are told by webhook (docs/webhooks.md): joins, leaves, tracks, room starts and ends.
      // Only for tenants with endpoints: most have none, and every join would store an event for nobody.
      const audience = startup.opened(await WebhookAudience.watch(await openBucket(nc, buckets.webhooks), log), (watch) => watch.close());
      const webhooks = new WebhookEvents(nc, log, audience);
      const hub = startup.opened(new RoomHub(nc, config.replicaId, log, webhooks), (rooms) => rooms.close());
      // Participant records are fresh while their replica's heartbeat runs; each beat tells the rooms served per tenant.
      const liveness = startup.opened(
        await ReplicaLiveness.open(nc, { replicaId: config.replicaId, heartbeatMs: config.heartbeatMs, announce: () => ({ rooms: Object.fromEntries(hub.roomsPerTenant()) }), log }),
        (beats) => beats.stop(),
      );
      const store = await ParticipantStore.open(nc, liveness);
      const keyring = startup.opened(await createKeyring(config.keyring, log), (keys) => keys.close());
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
        () => tenants.current,
        { rpId: config.webauthn.rpId, rpName: 'Gateway', origins: () => config.webauthn.origins ?? [`http://localhost:${port}`, `https://localhost:${port}`] },
        { ...config.smartActions, concurrentUploads: config.limits.concurrentUploads },
        await openBucket(nc, buckets.uploadLeases),
      );
      await ensureStream(nc, streams.sessions);
      await ensureStream(nc, streams.webhooks);
      const roomSessions = new RoomSessions(nc, await openBucket(nc, buckets.roomSessions), keyring, webhooks);
      const tokenSessions = startup.opened(await TokenSessions.open(await openBucket(nc, buckets.tokenSessions), log), (sessions) => sessions.close());
      // Join tokens and the room API take the tenants' API keys kept in NATS too (revocations within API_KEY_CACHE_MS).
      const credentials = new TenantAuth(() => tenants.current, { kv: await openBucket(nc, buckets.apiKeys), keyring, log });
      // From here the replica's own close() owns every part, timers and subscriptions included.
      const server = startup.opened(
        new SignalingServer({ config, tenants, turn, nc, directory, recorders, store, liveness, hub, chat, actions, artifacts, roomSessions, tokenSessions, credentials, registry, log }),
        (replica) => replica.close(),
      );
      server.joins.listenForTakeovers();
      server.control.listen();
      server.dataSubjects.listen();
      server.supervisor.start();
      liveness.start();
      await server.listen();
      port = server.port;
      return server;
    });
  }

  private async listen(): Promise<void> {
    const { config, nc, store, actions, hub, credentials, registry, log } = this.parts;
    const wss = new WebSocketServer({ noServer: true, maxPayload: config.hardFrameLimitBytes });
    this.wss = wss;
    const attachments = { actions, uploadForAction: (actionId: string, authorization: string | undefined, body: Readable) => uploadForAction({ store, actions, hub }, actionId, authorization, body) };
    const httpServer = http.createServer(createHttpHandler(config, log, attachments, { service: this.rooms, observe: this.metrics.roomApi }, credentials));
    hardenHttpServer(httpServer);
    const routing = new RoutingClient(nc);
    const deskHub = new DeskHub(nc, routing, config.replicaId, log);
    this.deskHub = deskHub;
    const deskParts = { credentials, routing, hub: deskHub, log, observe: (method: string, code: string) => this.metrics.observer.request(`desk.${method}`, code) };
    httpServer.on('upgrade', (req, socket, head) => {
      const path = (req.url ?? '').split('?')[0];
      if ((path !== '/ws' && path !== '/v1/desk') || this.shuttingDown) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      if (path === '/v1/desk') {
        wss.handleUpgrade(req, socket, head, (ws) => {
          this.desks.add(new DeskConnection(ws, deskParts, config, (c) => this.desks.delete(c)));
        });
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const connection = new Connection(ws, this.broker, config, this.metrics.observer, log, (c) => this.connections.delete(c));
        this.connections.add(connection);
      });
    });
    this.httpServer = httpServer;
    this.port = await listenHttp(httpServer, config.port, config.host);
    const ops = await startOpsServer({
      port: config.opsPort,
      registry,
      readiness: () => (this.shuttingDown ? 'shutting down' : nc.isClosed() ? 'nats connection closed' : undefined),
    });
    this.opsPort = ops.port;
    this.stopOps = ops.close;
  }

  /**
   * Stops the replica. Sockets are closed with 4503 and sessions are left resumable, so clients
   * carry on through another replica; their media is not touched.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.shuttingDown = true;
      this.supervisor.stop();
      this.parts.liveness.stop();
      for (const connection of [...this.connections]) connection.close(CloseCode.CLOSE_CODE_SERVER_SHUTDOWN, 'server shutting down');
      for (const desk of [...this.desks]) desk.close(CloseCode.CLOSE_CODE_SERVER_SHUTDOWN, 'server shutting down');
      this.deskHub?.close();
      await this.sessions.persistAll();
      for (const session of this.sessions.all()) this.sessions.forget(session);
      this.control.close();
      this.parts.hub.close();
      await this.dataSubjects.close();
      this.wss?.close();
      if (this.httpServer) await closeHttp(this.httpServer);
      await this.stopOps?.();
      this.parts.directory.close();
      this.parts.recorders.close();
      this.parts.tokenSessions.close();
      this.parts.tenants.close();
      this.parts.turn.close();
      await this.parts.nc.drain().catch(() => undefined);
    })();
    return this.closing;
  }
}
