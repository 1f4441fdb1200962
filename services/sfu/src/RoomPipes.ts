import type { types } from 'mediasoup';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { MediaAppData, PipeEndpoint, PipeListen, TrackSource } from './mediaTypes.js';

/** This room's producers sent to one other node: a pipe transport and a pipe consumer per producer. */
interface PipeOut {
  transport: types.PipeTransport;
  consumers: Map<string, types.Consumer<MediaAppData>>;
}

/** Producers of one other node received into this room. */
interface PipeIn {
  transport: types.PipeTransport;
  connected: boolean;
}

export type PipedProducerChange = 'paused' | 'resumed' | 'closed';

/** What the pipes use of their room. */
export interface PipeRoom {
  readonly router: types.Router;
  /** NOT_FOUND once the room is closed. */
  assertOpen(): void;
  /** The room's producer, or NOT_FOUND. */
  producer(id: string): types.Producer<MediaAppData>;
  /** The room's producer, or undefined. */
  findProducer(id: string): types.Producer<MediaAppData> | undefined;
  /** A producer imported through a pipe joins the room like one of its own. */
  adoptProducer(producer: types.Producer<MediaAppData>): Promise<void>;
  /** A producer piped to `peerNodeId` paused, resumed or closed: the peer must mirror it. */
  pipedProducerChanged(peerNodeId: string, producerId: string, change: PipedProducerChange): void;
  /** Pipes came or went. */
  changed(): void;
}

/**
 * A room's pipes to and from other SFU nodes of the room, by peer node id. One pipe per
 * direction and peer keeps the two directions independent.
 */
export class RoomPipes {
  readonly outbound = new Map<string, PipeOut>();
  readonly inbound = new Map<string, PipeIn>();

  constructor(private readonly room: PipeRoom) {}

  /**
   * The origin's end of a pipe to `peerNodeId`, connected to the peer's end. A peer that opens
   * again (it lost its end, e.g. after a restart) gets a new pipe; the old one is closed.
   */
  async openOut(peerNodeId: string, peer: PipeEndpoint, listen: PipeListen): Promise<PipeEndpoint> {
    this.room.assertOpen();
    this.outbound.get(peerNodeId)?.transport.close();
    const transport = await this.createTransport(listen);
    const pipe: PipeOut = { transport, consumers: new Map() };
    this.outbound.set(peerNodeId, pipe);
    transport.observer.once('close', () => {
      if (this.outbound.get(peerNodeId) === pipe) this.outbound.delete(peerNodeId);
      this.room.changed();
    });
    try {
      await transport.connect({ ip: peer.ip, port: peer.port, srtpParameters: peer.srtpParameters });
    } catch (error) {
      transport.close();
      // A fault between two nodes, not the caller's request; mediasoup's words stay in the cause.
      throw new GatewayError(ErrorCode.UNAVAILABLE, 'the pipe to the other node could not connect', { cause: error });
    }
    this.room.changed();
    return endpointOf(transport, listen);
  }

  /** Sends one producer into the pipe to `peerNodeId`; the peer mirrors its pause, resume and close. */
  async consume(peerNodeId: string, producerId: string): Promise<{ consumer: types.Consumer<MediaAppData>; producer: types.Producer<MediaAppData> }> {
    this.room.assertOpen();
    const pipe = this.outbound.get(peerNodeId);
    if (!pipe) throw new GatewayError(ErrorCode.INVALID_STATE, 'no pipe to that node: open it first');
    const producer = this.room.producer(producerId);
    if (producer.appData.importedFrom) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the producer is itself imported: import it from its origin');
    pipe.consumers.get(producerId)?.close();
    const consumer = await pipe.transport.consume<MediaAppData>({ producerId, appData: { participantId: `pipe:${peerNodeId}`, source: producer.appData.source } });
    pipe.consumers.set(producerId, consumer);
    this.room.changed();
    // The pipe consumer follows its producer (a pipe consumer is never paused by itself).
    consumer.observer.on('pause', () => this.room.pipedProducerChanged(peerNodeId, producerId, 'paused'));
    consumer.observer.on('resume', () => this.room.pipedProducerChanged(peerNodeId, producerId, 'resumed'));
    consumer.observer.once('close', () => {
      if (pipe.consumers.get(producerId) === consumer) pipe.consumers.delete(producerId);
      // A closed pipe (peer gone, room closed) needs no message; a closed producer does.
      if (!pipe.transport.closed) this.room.pipedProducerChanged(peerNodeId, producerId, 'closed');
    });
    return { consumer, producer };
  }

  /** Every producer sent to other nodes, as consumers of this room. */
  get consumers(): Array<types.Consumer<MediaAppData>> {
    return [...this.outbound.values()].flatMap((pipe) => [...pipe.consumers.values()]);
  }

  closeOut(peerNodeId: string): void {
    this.outbound.get(peerNodeId)?.transport.close();
  }

  /** The importing end of the pipe from `originNodeId`, created unconnected: the origin answers with its end. */
  async inFrom(originNodeId: string, listen: PipeListen): Promise<{ endpoint: PipeEndpoint; connected: boolean }> {
    this.room.assertOpen();
    let pipe = this.inbound.get(originNodeId);
    if (!pipe || pipe.transport.closed) {
      const transport = await this.createTransport(listen);
      const created: PipeIn = { transport, connected: false };
      pipe = created;
      this.inbound.set(originNodeId, created);
      transport.observer.once('close', () => {
        if (this.inbound.get(originNodeId) === created) this.inbound.delete(originNodeId);
        this.room.changed();
      });
      this.room.changed();
    }
    return { endpoint: endpointOf(pipe.transport, listen), connected: pipe.connected };
  }

  async connectIn(originNodeId: string, origin: PipeEndpoint): Promise<void> {
    const pipe = this.inbound.get(originNodeId);
    if (!pipe) throw new GatewayError(ErrorCode.INVALID_STATE, 'no pipe from that node');
    await pipe.transport.connect({ ip: origin.ip, port: origin.port, srtpParameters: origin.srtpParameters }).catch((error: unknown) => {
      throw new GatewayError(ErrorCode.UNAVAILABLE, 'the pipe from the other node could not connect', { cause: error });
    });
    pipe.connected = true;
  }

  /** A producer of another node, received through the pipe with the origin's producer id. */
  async importProducer(
    originNodeId: string,
    info: { producerId: string; participantId: string; kind: types.MediaKind; source?: TrackSource; paused: boolean },
    rtpParameters: types.RtpParameters,
  ): Promise<types.Producer<MediaAppData>> {
    this.room.assertOpen();
    const pipe = this.inbound.get(originNodeId);
    if (!pipe?.connected) throw new GatewayError(ErrorCode.INVALID_STATE, 'no connected pipe from that node');
    const existing = this.room.findProducer(info.producerId);
    if (existing) return existing;
    const producer = await pipe.transport.produce<MediaAppData>({
      id: info.producerId,
      kind: info.kind,
      rtpParameters,
      paused: info.paused,
      appData: { participantId: info.participantId, source: info.source, importedFrom: originNodeId },
    });
    await this.room.adoptProducer(producer);
    return producer;
  }

  /** The importing end of the pipe from a node, closed (with what came through it). */
  closeIn(originNodeId: string): void {
    this.inbound.get(originNodeId)?.transport.close();
  }

  /** Nodes this room has pipes with, in either direction. */
  peers(): string[] {
    return [...new Set([...this.outbound.keys(), ...this.inbound.keys()])];
  }

  /** A peer node is gone: its pipes close, and with them the producers imported from it. */
  closeWith(peerNodeId: string): void {
    this.outbound.get(peerNodeId)?.transport.close();
    this.inbound.get(peerNodeId)?.transport.close();
  }

  /** Pipes in both directions, for the node's load. */
  get count(): number {
    return this.outbound.size + this.inbound.size;
  }

  private async createTransport(listen: PipeListen): Promise<types.PipeTransport> {
    return this.room.router.createPipeTransport({
      listenInfo: { protocol: 'udp', ip: listen.listenIp, announcedAddress: listen.announcedAddress, portRange: { min: listen.portMin, max: listen.portMax } },
      // Retransmissions across the cluster network, and SRTP: media is encrypted between nodes too.
      enableRtx: true,
      enableSrtp: true,
    });
  }
}

function endpointOf(transport: types.PipeTransport, listen: PipeListen): PipeEndpoint {
  return { ip: listen.announcedAddress ?? transport.tuple.localAddress, port: transport.tuple.localPort, srtpParameters: transport.srtpParameters! };
}
