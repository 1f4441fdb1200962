import type { types } from 'mediasoup';
import { ErrorCode, GatewayError, TypedEmitter, type Logger } from '@gateway/common';
import { mediaCodecs } from './codecs.js';
import type { PooledWorker } from './WorkerPool.js';

export type RoomCloseReason = 'closed' | 'idle' | 'worker_died' | 'drain_timeout' | 'node_closed';
export type TrackSource = 'camera' | 'microphone' | 'screen' | 'screen_audio';

export interface RoomTimeouts {
  /** A room without transports is closed after this long. */
  idleMs: number;
  /** A transport that never connects, or whose ICE stays disconnected, is closed after this long. */
  abandonedTransportMs: number;
  /** ICE consent timeout in seconds (mediasoup's iceConsentTimeout); 0 disables it. */
  iceConsentTimeoutSeconds: number;
}

/** What one participant may hold in a room on this node; more is refused with LIMIT_EXCEEDED. */
export interface ParticipantLimits {
  transports: number;
  producers: number;
  consumers: number;
}

/** One recording's streams: a plain RTP transport and a consumer per producer. */
interface Tap {
  paused: boolean;
  streams: Map<string, { transport: types.PlainTransport; consumer: types.Consumer<MediaAppData> }>;
}

export interface MediaAppData extends types.AppData {
  participantId: string;
  source?: TrackSource;
  direction?: 'send' | 'recv';
  /** On an imported producer: the node it comes from. */
  importedFrom?: string;
  /** On a consumer: the transport it sends on. */
  transportId?: string;
}

/** Where a pipe listens: the node's cluster-internal address and port range. */
export interface PipeListen {
  listenIp: string;
  announcedAddress?: string;
  portMin: number;
  portMax: number;
}

/** One end of a pipe, as the other node is told of it. */
export interface PipeEndpoint {
  ip: string;
  port: number;
  srtpParameters: types.SrtpParameters;
}

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

type RoomEvents = {
  /** `pipePeers`: the nodes the room had pipes with, which close their ends. */
  closed: [reason: RoomCloseReason, pipePeers: string[]];
  /** A producer piped to `peerNodeId` paused, resumed or closed: the peer must mirror it. */
  pipedproducerchanged: [peerNodeId: string, producerId: string, change: 'paused' | 'resumed' | 'closed'];
  activespeaker: [participantId: string, producerId: string];
  /** Counts of transports/producers/consumers changed. */
  loadchanged: [];
};

/**
 * One room of one tenant: a mediasoup router on one worker with every transport, producer and
 * consumer of the room's participants. Closing the room closes the router, which closes
 * everything below it.
 */
export class Room extends TypedEmitter<RoomEvents> {
  readonly transports = new Map<string, types.WebRtcTransport<MediaAppData>>();
  readonly producers = new Map<string, types.Producer<MediaAppData>>();
  readonly consumers = new Map<string, types.Consumer<MediaAppData>>();
  private readonly taps = new Map<string, Tap>();
  /** The loudest voice of the last interval, until silence. */
  private speaking: { participantId: string; producerId: string } | undefined;
  /** By peer node id. One pipe per direction and peer keeps the two directions independent. */
  readonly pipesOut = new Map<string, PipeOut>();
  readonly pipesIn = new Map<string, PipeIn>();
  private closedFlag = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Creations in flight, by participant and kind, so that concurrent requests cannot pass a limit together. */
  private readonly pending = new Map<string, number>();
  /** Consumers being created, by participant and producer: a concurrent second request shares the first. */
  private readonly consuming = new Map<string, Promise<types.Consumer<MediaAppData>>>();

  private constructor(
    readonly tenant: string,
    readonly name: string,
    readonly worker: PooledWorker,
    readonly router: types.Router,
    private readonly speakerObserver: types.AudioLevelObserver,
    private readonly timeouts: RoomTimeouts,
    private readonly limits: ParticipantLimits,
    private readonly log: Logger,
  ) {
    super();
    // The active speaker is the loudest voice above the threshold over each interval; it is
    // announced when it changes. (mediasoup's ActiveSpeakerObserver stays silent with the
    // worker built here; the level observer reads the same RFC 6464 audio levels.)
    speakerObserver.on('volumes', ([loudest]) => {
      if (!loudest || loudest.producer.id === this.speaking?.producerId) return;
      const participantId = (loudest.producer.appData as MediaAppData).participantId;
      this.speaking = { participantId, producerId: loudest.producer.id };
      if (participantId) this.safeEmit('activespeaker', participantId, loudest.producer.id);
    });
    speakerObserver.on('silence', () => {
      this.speaking = undefined;
    });
    // The worker dying closes the router underneath us.
    router.observer.once('close', () => this.close(worker.worker.died ? 'worker_died' : 'closed'));
    this.armIdleTimer();
  }

  static async open(tenant: string, name: string, worker: PooledWorker, timeouts: RoomTimeouts, limits: ParticipantLimits, log: Logger): Promise<Room> {
    const router = await worker.worker.createRouter({ mediaCodecs, appData: { tenant, room: name } });
    const speakerObserver = await router.createAudioLevelObserver({ maxEntries: 1, threshold: -50, interval: 500 });
    return new Room(tenant, name, worker, router, speakerObserver, timeouts, limits, log.child({ room: `${tenant}/${name}` }));
  }

  /**
   * Holds one of the participant's `kind` slots while `create` runs, refusing with
   * LIMIT_EXCEEDED when what it holds and what is being made for it reach the limit.
   */
  private async withinLimit<T>(kind: keyof ParticipantLimits, participantId: string, held: number, create: () => Promise<T>): Promise<T> {
    const key = `${kind}/${participantId}`;
    const pending = this.pending.get(key) ?? 0;
    if (held + pending >= this.limits[kind]) {
      throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `the participant has reached its limit of ${this.limits[kind]} ${kind} on this node`);
    }
    this.pending.set(key, pending + 1);
    try {
      return await create();
    } finally {
      const left = (this.pending.get(key) ?? 1) - 1;
      if (left > 0) this.pending.set(key, left);
      else this.pending.delete(key);
    }
  }

  private count<T extends { appData: MediaAppData }>(items: Iterable<T>, participantId: string, also: (item: T) => boolean = () => true): number {
    let n = 0;
    for (const item of items) if (item.appData.participantId === participantId && also(item)) n++;
    return n;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Who speaks now, as this node hears it. */
  get activeSpeakerParticipantId(): string {
    return this.speaking?.participantId ?? '';
  }

  get rtpCapabilities(): types.RtpCapabilities {
    return this.router.rtpCapabilities;
  }

  async createWebRtcTransport(participantId: string, direction: 'send' | 'recv'): Promise<types.WebRtcTransport<MediaAppData>> {
    this.assertOpen();
    const held = this.count(this.transports.values(), participantId);
    const transport = await this.withinLimit('transports', participantId, held, () => this.router.createWebRtcTransport<MediaAppData>({
      webRtcServer: this.worker.webRtcServer,
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      initialAvailableOutgoingBitrate: 1_000_000,
      iceConsentTimeout: this.timeouts.iceConsentTimeoutSeconds,
      appData: { participantId, direction },
    }));
    this.transports.set(transport.id, transport);
    this.closeWhenAbandoned(transport);
    transport.observer.once('close', () => {
      this.transports.delete(transport.id);
      this.loadChanged();
    });
    this.loadChanged();
    return transport;
  }

  transport(id: string): types.WebRtcTransport<MediaAppData> {
    const transport = this.transports.get(id);
    if (!transport) throw new GatewayError(ErrorCode.NOT_FOUND, 'transport not found in this room');
    return transport;
  }

  producer(id: string): types.Producer<MediaAppData> {
    const producer = this.producers.get(id);
    if (!producer) throw new GatewayError(ErrorCode.NOT_FOUND, 'producer not found in this room');
    return producer;
  }

  consumer(id: string): types.Consumer<MediaAppData> {
    const consumer = this.consumers.get(id);
    if (!consumer) throw new GatewayError(ErrorCode.NOT_FOUND, 'consumer not found in this room');
    return consumer;
  }

  async produce(
    transportId: string,
    participantId: string,
    kind: types.MediaKind,
    rtpParameters: types.RtpParameters,
    source: TrackSource,
    paused: boolean,
  ): Promise<types.Producer<MediaAppData>> {
    this.assertOpen();
    const transport = this.transport(transportId);
    if (transport.appData.participantId !== participantId) {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'transport belongs to another participant');
    }
    const held = this.count(this.producers.values(), participantId, (p) => !p.appData.importedFrom);
    const producer = await this.withinLimit('producers', participantId, held, async () => {
      try {
        return await transport.produce<MediaAppData>({ kind, rtpParameters, paused, appData: { participantId, source } });
      } catch (error) {
        // mediasoup's words (ids, codec tables) stay in the cause, for the logs.
        throw new GatewayError(ErrorCode.BAD_REQUEST, 'the RTP parameters were refused (unsupported codec, duplicate SSRC or MID, or a closed transport)', { cause: error });
      }
    });
    this.producers.set(producer.id, producer);
    producer.observer.once('close', () => {
      this.producers.delete(producer.id);
      this.loadChanged();
    });
    if (kind === 'audio') await this.speakerObserver.addProducer({ producerId: producer.id }).catch(() => undefined);
    this.loadChanged();
    return producer;
  }

  /**
   * Creates a paused consumer; the client resumes it once its side is ready. A participant has
   * at most one consumer of a producer: asking again on the same transport returns the one it
   * has (a retry after a lost answer gets what the first request made), on another transport
   * is refused with ALREADY_EXISTS.
   */
  async consume(transportId: string, producerId: string, rtpCapabilities: types.RtpCapabilities): Promise<types.Consumer<MediaAppData>> {
    this.assertOpen();
    const transport = this.transport(transportId);
    const producer = this.producer(producerId);
    const participantId = transport.appData.participantId;
    const key = `${participantId}/${producerId}`;
    const inFlight = this.consuming.get(key);
    const existing = inFlight ? await inFlight.catch(() => undefined) : [...this.consumers.values()].find((c) => c.appData.participantId === participantId && c.producerId === producerId);
    if (existing && !existing.closed) {
      if (existing.appData.transportId !== transportId) throw new GatewayError(ErrorCode.ALREADY_EXISTS, 'the participant consumes this producer on another transport');
      return existing;
    }
    if (!this.router.canConsume({ producerId, rtpCapabilities })) {
      throw new GatewayError(ErrorCode.BAD_REQUEST, 'the device cannot receive this producer with its capabilities');
    }
    const held = this.count(this.consumers.values(), participantId);
    const creating = this.withinLimit('consumers', participantId, held, () =>
      transport.consume<MediaAppData>({
        producerId,
        rtpCapabilities,
        paused: true,
        appData: { participantId, source: producer.appData.source, transportId },
      }),
    );
    this.consuming.set(key, creating);
    let consumer: types.Consumer<MediaAppData>;
    try {
      consumer = await creating;
    } finally {
      if (this.consuming.get(key) === creating) this.consuming.delete(key);
    }
    this.consumers.set(consumer.id, consumer);
    this.worker.consumers++;
    consumer.observer.once('close', () => {
      this.consumers.delete(consumer.id);
      this.worker.consumers--;
      this.loadChanged();
    });
    this.loadChanged();
    return consumer;
  }

  async resumeConsumer(consumerId: string): Promise<void> {
    const consumer = this.consumer(consumerId);
    await consumer.resume();
    // A new or resumed video receiver needs a key frame before it can decode anything. Before
    // the transport is connected nothing can be forwarded; mediasoup asks for one when it
    // connects, and an early request would only be throttled by the sender.
    const transport = [...this.transports.values()].find((t) => t.appData.participantId === consumer.appData.participantId && t.appData.direction === 'recv');
    if (consumer.kind === 'video' && transport?.dtlsState === 'connected') await consumer.requestKeyFrame();
  }

  /**
   * Sends one producer's RTP to a recorder at `ip:port` (RTCP to `rtcpPort`, or muxed) as part of the
   * tap `tapId`. A paused tap creates the stream paused; a video stream starts with a key frame.
   */
  async createTapStream(tapId: string, producerId: string, destination: { ip: string; port: number; rtcpPort?: number }, listenIp: string, paused = false) {
    this.assertOpen();
    const producer = this.producer(producerId);
    let tap = this.taps.get(tapId);
    if (tap?.streams.has(producerId)) throw new GatewayError(ErrorCode.ALREADY_EXISTS, 'the tap already records this producer');
    const rtcpMux = !destination.rtcpPort;
    const transport = await this.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: listenIp }, rtcpMux, comedia: false });
    try {
      await transport.connect({ ip: destination.ip, port: destination.port, ...(rtcpMux ? {} : { rtcpPort: destination.rtcpPort }) }).catch((error: unknown) => {
        throw new GatewayError(ErrorCode.BAD_REQUEST, 'the tap destination was refused', { cause: error });
      });
      tap = this.taps.get(tapId) ?? { paused, streams: new Map() };
      this.taps.set(tapId, tap);
      const consumer = await transport.consume<MediaAppData>({
        producerId,
        rtpCapabilities: this.router.rtpCapabilities,
        paused: tap.paused,
        appData: { participantId: `tap:${tapId}`, source: producer.appData.source },
      });
      const streams = tap.streams;
      streams.set(producerId, { transport, consumer });
      transport.observer.once('close', () => {
        streams.delete(producerId);
        this.loadChanged();
      });
      // The stream ends with its producer.
      consumer.observer.once('close', () => transport.close());
      if (consumer.kind === 'video' && !tap.paused) await consumer.requestKeyFrame();
      return { consumer, producer };
    } catch (error) {
      transport.close();
      throw error;
    }
  }

  async setTapPaused(tapId: string, paused: boolean): Promise<void> {
    const tap = this.taps.get(tapId);
    if (!tap) throw new GatewayError(ErrorCode.NOT_FOUND, 'tap not found in this room');
    tap.paused = paused;
    for (const { consumer } of [...tap.streams.values()]) {
      // A stream whose producer closed meanwhile has nothing left to pause or resume.
      if (consumer.closed) continue;
      try {
        if (paused) await consumer.pause();
        else {
          await consumer.resume();
          // Video picks up again at a key frame, not with a frozen picture until the next one.
          if (consumer.kind === 'video') await consumer.requestKeyFrame();
        }
      } catch (error) {
        if (!consumer.closed) throw error;
      }
    }
  }

  /** Every stream this room sends to recorders (for metrics: a PCI pause must leave none sending). */
  get tapConsumers(): Array<types.Consumer<MediaAppData>> {
    return [...this.taps.values()].flatMap((tap) => [...tap.streams.values()].map((s) => s.consumer));
  }

  closeTap(tapId: string): void {
    const tap = this.taps.get(tapId);
    if (!tap) return;
    this.taps.delete(tapId);
    for (const { transport } of tap.streams.values()) transport.close();
  }

  /**
   * The origin's end of a pipe to `peerNodeId`, connected to the peer's end. A peer that opens
   * again (it lost its end, e.g. after a restart) gets a new pipe; the old one is closed.
   */
  async openPipeOut(peerNodeId: string, peer: PipeEndpoint, listen: PipeListen): Promise<PipeEndpoint> {
    this.assertOpen();
    this.pipesOut.get(peerNodeId)?.transport.close();
    const transport = await this.createPipeTransport(listen);
    const pipe: PipeOut = { transport, consumers: new Map() };
    this.pipesOut.set(peerNodeId, pipe);
    transport.observer.once('close', () => {
      if (this.pipesOut.get(peerNodeId) === pipe) this.pipesOut.delete(peerNodeId);
      this.loadChanged();
    });
    try {
      await transport.connect({ ip: peer.ip, port: peer.port, srtpParameters: peer.srtpParameters });
    } catch (error) {
      transport.close();
      // A fault between two nodes, not the caller's request; mediasoup's words stay in the cause.
      throw new GatewayError(ErrorCode.UNAVAILABLE, 'the pipe to the other node could not connect', { cause: error });
    }
    this.loadChanged();
    return this.endpointOf(transport, listen);
  }

  /** Sends one producer into the pipe to `peerNodeId`; the peer mirrors its pause, resume and close. */
  async pipeConsume(peerNodeId: string, producerId: string): Promise<{ consumer: types.Consumer<MediaAppData>; producer: types.Producer<MediaAppData> }> {
    this.assertOpen();
    const pipe = this.pipesOut.get(peerNodeId);
    if (!pipe) throw new GatewayError(ErrorCode.INVALID_STATE, 'no pipe to that node: open it first');
    const producer = this.producer(producerId);
    if (producer.appData.importedFrom) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the producer is itself imported: import it from its origin');
    pipe.consumers.get(producerId)?.close();
    const consumer = await pipe.transport.consume<MediaAppData>({ producerId, appData: { participantId: `pipe:${peerNodeId}`, source: producer.appData.source } });
    pipe.consumers.set(producerId, consumer);
    // The pipe consumer follows its producer (a pipe consumer is never paused by itself).
    consumer.observer.on('pause', () => this.safeEmit('pipedproducerchanged', peerNodeId, producerId, 'paused'));
    consumer.observer.on('resume', () => this.safeEmit('pipedproducerchanged', peerNodeId, producerId, 'resumed'));
    consumer.observer.once('close', () => {
      if (pipe.consumers.get(producerId) === consumer) pipe.consumers.delete(producerId);
      // A closed pipe (peer gone, room closed) needs no message; a closed producer does.
      if (!pipe.transport.closed) this.safeEmit('pipedproducerchanged', peerNodeId, producerId, 'closed');
    });
    return { consumer, producer };
  }

  closePipeOut(peerNodeId: string): void {
    this.pipesOut.get(peerNodeId)?.transport.close();
  }

  /** The importing end of the pipe from `originNodeId`, created unconnected: the origin answers with its end. */
  async pipeInFrom(originNodeId: string, listen: PipeListen): Promise<{ endpoint: PipeEndpoint; connected: boolean }> {
    this.assertOpen();
    let pipe = this.pipesIn.get(originNodeId);
    if (!pipe || pipe.transport.closed) {
      const transport = await this.createPipeTransport(listen);
      const created: PipeIn = { transport, connected: false };
      pipe = created;
      this.pipesIn.set(originNodeId, created);
      transport.observer.once('close', () => {
        if (this.pipesIn.get(originNodeId) === created) this.pipesIn.delete(originNodeId);
        this.loadChanged();
      });
      this.loadChanged();
    }
    return { endpoint: this.endpointOf(pipe.transport, listen), connected: pipe.connected };
  }

  async connectPipeIn(originNodeId: string, origin: PipeEndpoint): Promise<void> {
    const pipe = this.pipesIn.get(originNodeId);
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
    this.assertOpen();
    const pipe = this.pipesIn.get(originNodeId);
    if (!pipe?.connected) throw new GatewayError(ErrorCode.INVALID_STATE, 'no connected pipe from that node');
    const existing = this.producers.get(info.producerId);
    if (existing) return existing;
    const producer = await pipe.transport.produce<MediaAppData>({
      id: info.producerId,
      kind: info.kind,
      rtpParameters,
      paused: info.paused,
      appData: { participantId: info.participantId, source: info.source, importedFrom: originNodeId },
    });
    this.producers.set(producer.id, producer);
    producer.observer.once('close', () => {
      this.producers.delete(producer.id);
      this.loadChanged();
    });
    // Every node of the room judges the active speaker over all the voices it holds: the home
    // node holds every producer of the room, so its answer is the room's.
    if (producer.kind === 'audio') await this.speakerObserver.addProducer({ producerId: producer.id }).catch(() => undefined);
    this.loadChanged();
    return producer;
  }

  /** The importing end of the pipe from a node, closed (with what came through it). */
  closePipeIn(originNodeId: string): void {
    this.pipesIn.get(originNodeId)?.transport.close();
  }

  /** Nodes this room has pipes with, in either direction. */
  pipePeers(): string[] {
    return [...new Set([...this.pipesOut.keys(), ...this.pipesIn.keys()])];
  }

  /** A peer node is gone: its pipes close, and with them the producers imported from it. */
  closePipesWith(peerNodeId: string): void {
    this.pipesOut.get(peerNodeId)?.transport.close();
    this.pipesIn.get(peerNodeId)?.transport.close();
  }

  private async createPipeTransport(listen: PipeListen): Promise<types.PipeTransport> {
    return this.router.createPipeTransport({
      listenInfo: { protocol: 'udp', ip: listen.listenIp, announcedAddress: listen.announcedAddress, portRange: { min: listen.portMin, max: listen.portMax } },
      // Retransmissions across the cluster network, and SRTP: media is encrypted between nodes too.
      enableRtx: true,
      enableSrtp: true,
    });
  }

  private endpointOf(transport: types.PipeTransport, listen: PipeListen): PipeEndpoint {
    return { ip: listen.announcedAddress ?? transport.tuple.localAddress, port: transport.tuple.localPort, srtpParameters: transport.srtpParameters! };
  }

  closeParticipant(participantId: string): number {
    let closed = 0;
    for (const transport of [...this.transports.values()]) {
      if (transport.appData.participantId === participantId) {
        transport.close();
        closed++;
      }
    }
    return closed;
  }

  close(reason: RoomCloseReason = 'closed'): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    clearTimeout(this.idleTimer);
    const pipePeers = this.pipePeers();
    // Closing the router closes every transport, producer and consumer; their observers
    // remove them from the maps and the worker's consumer count.
    if (!this.router.closed) this.router.close();
    this.log.info({ reason }, 'room closed');
    this.safeEmit('closed', reason, pipePeers);
  }

  /**
   * A transport whose client never connects, or whose ICE stays disconnected, is closed after a
   * while: its signaling session may be gone without anyone telling this node.
   */
  private closeWhenAbandoned(transport: types.WebRtcTransport<MediaAppData>): void {
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!transport.closed) {
          this.log.info({ transportId: transport.id, iceState: transport.iceState }, 'closing abandoned transport');
          transport.close();
        }
      }, this.timeouts.abandonedTransportMs);
      timer.unref();
    };
    arm();
    transport.on('icestatechange', (state) => {
      if (state === 'connected' || state === 'completed') clearTimeout(timer);
      else if (state === 'disconnected') arm();
    });
    transport.observer.once('close', () => clearTimeout(timer));
  }

  private assertOpen(): void {
    if (this.closedFlag) throw new GatewayError(ErrorCode.NOT_FOUND, 'room is closed');
  }

  private loadChanged(): void {
    this.armIdleTimer();
    this.safeEmit('loadchanged');
  }

  /**
   * A room without transports for a while is closed, so abandoned rooms don't pile up. A
   * recording tap with streams keeps it: everyone here may have left while the call goes on on
   * another node, its voices imported and recorded here. (A tap's streams end with their
   * producers, so even a recorder that died holds the room no longer than the call.)
   */
  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.closedFlag || this.transports.size > 0 || [...this.taps.values()].some((tap) => tap.streams.size > 0)) return;
    this.idleTimer = setTimeout(() => this.close('idle'), this.timeouts.idleMs);
    this.idleTimer.unref();
  }
}
