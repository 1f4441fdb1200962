import type { Registry } from 'prom-client';
import type { NodeAddress, NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import {
  connectNats,
  createMetricsRegistry,
  grpcServerCredentials,
  type GrpcTlsSource,
  readDrainToken,
  startGrpcServer,
  startOpsServer,
  Startup,
  stopGrpcServer,
  watchGrpcTls,
  type Logger,
  type KV,
  type NatsConnection,
  type StopMode,
} from '@gateway/common';
import { RoomEventBus, SfuRegistry, liveRecorderNodes, openRecorderNodes, type PeerAddress } from '@gateway/cluster';
import type { SfuConfig } from './config.js';
import type { PipeListen, Room } from './Room.js';
import { Rooms } from './Rooms.js';
import { PipeCoordinator, type PipeHost } from './PipeCoordinator.js';
import { WorkerPool } from './WorkerPool.js';
import { registerSfuService, type SfuApiNode } from './grpc/SfuGrpcService.js';
import { observeMediaMetrics, observeNodeMetrics } from './metrics.js';
import { PodDeletionCost, podDeletionCost } from './DeletionCost.js';
import { PodApi } from './kubernetes/PodApi.js';
import { SfuObserver } from './observer.js';
import { findAnnouncedAddress, type AnnouncedAddress } from './announcedAddress/discover.js';

/** The largest gRPC request taken: real ones (RTP parameters and capabilities) are a few kilobytes. */
const MAX_REQUEST_BYTES = 256 * 1024;

/**
 * An SFU node: wires the worker pool and its rooms (Rooms) to the gRPC API, the pipes to other
 * nodes (PipeCoordinator), the registry heartbeat (SfuRegistry), the room-event bus, the
 * metrics and the operations endpoint. `SfuNode.start` is used by main.ts and by tests.
 */
export class SfuNode implements PipeHost, SfuApiNode {
  /** For monitoring: metrics listen here. */
  readonly observer = new SfuObserver();
  draining = false;
  private closing: Promise<void> | undefined;
  private readonly openRooms: Rooms;

  private constructor(
    readonly config: SfuConfig,
    /** The address in this node's ICE candidates, and where it came from. */
    readonly announced: AnnouncedAddress,
    readonly pool: WorkerPool,
    readonly nc: NatsConnection,
    readonly metrics: Registry,
    private readonly tls: GrpcTlsSource | undefined,
    private readonly log: Logger,
  ) {
    this.pipes = new PipeCoordinator(this, tls, log);
    this.openRooms = new Rooms({
      config,
      pool,
      pipes: this.pipes,
      roomEvents: new RoomEventBus(nc, config.nodeId, log),
      observer: this.observer,
      draining: () => this.draining,
      natsClosed: () => nc.isClosed(),
      log,
    });
  }

  grpcAddress = '';
  grpcPort = 0;
  opsPort = 0;
  private registry: SfuRegistry | undefined;
  private peerCheck: NodeJS.Timeout | undefined;
  readonly pipes: PipeCoordinator;
  private stopGrpc: (() => Promise<void>) | undefined;
  private stopOps: (() => Promise<void>) | undefined;
  /** The recorder registry: taps go to its nodes' RTP addresses only. */
  private recorderNodes: KV | undefined;
  /** In Kubernetes (POD_NAME and POD_NAMESPACE set): the Pod's deletion cost kept equal to the load. */
  private deletionCost: PodDeletionCost | undefined;

  get keepsDeletionCost(): boolean {
    return this.config.deletionCost !== undefined;
  }

  static async start(config: SfuConfig, log: Logger): Promise<SfuNode> {
    // A bad drain token file stops the node before it starts anything.
    const drainToken = readDrainToken(config.drainTokenFile);
    if (!config.grpcTls) log.warn('gRPC is plaintext (no GRPC_TLS_*): callers are not identified; for one machine only');
    // Before the workers bind the media ports: STUN asks from the first of them.
    const announced = await findAnnouncedAddress(config.announcedAddress, { listenIp: config.listenIp, port: config.rtcPortMin }, log);
    log.info({ source: announced.source, address: announced.address }, 'announced address for ICE candidates');
    return Startup.run(async (startup) => {
      const pool = startup.opened(
        await WorkerPool.create({ size: config.workers, rtcPortMin: config.rtcPortMin, listenIp: config.listenIp, announcedAddress: announced.address, logLevel: config.workerLogLevel }, log),
        (workers) => workers.close(),
      );
      const nc = startup.opened(await connectNats(config.nats, config.nodeId, log), (connection) => connection.close());
      // Certificates are taken up again when their files change (cert-manager renews them).
      const tls = startup.opened(watchGrpcTls(config.grpcTls, log), (source) => source?.close());
      const node = new SfuNode(config, announced, pool, nc, createMetricsRegistry('sfu'), tls, log);
      pool.on('workerdied', (index) => {
        node.observer.safeEmit('workerdied', index);
        // mediasoup closes the dead worker's routers; make sure every room on it is closed and
        // announced even if that already happened.
        node.openRooms.workerDied(index);
      });
      observeNodeMetrics(node, node.metrics);
      observeMediaMetrics(node, node.metrics);

      node.recorderNodes = await openRecorderNodes(nc);
      const grpc = await startGrpcServer((server) => registerSfuService(server, node, log), config.grpcHost, config.grpcPort, grpcServerCredentials(tls), {
        maxReceiveBytes: MAX_REQUEST_BYTES,
      });
      node.grpcPort = grpc.port;
      node.grpcAddress = config.grpcAdvertisedAddress ?? `127.0.0.1:${grpc.port}`;
      node.stopGrpc = startup.opened(
        () => stopGrpcServer(grpc.server),
        (stop) => stop(),
      );

      node.registry = startup.opened(
        await SfuRegistry.start(
          nc,
          { nodeId: config.nodeId, heartbeatMs: config.heartbeatMs },
          () => ({ grpcAddress: node.grpcAddress, pipeIp: config.pipe.announcedAddress ?? config.pipe.listenIp, load: node.load(), draining: node.draining }),
          log,
        ),
        (registry) => registry.close(),
      );
      const ops = await startOpsServer({
        host: config.opsHost,
        port: config.opsPort,
        registry: node.metrics,
        health: () => (pool.aliveCount === 0 ? 'no live mediasoup worker' : undefined),
        readiness: () => (node.draining ? 'draining' : nc.isClosed() ? 'nats connection closed' : pool.aliveCount === 0 ? 'no live mediasoup worker' : undefined),
        drain: () => node.startDrain(),
        drainToken,
      });
      node.opsPort = ops.port;
      node.stopOps = ops.close;
      node.peerCheck = setInterval(() => void node.closePipesToGoneNodes(), config.heartbeatMs);
      if (config.deletionCost) {
        node.deletionCost = new PodDeletionCost(new PodApi(config.deletionCost), () => podDeletionCost(node.load(), node.draining), config.deletionCost.intervalMs, node.observer, log);
        node.deletionCost.start();
      }
      return node;
    });
  }

  /** The indexes of the pool's workers (one per CPU given to mediasoup). */
  get workerIndexes(): number[] {
    return this.pool.workers.map((worker) => worker.index);
  }

  /** The open rooms, by tenant/room. */
  get rooms(): Map<string, Room> {
    return this.openRooms.byKey;
  }

  load(): NodeLoad {
    return this.openRooms.load();
  }

  /** This node as its peers reach it. */
  get self(): NodeAddress {
    return { nodeId: this.config.nodeId, grpcAddress: this.grpcAddress };
  }

  peerOf(nodeId: string): Promise<PeerAddress | undefined> {
    return this.registry?.peer(nodeId) ?? Promise.resolve(undefined);
  }

  /** Whether `ip` is the RTP address of a live recorder node (draining ones still record). */
  async isRecorderAddress(ip: string): Promise<boolean> {
    if (!this.recorderNodes) return false;
    return (await liveRecorderNodes(this.recorderNodes, this.log)).some((recorder) => recorder.rtpIp === ip);
  }

  get pipeListen(): PipeListen {
    return this.config.pipe;
  }

  /** Pipes to nodes that left the registry are closed, and the producers imported from them with them. */
  private async closePipesToGoneNodes(): Promise<void> {
    if (!this.openRooms.piped || !this.registry) return;
    let live: Set<string>;
    try {
      live = await this.registry.liveNodeIds();
    } catch {
      return;
    }
    this.openRooms.closePipesToGoneNodes(live);
  }

  /** The room, or NOT_FOUND: ids of another tenant's room never resolve. */
  room(tenant: string, name: string): Room {
    return this.openRooms.get(tenant, name);
  }

  openRoom(tenant: string, name: string): Promise<{ room: Room; created: boolean }> {
    return this.openRooms.open(tenant, name);
  }

  /** Stop taking new rooms and tell placement so at once. */
  async startDrain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.observer.safeEmit('draining');
    this.log.info({ rooms: this.rooms.size }, 'draining');
    // A draining node is the first a scale-down should take.
    this.deletionCost?.nudge();
    await this.registry?.heartbeat();
  }

  /**
   * graceful: drain, wait for rooms to end (up to the grace period), then stop.
   * immediate: close everything now.
   */
  close(mode: StopMode = 'immediate'): Promise<void> {
    this.closing ??= (async () => {
      if (mode === 'graceful') {
        await this.startDrain();
        await this.openRooms.waitForEnd(this.config.drainGraceMs);
        this.openRooms.closeAll('drain_timeout');
      } else {
        this.openRooms.closeAll('node_closed');
      }
      clearInterval(this.peerCheck);
      this.deletionCost?.close();
      this.observer.safeEmit('close');
      await this.stopGrpc?.();
      this.pipes.close();
      await this.registry?.close();
      await this.nc.drain().catch(() => undefined);
      await this.stopOps?.();
      this.tls?.close();
      this.pool.close();
    })();
    return this.closing;
  }
}
