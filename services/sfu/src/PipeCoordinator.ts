import type { types } from 'mediasoup';
import {
  PipedProducerEvent,
  SfuClient,
  type ClosePipeRequest,
  type ImportProducerRequest,
  type NodeAddress,
  type OpenPipeRequest,
  type PipeConsumeRequest,
  type PipeEndpoint as PipeEndpointMessage,
  type PipedProducer,
  type PipedProducerChange,
} from '@gateway/proto/gateway/sfu/v1/sfu';
import { ErrorCode, GatewayError, callUnary, grpcClientCredentials, type GrpcTls, type Logger } from '@gateway/common';
import type { MediaAppData, PipeEndpoint, PipeListen, Room } from './Room.js';
import { kindName, sourceNames } from './grpc/mapping.js';

const changeEvents = {
  paused: PipedProducerEvent.PIPED_PRODUCER_EVENT_PAUSED,
  resumed: PipedProducerEvent.PIPED_PRODUCER_EVENT_RESUMED,
  closed: PipedProducerEvent.PIPED_PRODUCER_EVENT_CLOSED,
} as const;

/** What the coordinator needs of its node. */
export interface PipeHost {
  readonly self: NodeAddress;
  readonly pipeListen: PipeListen;
  /** The room, or NOT_FOUND. */
  room(tenant: string, name: string): Room;
  /** A live SFU node's gRPC address from the registry: peers are who the registry says they are. */
  addressOf(nodeId: string): Promise<string | undefined>;
}

/** Attempts of a notification to a peer before it is given up (the peer's room then closes the pipe). */
const NOTIFY_ATTEMPTS = 4;

/**
 * Rooms across SFU nodes. A node whose participant consumes a producer of another node imports
 * it: it opens a pipe to the origin (a PipeTransport pair, one per room and direction, with
 * SRTP), has the origin consume the producer into the pipe, and produces it locally under the
 * same id. The origin tells the importer when the producer pauses, resumes or closes, and the
 * importer tells the origin when its room no longer needs the pipe. All of it over gRPC.
 */
export class PipeCoordinator {
  private readonly peers = new Map<string, { address: string; client: SfuClient }>();
  /** Imports in flight, so concurrent consumers of one producer share one import. */
  private readonly importing = new Map<string, Promise<void>>();

  constructor(
    private readonly host: PipeHost,
    private readonly tls: GrpcTls | undefined,
    private readonly log: Logger,
  ) {}

  /** Importing side: makes `producerId` of `origin` available in the local room. */
  async importProducer(req: ImportProducerRequest): Promise<void> {
    const { tenant, room: name } = req.room!;
    const originId = req.origin?.nodeId;
    if (!originId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the origin node is required');
    if (originId === this.host.self.nodeId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the producer is on this node already');
    const room = this.host.room(tenant, name);
    if (room.producers.has(req.producerId)) return;
    const key = importKey(tenant, name, req.producerId);
    let pending = this.importing.get(key);
    if (!pending) {
      pending = this.resolvePeer(originId)
        .then((origin) => this.runImport(room, origin, req.producerId))
        .finally(() => this.importing.delete(key));
      this.importing.set(key, pending);
    }
    return pending;
  }

  /** The registry's address of a node: a request's word for it is not taken. */
  private async resolvePeer(nodeId: string): Promise<NodeAddress> {
    const grpcAddress = await this.host.addressOf(nodeId);
    if (!grpcAddress) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such live SFU node');
    this.rememberPeer({ nodeId, grpcAddress });
    return { nodeId, grpcAddress };
  }

  private async runImport(room: Room, origin: NodeAddress, producerId: string): Promise<void> {
    const client = this.peers.get(origin.nodeId)!.client;
    const roomRef = { tenant: room.tenant, room: room.name };
    await this.ensurePipeIn(room, origin, client);
    const consume = () => callUnary(client, client.pipeConsume, { room: roomRef, peerNodeId: this.host.self.nodeId, producerId });
    const piped: PipedProducer = await consume().catch(async (error: unknown) => {
      // The origin lost its end of the pipe (its room closed and opened again): open it anew.
      if (GatewayError.from(error).code !== ErrorCode.INVALID_STATE) throw error;
      room.closePipeIn(origin.nodeId);
      await this.ensurePipeIn(room, origin, client);
      return consume();
    });
    const info = piped.producer!;
    await room.importProducer(
      origin.nodeId,
      {
        producerId,
        participantId: info.participantId,
        kind: kindName(info.kind) ?? 'video',
        source: sourceNames[info.source],
        paused: info.paused,
      },
      piped.rtpParameters as unknown as types.RtpParameters,
    );
    this.log.info({ room: `${room.tenant}/${room.name}`, producerId, origin: origin.nodeId }, 'producer imported');
  }

  /** One pipe per origin and room; opening it is shared by concurrent imports. */
  private readonly opening = new Map<string, Promise<void>>();

  private ensurePipeIn(room: Room, origin: NodeAddress, client: SfuClient): Promise<void> {
    if (room.pipesIn.get(origin.nodeId)?.connected) return Promise.resolve();
    const key = `${room.tenant}/${room.name}/${origin.nodeId}`;
    let pending = this.opening.get(key);
    if (!pending) {
      pending = (async () => {
        const { endpoint } = await room.pipeInFrom(origin.nodeId, this.host.pipeListen);
        const remote = await callUnary(client, client.openPipe, {
          room: { tenant: room.tenant, room: room.name },
          peer: this.host.self,
          endpoint: toMessage(endpoint),
        });
        await room.connectPipeIn(origin.nodeId, fromMessage(remote));
      })().finally(() => this.opening.delete(key));
      this.opening.set(key, pending);
    }
    return pending;
  }

  /** Origin side: the importer's end of a pipe arrives; answer with ours. */
  async openPipe(req: OpenPipeRequest): Promise<PipeEndpointMessage> {
    const peerId = req.peer?.nodeId;
    if (!peerId || !req.endpoint?.ip || !req.endpoint.port || !req.endpoint.srtpParameters) {
      throw new GatewayError(ErrorCode.BAD_REQUEST, 'peer and its pipe endpoint are required');
    }
    const room = this.host.room(req.room!.tenant, req.room!.room);
    if (peerId === this.host.self.nodeId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a node does not pipe to itself');
    await this.resolvePeer(peerId);
    return toMessage(await room.openPipeOut(peerId, fromMessage(req.endpoint), this.host.pipeListen));
  }

  /** Origin side: sends one producer into the pipe to the importer. */
  async pipeConsume(req: PipeConsumeRequest): Promise<{ consumer: types.Consumer<MediaAppData>; producer: types.Producer<MediaAppData> }> {
    const room = this.host.room(req.room!.tenant, req.room!.room);
    return room.pipeConsume(req.peerNodeId, req.producerId);
  }

  /** Origin side: a producer piped to a peer changed; the peer mirrors it. */
  notifyPeer(room: Room, peerNodeId: string, producerId: string, change: keyof typeof changeEvents): void {
    const peer = this.peers.get(peerNodeId);
    if (!peer) return;
    const message: PipedProducerChange = { room: { tenant: room.tenant, room: room.name }, originNodeId: this.host.self.nodeId, producerId, event: changeEvents[change] };
    // Changes of one producer go out in order, each retried a few times: a lost "resumed" would
    // leave the other node's listeners in silence.
    const key = importKey(room.tenant, room.name, producerId) + `>${peerNodeId}`;
    const previous = this.notifying.get(key) ?? Promise.resolve();
    const next = previous.then(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await callUnary(peer.client, peer.client.pipedProducerChanged, message, 5_000);
          return;
        } catch (error) {
          const code = GatewayError.from(error).code;
          if (code === ErrorCode.NOT_FOUND || attempt >= NOTIFY_ATTEMPTS) {
            this.log.warn({ err: error, peer: peerNodeId, producerId, change }, 'telling a peer of a piped producer failed');
            return;
          }
          await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
        }
      }
    });
    this.notifying.set(key, next);
    void next.finally(() => {
      if (this.notifying.get(key) === next) this.notifying.delete(key);
    });
  }

  /** Notifications in flight, by producer and peer, so they arrive in order. */
  private readonly notifying = new Map<string, Promise<void>>();

  /** Importing side: mirror the origin's producer. */
  async pipedProducerChanged(req: PipedProducerChange): Promise<void> {
    const room = this.host.room(req.room!.tenant, req.room!.room);
    // A change may overtake the import it concerns: it applies once the import is done.
    await this.importing.get(importKey(room.tenant, room.name, req.producerId))?.catch(() => undefined);
    const producer = room.producers.get(req.producerId);
    if (!producer || producer.appData.importedFrom !== req.originNodeId) return;
    if (req.event === PipedProducerEvent.PIPED_PRODUCER_EVENT_PAUSED) await producer.pause();
    else if (req.event === PipedProducerEvent.PIPED_PRODUCER_EVENT_RESUMED) await producer.resume();
    else if (req.event === PipedProducerEvent.PIPED_PRODUCER_EVENT_CLOSED) producer.close();
  }

  /** The peer's room is gone: every pipe with it closes, in both directions. */
  closePipe(req: ClosePipeRequest): void {
    this.host.room(req.room!.tenant, req.room!.room).closePipesWith(req.peerNodeId);
  }

  /** The local room closed: its peers close their ends (the origins stop sending). */
  roomClosed(room: Room, pipePeers: string[]): void {
    for (const peerNodeId of pipePeers) {
      const peer = this.peers.get(peerNodeId);
      if (!peer) continue;
      callUnary(peer.client, peer.client.closePipe, { room: { tenant: room.tenant, room: room.name }, peerNodeId: this.host.self.nodeId }).catch(() => undefined);
    }
  }

  private rememberPeer(address: NodeAddress): void {
    const known = this.peers.get(address.nodeId);
    if (known && known.address === address.grpcAddress) return;
    known?.client.close();
    const { credentials, options } = grpcClientCredentials(this.tls);
    this.peers.set(address.nodeId, { address: address.grpcAddress, client: new SfuClient(address.grpcAddress, credentials, options) });
  }

  /** Peers that left the registry: their gRPC clients go. */
  forgetPeer(nodeId: string): void {
    this.peers.get(nodeId)?.client.close();
    this.peers.delete(nodeId);
  }

  close(): void {
    for (const { client } of this.peers.values()) client.close();
    this.peers.clear();
  }
}

const importKey = (tenant: string, room: string, producerId: string) => `${tenant}/${room}/${producerId}`;

const toMessage = (endpoint: PipeEndpoint): PipeEndpointMessage => ({
  ip: endpoint.ip,
  port: endpoint.port,
  srtpParameters: endpoint.srtpParameters as unknown as Record<string, unknown>,
});

const fromMessage = (message: PipeEndpointMessage): PipeEndpoint => ({
  ip: message.ip,
  port: message.port,
  srtpParameters: message.srtpParameters as unknown as types.SrtpParameters,
});
