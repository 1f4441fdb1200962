import type { types } from 'mediasoup';
import { Gauge, Counter, type Registry } from 'prom-client';
import { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { NodeAddress, NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import {
  ErrorCode,
  GatewayError,
  assertSubjectToken,
  connectNats,
  createMetricsRegistry,
  grpcServerCredentials,
  natsHeadersWithTrace,
  readDrainToken,
  startGrpcServer,
  startOpsServer,
  stopGrpcServer,
  subjects,
  type Logger,
  type KV,
  type NatsConnection,
  type StopMode,
  DrainWait,
} from '@gateway/common';
import { liveRecorderNodes, openRecorderNodes } from '@gateway/cluster';
import type { SfuConfig } from './config.js';
import { NodeRegistry, type PeerAddress } from './NodeRegistry.js';
import { Room, type PipeListen, type RoomCloseReason } from './Room.js';
import { PipeCoordinator, type PipeHost } from './PipeCoordinator.js';
import { WorkerPool } from './WorkerPool.js';
import { registerSfuService } from './grpc/SfuGrpcService.js';
import { observeMediaMetrics } from './metrics.js';

/** The largest gRPC request taken: real ones (RTP parameters and capabilities) are a few kilobytes. */
const MAX_REQUEST_BYTES = 256 * 1024;

/** Room close reasons signaling must hear about, so that clients rejoin. */
const announcedCloseReasons = new Set<RoomCloseReason>(['worker_died', 'drain_timeout', 'node_closed']);

/**
 * An SFU node: the worker pool, the rooms, the gRPC API, the registry heartbeat and the
 * operations endpoint. `startSfu` is used by main.ts and by tests.
 */
export class SfuNode implements PipeHost {
  readonly rooms = new Map<string, Room>();
  draining = false;
  private closing: Promise<void> | undefined;
  private readonly drainWait = new DrainWait(() => this.rooms.size === 0);

  private constructor(
    readonly config: SfuConfig,
    readonly pool: WorkerPool,
    readonly nc: NatsConnection,
    readonly metrics: Registry,
    private readonly log: Logger,
  ) {
    this.pipes = new PipeCoordinator(this, config.grpcTls, log);
  }

  grpcAddress = '';
  grpcPort = 0;
  opsPort = 0;
  private registry: NodeRegistry | undefined;
  private peerCheck: NodeJS.Timeout | undefined;
  readonly pipes: PipeCoordinator;
  private stopGrpc: (() => Promise<void>) | undefined;
  private stopOps: (() => Promise<void>) | undefined;
  /** The recorder registry: taps go to its nodes' RTP addresses only. */
  private recorderNodes: KV | undefined;

  static async start(config: SfuConfig, log: Logger): Promise<SfuNode> {
    // A bad drain token file stops the node before it starts anything.
    const drainToken = readDrainToken(config.drainTokenFile);
    if (!config.grpcTls) log.warn('gRPC is plaintext (no GRPC_TLS_*): callers are not identified; for one machine only');
    const pool = await WorkerPool.create(
      {
        size: config.workers,
        rtcPortMin: config.rtcPortMin,
        listenIp: config.listenIp,
        announcedAddress: config.announcedAddress,
        logLevel: config.workerLogLevel,
      },
      log,
    );
    let nc: NatsConnection;
    try {
      nc = await connectNats(config.nats, config.nodeId, log);
    } catch (error) {
      pool.close();
      throw error;
    }
    const node = new SfuNode(config, pool, nc, createMetricsRegistry('sfu'), log);
    pool.on('workerdied', (index) => node.onWorkerDied(index));
    node.observeMetrics();
    observeMediaMetrics(node);

    node.recorderNodes = await openRecorderNodes(nc);
    const grpc = await startGrpcServer((server) => registerSfuService(server, node, log), config.grpcHost, config.grpcPort, grpcServerCredentials(config.grpcTls), {
      maxReceiveBytes: MAX_REQUEST_BYTES,
    });
    node.grpcPort = grpc.port;
    node.grpcAddress = config.grpcAdvertisedAddress ?? `127.0.0.1:${grpc.port}`;
    node.stopGrpc = () => stopGrpcServer(grpc.server);

    node.registry = await NodeRegistry.start(
      nc,
      { nodeId: config.nodeId, heartbeatMs: config.heartbeatMs },
      () => ({ grpcAddress: node.grpcAddress, pipeIp: config.pipe.announcedAddress ?? config.pipe.listenIp, load: node.load(), draining: node.draining }),
      log,
    );
    const ops = await startOpsServer({
      host: config.opsHost,
      port: config.opsPort,
      registry: node.metrics,
      health: () => (pool.aliveCount === 0 ? 'no live mediasoup worker' : undefined),
      readiness: () =>
        node.draining ? 'draining' : nc.isClosed() ? 'nats connection closed' : pool.aliveCount === 0 ? 'no live mediasoup worker' : undefined,
      drain: () => node.startDrain(),
      drainToken,
    });
    node.opsPort = ops.port;
    node.stopOps = ops.close;
    node.peerCheck = setInterval(() => void node.closePipesToGoneNodes(), config.heartbeatMs);
    return node;
  }

  load(): NodeLoad {
    let transports = 0;
    let producers = 0;
    let importedProducers = 0;
    let consumers = 0;
    let pipes = 0;
    for (const room of this.rooms.values()) {
      transports += room.transports.size;
      for (const producer of room.producers.values()) {
        if (producer.appData.importedFrom) importedProducers++;
        else producers++;
      }
      consumers += room.consumers.size;
      pipes += room.pipesIn.size + room.pipesOut.size;
    }
    return { workers: this.pool.aliveCount, rooms: this.rooms.size, transports, producers, consumers, maxConsumers: this.config.maxConsumers, importedProducers, pipes };
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
    const withPipes = [...this.rooms.values()].filter((room) => room.pipePeers().length > 0);
    if (withPipes.length === 0 || !this.registry) return;
    let live: Set<string>;
    try {
      live = await this.registry.liveNodeIds();
    } catch {
      return;
    }
    for (const room of withPipes) {
      for (const peer of room.pipePeers()) {
        if (live.has(peer)) continue;
        this.log.warn({ room: `${room.tenant}/${room.name}`, peer }, 'peer node gone: closing its pipes');
        room.closePipesWith(peer);
        this.pipes.forgetPeer(peer);
      }
    }
  }

  /** The room, or NOT_FOUND: ids of another tenant's room never resolve. */
  room(tenant: string, name: string): Room {
    const room = this.rooms.get(roomKey(tenant, name));
    if (!room || room.closed) throw new GatewayError(ErrorCode.NOT_FOUND, 'room not found on this node');
    return room;
  }

  async openRoom(tenant: string, name: string): Promise<{ room: Room; created: boolean }> {
    assertSubjectToken('tenant', tenant);
    assertSubjectToken('room', name);
    const key = roomKey(tenant, name);
    const existing = this.rooms.get(key);
    if (existing && !existing.closed) return { room: existing, created: false };
    if (this.draining) throw new GatewayError(ErrorCode.DRAINING, 'node is draining and takes no new rooms');
    const worker = this.pool.leastLoaded();
    const room = await Room.open(tenant, name, worker, this.config.roomTimeouts, this.config.participantLimits, this.log);
    // Two concurrent opens of the same room: keep the first, drop ours.
    const raced = this.rooms.get(key);
    if (raced && !raced.closed) {
      room.close();
      return { room: raced, created: false };
    }
    this.rooms.set(key, room);
    worker.rooms++;
    room.on('activespeaker', (participantId, producerId) =>
      this.publish(room, { $case: 'activeSpeaker', value: { participantId, producerId } }),
    );
    room.on('pipedproducerchanged', (peer, producerId, change) => this.pipes.notifyPeer(room, peer, producerId, change));
    room.on('closed', (reason, pipePeers) => {
      this.pipes.roomClosed(room, pipePeers);
      this.rooms.delete(key);
      worker.rooms--;
      if (announcedCloseReasons.has(reason)) {
        this.publish(room, { $case: 'roomClosed', value: { reason, nodeId: this.config.nodeId } });
      }
      this.drainWait.check();
    });
    this.log.info({ room: `${tenant}/${name}`, worker: worker.index }, 'room opened');
    return { room, created: true };
  }

  private publish(room: Room, event: RoomEvent['event']): void {
    if (this.nc.isClosed()) return;
    const message = RoomEvent.create({ tenant: room.tenant, room: room.name, atMs: Date.now(), origin: this.config.nodeId, event });
    this.nc.publish(subjects.roomEvents(room.tenant, room.name), RoomEvent.encode(message).finish(), { headers: natsHeadersWithTrace() });
  }

  private onWorkerDied(index: number): void {
    // mediasoup closes the dead worker's routers; make sure every room on it is closed and
    // announced even if that already happened.
    for (const room of [...this.rooms.values()]) {
      if (room.worker.index === index && room.worker.worker.died) room.close('worker_died');
    }
  }

  private observeMetrics(): void {
    const node = this;
    const gauge = (name: string, help: string, read: (load: NodeLoad) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.metrics],
        collect() {
          this.set(read(node.load()));
        },
      });
    gauge('gateway_sfu_workers', 'Live mediasoup workers', (l) => l.workers);
    gauge('gateway_sfu_rooms', 'Open rooms', (l) => l.rooms);
    gauge('gateway_sfu_transports', 'WebRTC transports', (l) => l.transports);
    gauge('gateway_sfu_producers', 'Producers', (l) => l.producers);
    gauge('gateway_sfu_consumers', 'Consumers', (l) => l.consumers);
    gauge('gateway_sfu_max_consumers', 'Consumers the node takes before new participants go to other nodes', (l) => l.maxConsumers);
    gauge('gateway_sfu_imported_producers', 'Producers of other nodes received through pipes', (l) => l.importedProducers);
    gauge('gateway_sfu_pipes', 'Pipes to and from other nodes', (l) => l.pipes);
    new Gauge({
      name: 'gateway_sfu_draining',
      help: '1 while the node drains',
      registers: [this.metrics],
      collect() {
        this.set(node.draining ? 1 : 0);
      },
    });
    const deaths = new Counter({ name: 'gateway_sfu_worker_deaths_total', help: 'mediasoup workers that died', registers: [this.metrics] });
    this.pool.on('workerdied', () => deaths.inc());
  }

  /** Stop taking new rooms and tell placement so at once. */
  async startDrain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.log.info({ rooms: this.rooms.size }, 'draining');
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
        await this.drainWait.wait(this.config.drainGraceMs);
        for (const room of [...this.rooms.values()]) room.close('drain_timeout');
      } else {
        for (const room of [...this.rooms.values()]) room.close('node_closed');
      }
      clearInterval(this.peerCheck);
      await this.stopGrpc?.();
      this.pipes.close();
      await this.registry?.close();
      await this.nc.drain().catch(() => undefined);
      await this.stopOps?.();
      this.pool.close();
    })();
    return this.closing;
  }
}

export function roomKey(tenant: string, room: string): string {
  return `${tenant}/${room}`;
}

export type { types };
