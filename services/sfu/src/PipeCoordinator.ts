import type { types } from 'mediasoup';
import { z } from 'zod';
import {
  MediaKind,
  PipedProducerEvent,
  SfuClient,
  TrackSource,
  type NodeAddress,
  type PipeEndpoint as PipeEndpointMessage,
  type PipedProducer,
  type PipedProducerChange,
} from '@gateway/proto/gateway/sfu/v1/sfu';
import {
  ErrorCode,
  GatewayError,
  callUnary,
  grpcClientCredentials,
  jsonShapeProblem,
  parseWith,
  rtpParametersSchema,
  schemas,
  type GrpcTls,
  type Logger,
  sleepBackoff,
  mediaKindName,
  trackSourceName,
} from '@gateway/common';
import type { PeerAddress } from '@gateway/cluster';
import type { MediaAppData, PipeEndpoint, PipeListen } from './mediaTypes.js';
import type { Room } from './Room.js';
import { pipeEndpointSchema, type SfuRequest } from './grpc/requests.js';

/** What an origin answers to PipeConsume, checked: a peer's answer is input like any other. */
const pipedProducerSchema = z.object({
  producer: z.object({
    producerId: schemas.id(),
    participantId: schemas.id(),
    kind: z.union([z.literal(MediaKind.MEDIA_KIND_AUDIO), z.literal(MediaKind.MEDIA_KIND_VIDEO)]),
    source: z
      .number()
      .int()
      .refine((value) => value === TrackSource.TRACK_SOURCE_UNSPECIFIED || trackSourceName(value) !== undefined, 'must be a known source'),
    paused: z.boolean(),
  }),
  rtpParameters: z
    .unknown()
    .refine((value) => value !== undefined && jsonShapeProblem(value, { maxDepth: 8, maxNodes: 4_000 }) === undefined, 'must be a bounded JSON object')
    .pipe(rtpParametersSchema),
});

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
  /** A live SFU node's addresses from the registry: peers are who and where the registry says they are. */
  peerOf(nodeId: string): Promise<PeerAddress | undefined>;
}

/** A peer node as the registry has it. */
interface Peer extends PeerAddress {
  nodeId: string;
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
  async importProducer(req: SfuRequest<'importProducer'>): Promise<void> {
    const { tenant, room: name } = req.room;
    const originId = req.origin.nodeId;
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

  /** The registry's addresses of a node: a request's word for them is not taken. */
  private async resolvePeer(nodeId: string): Promise<Peer> {
    const peer = await this.host.peerOf(nodeId);
    if (!peer) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such live SFU node');
    this.rememberPeer({ nodeId, grpcAddress: peer.grpcAddress });
    return { nodeId, ...peer };
  }

  /** Pipes connect only to the address the registry has for the node at the other end. */
  private assertPipeAddress(peer: Peer, ip: string): void {
    if (!peer.pipeIp || ip !== peer.pipeIp) {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'the pipe endpoint is not the registered pipe address of that node');
    }
  }

  private async runImport(room: Room, origin: Peer, producerId: string): Promise<void> {
    const client = this.peers.get(origin.nodeId)!.client;
    const roomRef = { tenant: room.tenant, room: room.name };
    await this.ensurePipeIn(room, origin, client);
    const consume = () => callUnary(client, client.pipeConsume, { room: roomRef, peerNodeId: this.host.self.nodeId, producerId });
    const answer: PipedProducer = await consume().catch(async (error: unknown) => {
      // The origin lost its end of the pipe (its room closed and opened again): open it anew.
      if (GatewayError.from(error).code !== ErrorCode.INVALID_STATE) throw error;
      room.pipes.closeIn(origin.nodeId);
      await this.ensurePipeIn(room, origin, client);
      return consume();
    });
    const piped = parseWith(pipedProducerSchema, answer, "the origin's PipeConsume answer", ErrorCode.UNAVAILABLE);
    const info = piped.producer;
    if (info.producerId !== producerId) throw new GatewayError(ErrorCode.UNAVAILABLE, 'the origin answered with another producer');
    await room.pipes.importProducer(
      origin.nodeId,
      {
        producerId,
        participantId: info.participantId,
        kind: mediaKindName(info.kind) ?? 'video',
        source: trackSourceName(info.source),
        paused: info.paused,
      },
      piped.rtpParameters as unknown as types.RtpParameters,
    );
    this.log.info({ room: `${room.tenant}/${room.name}`, producerId, origin: origin.nodeId }, 'producer imported');
  }

  /** One pipe per origin and room; opening it is shared by concurrent imports. */
  private readonly opening = new Map<string, Promise<void>>();

  private ensurePipeIn(room: Room, origin: Peer, client: SfuClient): Promise<void> {
    if (room.pipes.inbound.get(origin.nodeId)?.connected) return Promise.resolve();
    const key = `${room.tenant}/${room.name}/${origin.nodeId}`;
    let pending = this.opening.get(key);
    if (!pending) {
      pending = (async () => {
        const { endpoint } = await room.pipes.inFrom(origin.nodeId, this.host.pipeListen);
        const answer = await callUnary(client, client.openPipe, {
          room: { tenant: room.tenant, room: room.name },
          peer: this.host.self,
          endpoint: toMessage(endpoint),
        });
        const remote = parseWith(pipeEndpointSchema, answer, "the origin's OpenPipe answer", ErrorCode.UNAVAILABLE);
        try {
          this.assertPipeAddress(origin, remote.ip);
        } catch (error) {
          room.pipes.closeIn(origin.nodeId);
          throw error;
        }
        await room.pipes.connectIn(origin.nodeId, { ip: remote.ip, port: remote.port, srtpParameters: remote.srtpParameters as types.SrtpParameters });
      })().finally(() => this.opening.delete(key));
      this.opening.set(key, pending);
    }
    return pending;
  }

  /**
   * Origin side: the importer's end of a pipe arrives; answer with ours. The importer must be a
   * live node of the registry and its end must be at the pipe address the registry has for it:
   * a room's media goes to no other address.
   */
  async openPipe(req: SfuRequest<'openPipe'>): Promise<PipeEndpointMessage> {
    const peerId = req.peer.nodeId;
    const room = this.host.room(req.room.tenant, req.room.room);
    if (peerId === this.host.self.nodeId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a node does not pipe to itself');
    const peer = await this.resolvePeer(peerId);
    this.assertPipeAddress(peer, req.endpoint.ip);
    const endpoint = { ip: req.endpoint.ip, port: req.endpoint.port, srtpParameters: req.endpoint.srtpParameters as types.SrtpParameters };
    return toMessage(await room.pipes.openOut(peerId, endpoint, this.host.pipeListen));
  }

  /** Origin side: sends one producer into the pipe to the importer. */
  async pipeConsume(req: SfuRequest<'pipeConsume'>): Promise<{ consumer: types.Consumer<MediaAppData>; producer: types.Producer<MediaAppData> }> {
    const room = this.host.room(req.room.tenant, req.room.room);
    return room.pipes.consume(req.peerNodeId, req.producerId);
  }

  /** Origin side: a producer piped to a peer changed; the peer mirrors it. */
  notifyPeer(room: Room, peerNodeId: string, producerId: string, change: keyof typeof changeEvents): void {
    const peer = this.peers.get(peerNodeId);
    if (!peer) return;
    const message: PipedProducerChange = { room: { tenant: room.tenant, room: room.name }, originNodeId: this.host.self.nodeId, producerId, event: changeEvents[change] };
    // Changes of one producer go out in order, each retried a few times: a lost "resumed" would
    // leave the other node's listeners in silence.
    const key = `${importKey(room.tenant, room.name, producerId)}>${peerNodeId}`;
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
          await sleepBackoff(attempt, { initialMs: 200, maxMs: 10_000 });
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
  async pipedProducerChanged(req: SfuRequest<'pipedProducerChanged'>): Promise<void> {
    const room = this.host.room(req.room.tenant, req.room.room);
    // A change may overtake the import it concerns: it applies once the import is done.
    await this.importing.get(importKey(room.tenant, room.name, req.producerId))?.catch(() => undefined);
    const producer = room.producers.get(req.producerId);
    if (!producer || producer.appData.importedFrom !== req.originNodeId) return;
    if (req.event === PipedProducerEvent.PIPED_PRODUCER_EVENT_PAUSED) await producer.pause();
    else if (req.event === PipedProducerEvent.PIPED_PRODUCER_EVENT_RESUMED) await producer.resume();
    else if (req.event === PipedProducerEvent.PIPED_PRODUCER_EVENT_CLOSED) producer.close();
  }

  /** The peer's room is gone: every pipe with it closes, in both directions. */
  closePipe(req: SfuRequest<'closePipe'>): void {
    this.host.room(req.room.tenant, req.room.room).pipes.closeWith(req.peerNodeId);
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
    const { credentials, options } = grpcClientCredentials(this.tls, 'sfu');
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
