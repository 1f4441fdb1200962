import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { RoomEventBus } from '@gateway/cluster';
import { DrainWait, ErrorCode, GatewayError, assertSubjectToken, worseQuality, type Logger } from '@gateway/common';
import type { SfuConfig } from './config.js';
import { Room, type RoomCloseReason } from './Room.js';
import type { PipeCoordinator } from './PipeCoordinator.js';
import type { WorkerPool } from './WorkerPool.js';
import type { SfuObserver } from './observer.js';

/** Room close reasons signaling must hear about, so that clients rejoin. */
const announcedCloseReasons = new Set<RoomCloseReason>(['worker_died', 'drain_timeout', 'node_closed']);

export interface RoomsDeps {
  config: Pick<SfuConfig, 'nodeId' | 'roomTimeouts' | 'participantLimits' | 'maxConsumers'>;
  pool: WorkerPool;
  pipes: PipeCoordinator;
  roomEvents: RoomEventBus;
  observer: SfuObserver;
  /** Whether the node drains (it opens no new rooms). */
  draining(): boolean;
  /** Whether the node's NATS connection is closed (nothing more is published). */
  natsClosed(): boolean;
  log: Logger;
}

export function roomKey(tenant: string, room: string): string {
  return `${tenant}/${room}`;
}

/**
 * The rooms open on this node: opened on the least-loaded worker, found only under their own
 * tenant, and what they say (the active speaker, their end) told to the room's other services.
 */
export class Rooms {
  readonly byKey = new Map<string, Room>();
  private readonly drainWait = new DrainWait(() => this.byKey.size === 0);

  constructor(private readonly deps: RoomsDeps) {}

  /** The room, or NOT_FOUND: ids of another tenant's room never resolve. */
  get(tenant: string, name: string): Room {
    const room = this.byKey.get(roomKey(tenant, name));
    if (!room || room.closed) throw new GatewayError(ErrorCode.NOT_FOUND, 'room not found on this node');
    return room;
  }

  async open(tenant: string, name: string): Promise<{ room: Room; created: boolean }> {
    const { config, pool, pipes, log } = this.deps;
    assertSubjectToken('tenant', tenant);
    assertSubjectToken('room', name);
    const key = roomKey(tenant, name);
    const existing = this.byKey.get(key);
    if (existing && !existing.closed) return { room: existing, created: false };
    if (this.deps.draining()) throw new GatewayError(ErrorCode.DRAINING, 'node is draining and takes no new rooms');
    const worker = pool.leastLoaded();
    const room = await Room.open(tenant, name, worker, config.roomTimeouts, config.participantLimits, log);
    // Two concurrent opens of the same room: keep the first, drop ours.
    const raced = this.byKey.get(key);
    if (raced && !raced.closed) {
      room.close();
      return { room: raced, created: false };
    }
    this.byKey.set(key, room);
    worker.rooms++;
    room.on('activespeaker', (participantId, producerId) => this.publish(room, { $case: 'activeSpeaker', value: { participantId, producerId } }));
    room.on('connectionquality', (participantId, { upstream, downstream }) =>
      this.publish(room, { $case: 'connectionQuality', value: { participantId, quality: worseQuality(upstream, downstream), upstream, downstream } }),
    );
    room.on('layerswanted', (participantId, producerId, maxSpatialLayer) => this.publish(room, { $case: 'videoLayersWanted', value: { participantId, producerId, maxSpatialLayer } }));
    room.on('pipedproducerchanged', (peer, producerId, change) => pipes.notifyPeer(room, peer, producerId, change));
    room.on('closed', (reason, pipePeers) => {
      pipes.roomClosed(room, pipePeers);
      this.byKey.delete(key);
      worker.rooms--;
      if (announcedCloseReasons.has(reason)) {
        this.publish(room, { $case: 'roomClosed', value: { reason, nodeId: config.nodeId } });
      }
      this.drainWait.check();
    });
    this.deps.observer.safeEmit('newroom', room);
    log.info({ room: `${tenant}/${name}`, worker: worker.index }, 'room opened');
    return { room, created: true };
  }

  private publish(room: Room, event: RoomEvent['event']): void {
    if (this.deps.natsClosed()) return;
    this.deps.roomEvents.publish(room.tenant, room.name, event);
  }

  load(): NodeLoad {
    let transports = 0;
    let producers = 0;
    let importedProducers = 0;
    let consumers = 0;
    let pipes = 0;
    for (const room of this.byKey.values()) {
      transports += room.transports.size;
      for (const producer of room.producers.values()) {
        if (producer.appData.importedFrom) importedProducers++;
        else producers++;
      }
      consumers += room.consumers.size;
      pipes += room.pipes.count;
    }
    return { workers: this.deps.pool.aliveCount, rooms: this.byKey.size, transports, producers, consumers, maxConsumers: this.deps.config.maxConsumers, importedProducers, pipes };
  }

  /** Pipes to nodes not in `live` (they left the registry) are closed, and the producers imported from them with them. */
  closePipesToGoneNodes(live: Set<string>): void {
    for (const room of this.byKey.values()) {
      for (const peer of room.pipes.peers()) {
        if (live.has(peer)) continue;
        this.deps.log.warn({ room: `${room.tenant}/${room.name}`, peer }, 'peer node gone: closing its pipes');
        room.pipes.closeWith(peer);
        this.deps.pipes.forgetPeer(peer);
      }
    }
  }

  /** Whether any room has pipes with another node. */
  get piped(): boolean {
    return [...this.byKey.values()].some((room) => room.pipes.peers().length > 0);
  }

  /** A worker died: every room on it is closed and announced, even if mediasoup closed it already. */
  workerDied(index: number): void {
    for (const room of [...this.byKey.values()]) {
      if (room.worker.index === index && room.worker.worker.died) room.close('worker_died');
    }
  }

  /** Resolves once no room is left, or after `graceMs`. */
  waitForEnd(graceMs: number): Promise<void> {
    return this.drainWait.wait(graceMs);
  }

  closeAll(reason: RoomCloseReason): void {
    for (const room of [...this.byKey.values()]) room.close(reason);
  }
}
