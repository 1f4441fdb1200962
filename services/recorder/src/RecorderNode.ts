import { mkdir, rm } from 'node:fs/promises';
import type { Registry } from 'prom-client';
import { ParticipantStore, RecorderDirectory, RoomEventBus, SfuDirectory, type RecorderNodeInfo } from '@gateway/cluster';
import {
  ArtifactStore,
  buckets,
  connectNats,
  createKeyring,
  createMetricsRegistry,
  ensureStream,
  grpcServerCredentials,
  type GrpcTlsSource,
  watchGrpcTls,
  observeKeyring,
  openBucket,
  readDrainToken,
  startGrpcServer,
  startOpsServer,
  Startup,
  stopGrpcServer,
  streams,
  type KV,
  type Logger,
  type NatsConnection,
  type StopMode,
} from '@gateway/common';
import type { RecorderConfig } from './config.js';
import { JobRecords, REFRESH_MS } from './JobRecords.js';
import { RecordingAnnouncer } from './RecordingAnnouncer.js';
import { RecordingJobs } from './RecordingJobs.js';
import { RoomFollower } from './RoomFollower.js';
import { registerRecorderService } from './grpc/RecorderGrpcService.js';
import { observeRecorderMetrics } from './metrics.js';
import { RecorderObserver } from './observer.js';

/** How often the node's registry record is written. */
const HEARTBEAT_MS = 2_000;

/**
 * A recorder node: wires its recordings (RecordingJobs) to the gRPC API, the operations endpoint,
 * the recorder registry (heartbeat), the job records and their orphans (JobRecords), the rooms
 * they follow (RoomFollower), what it announces (RecordingAnnouncer) and its metrics.
 */
export class RecorderNode {
  readonly metrics: Registry = createMetricsRegistry('recorder');
  /** For monitoring: metrics listen here. */
  readonly observer = new RecorderObserver();
  readonly recordings: RecordingJobs;
  private readonly records: JobRecords;
  grpcPort = 0;
  grpcAddress = '';
  opsPort = 0;
  private stopGrpc: (() => Promise<void>) | undefined;
  private stopOps: (() => Promise<void>) | undefined;
  private tls: GrpcTlsSource | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private closing: Promise<void> | undefined;
  /** Out of the registry for good: the node is stopping. */
  private deregistered = false;

  private constructor(
    readonly config: RecorderConfig,
    private readonly nc: NatsConnection,
    private readonly directory: SfuDirectory,
    private readonly recorders: RecorderDirectory,
    stores: { store: ArtifactStore; segments: ArtifactStore; records: KV; participants: ParticipantStore },
    private readonly log: Logger,
  ) {
    observeRecorderMetrics(this.observer, this.metrics);
    const roomEvents = new RoomEventBus(nc, config.nodeId, log);
    const announcer = new RecordingAnnouncer(nc, { nodeId: config.nodeId, grpcAddress: () => this.grpcAddress }, recorders, roomEvents, stores.participants, log);
    this.records = new JobRecords({
      config,
      records: stores.records,
      directory,
      store: stores.store,
      segments: stores.segments,
      announcer,
      observer: this.observer,
      isRunning: (recordingId) => this.recordings.jobs.has(recordingId),
      log,
    });
    this.recordings = new RecordingJobs({
      config,
      directory,
      recorders,
      store: stores.store,
      segments: stores.segments,
      participants: stores.participants,
      records: this.records,
      announcer,
      follower: new RoomFollower(roomEvents, stores.participants, log),
      observer: this.observer,
      loadChanged: () => void this.heartbeat(),
      log,
    });
  }

  /** The running jobs, by recording id. */
  get jobs(): RecordingJobs['jobs'] {
    return this.recordings.jobs;
  }

  static async start(config: RecorderConfig, log: Logger): Promise<RecorderNode> {
    // A bad drain token file stops the node before it starts anything.
    const drainToken = readDrainToken(config.drainTokenFile);
    if (!config.grpcTls) log.warn('gRPC is plaintext (no GRPC_TLS_*): callers are not identified; for one machine only');
    // Plaintext left by a previous run that crashed is removed before anything else.
    await rm(config.workDir, { recursive: true, force: true });
    await mkdir(config.workDir, { recursive: true, mode: 0o700 });
    return Startup.run(async (startup) => {
      const nc = startup.opened(await connectNats(config.nats, config.nodeId, log), (connection) => connection.close());
      const keyring = startup.opened(await createKeyring(config.keyring, log), (keys) => keys.close());
      await ensureStream(nc, streams.recordings);
      await ensureStream(nc, streams.webhooks);
      // Certificates are taken up again when their files change (cert-manager renews them).
      const tls = startup.opened(watchGrpcTls(config.grpcTls, log), (source) => source?.close());
      const sfus = startup.opened(await SfuDirectory.open(nc, tls, log), (directory) => directory.close());
      const recorders = startup.opened(await RecorderDirectory.open(nc, tls, log), (directory) => directory.close());
      const node = new RecorderNode(
        config,
        nc,
        sfus,
        recorders,
        {
          store: await ArtifactStore.open(nc, keyring, 'recordings'),
          segments: await ArtifactStore.open(nc, keyring, 'segments'),
          records: await openBucket(nc, buckets.recordings),
          participants: await ParticipantStore.open(nc),
        },
        log,
      );
      observeKeyring(node.metrics, keyring);
      const grpc = await startGrpcServer(
        (server) => registerRecorderService(server, node.recordings, { requireIdentity: config.grpcTls !== undefined, log }),
        config.grpcHost,
        config.grpcPort,
        grpcServerCredentials(tls),
      );
      node.tls = tls;
      node.grpcPort = grpc.port;
      node.grpcAddress = config.grpcAdvertisedAddress ?? `127.0.0.1:${grpc.port}`;
      node.stopGrpc = startup.opened(
        () => stopGrpcServer(grpc.server),
        (stop) => stop(),
      );
      const ops = startup.opened(
        await startOpsServer({
          port: config.opsPort,
          registry: node.metrics,
          readiness: () => (node.recordings.isDraining ? 'draining' : node.closing ? 'stopping' : nc.isClosed() ? 'nats connection closed' : undefined),
          drain: () => node.startDrain(),
          drainToken,
        }),
        (server) => server.close(),
      );
      node.opsPort = ops.port;
      node.stopOps = ops.close;
      await node.heartbeat();
      node.timers.push(setInterval(() => void node.heartbeat(), HEARTBEAT_MS));
      node.timers.push(setInterval(() => void node.records.refresh([...node.jobs.values()].map((job) => job.record)), REFRESH_MS));
      node.timers.push(setInterval(() => void node.records.finishOrphans(), REFRESH_MS));
      void node.records.finishOrphans();
      return node;
    });
  }

  /**
   * Registers this node with its load and its RTP address; entries expire when the heartbeat
   * stops. A draining node stays registered, marked so: placement passes it by, and the SFU
   * nodes still send its running recordings' taps to it.
   */
  private async heartbeat(): Promise<void> {
    if (this.deregistered) return;
    const { jobs, cpuInUse, draining } = this.recordings.load;
    const info: RecorderNodeInfo = {
      nodeId: this.config.nodeId,
      grpcAddress: this.grpcAddress,
      rtpIp: this.config.rtpIp,
      jobs,
      cpuInUse,
      cpuBudget: this.config.cpuBudget,
      draining,
      updatedAtMs: Date.now(),
    };
    await this.recorders.register(info).catch((error) => this.log.warn({ err: error }, 'recorder heartbeat failed'));
  }

  /** No new recordings from now on: the node leaves placement (marked draining); running recordings go on. */
  async startDrain(): Promise<void> {
    if (this.recordings.startDrain()) await this.heartbeat();
  }

  /**
   * graceful: with a drain grace, the node drains and waits for its recordings to end with
   * their calls (up to the grace); then every recording still running is finished here and
   * stored as it is (partial).
   * immediate: the captures are killed; their stored segments stay for another node (or this
   * one, restarted) to finish.
   */
  close(mode: StopMode = 'immediate'): Promise<void> {
    this.closing ??= (async () => {
      this.recordings.refuseNew();
      this.records.stop();
      if (mode === 'graceful' && this.config.drainGraceMs > 0) {
        await this.startDrain();
        // Ended recordings are announced before the node goes.
        await this.recordings.waitForEnd(this.config.drainGraceMs);
      }
      for (const timer of this.timers) clearInterval(timer);
      this.deregistered = true;
      await this.recorders.deregister(this.config.nodeId).catch(() => undefined);
      await this.recordings.stopAll(mode);
      await this.stopGrpc?.();
      await this.nc.drain().catch(() => undefined);
      await this.stopOps?.();
      this.tls?.close();
      this.directory.close();
      this.recorders.close();
    })();
    return this.closing;
  }
}
