import type { types } from 'mediasoup';
import { ErrorCode, GatewayError, TypedEmitter, type Logger } from '@gateway/common';
import { mediaCodecs } from './codecs.js';
import type { PooledWorker } from './WorkerPool.js';
import type { MediaAppData, TrackSource } from './mediaTypes.js';
import { RoomPipes, type PipedProducerChange } from './RoomPipes.js';
import { RoomLayers } from './RoomLayers.js';
import { RoomQuality, type ParticipantQuality } from './RoomQuality.js';
import { RoomTaps } from './RoomTaps.js';

export type { MediaAppData, PipeListen, TrackSource } from './mediaTypes.js';

export type RoomCloseReason = 'closed' | 'idle' | 'worker_died' | 'drain_timeout' | 'node_closed';

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

type RoomEvents = {
  /** `pipePeers`: the nodes the room had pipes with, which close their ends. */
  closed: [reason: RoomCloseReason, pipePeers: string[]];
  /** A producer piped to `peerNodeId` paused, resumed or closed: the peer must mirror it. */
  pipedproducerchanged: [peerNodeId: string, producerId: string, change: PipedProducerChange];
  activespeaker: [participantId: string, producerId: string];
  /** A participant's connection quality on this node changed (throttled: see RoomQuality). */
  connectionquality: [participantId: string, quality: ParticipantQuality];
  /** Dynacast: the highest simulcast layer anyone receives of a producer of this node changed. */
  layerswanted: [participantId: string, producerId: string, maxSpatialLayer: number];
  /** Counts of transports/producers/consumers changed. */
  loadchanged: [];
};

/** For monitoring only (metrics): nothing that decides what the room does listens here. */
export type RoomObserverEvents = {
  close: [];
  /** A participant's connection quality was announced (see RoomQuality). */
  connectionquality: [quality: ParticipantQuality];
  /** A WebRTC transport was created for a client. */
  newtransport: [];
  /**
   * A client's transport failed: `ice` when its ICE never connected before the transport was
   * given up as abandoned (the client could not reach the node's media ports), `dtls` when the
   * DTLS handshake failed.
   */
  transportfailed: [reason: TransportFailure];
};

export type TransportFailure = 'ice' | 'dtls';

/**
 * One room of one tenant: a mediasoup router on one worker with every transport, producer and
 * consumer of the room's participants. Its pipes to other SFU nodes are RoomPipes', its
 * recording taps RoomTaps'. Closing the room closes the router, which closes everything below it.
 */
export class Room extends TypedEmitter<RoomEvents> {
  readonly transports = new Map<string, types.WebRtcTransport<MediaAppData>>();
  readonly producers = new Map<string, types.Producer<MediaAppData>>();
  readonly consumers = new Map<string, types.Consumer<MediaAppData>>();
  /** Pipes to and from the other SFU nodes of the room. */
  readonly pipes: RoomPipes;
  /** Recording taps: streams to recorders. */
  readonly taps: RoomTaps;
  /** The connection quality of the participants whose transports are here. */
  readonly quality: RoomQuality;
  /** The simulcast layers wanted of each producer (dynacast). */
  readonly layers: RoomLayers;
  readonly observer = new TypedEmitter<RoomObserverEvents>();
  /** The loudest voice of the last interval, until silence. */
  private speaking: { participantId: string; producerId: string } | undefined;
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
    this.pipes = new RoomPipes({
      router,
      assertOpen: () => this.assertOpen(),
      producer: (id) => this.producer(id),
      findProducer: (id) => this.producers.get(id),
      adoptProducer: (producer) => this.adoptImportedProducer(producer),
      pipedProducerChanged: (peer, producerId, change) => this.safeEmit('pipedproducerchanged', peer, producerId, change),
      changed: () => this.loadChanged(),
    });
    this.taps = new RoomTaps({ router, assertOpen: () => this.assertOpen(), producer: (id) => this.producer(id), changed: () => this.loadChanged() });
    this.quality = new RoomQuality({ transports: () => this.transports.values(), producers: () => this.producers.values(), consumers: () => this.consumers.values() });
    this.layers = new RoomLayers({
      producers: () => this.producers.values(),
      consumers: () => [...this.consumers.values(), ...this.pipes.consumers, ...this.taps.consumers],
    });
    this.layers.on('changed', (participantId, producerId, layer) => this.safeEmit('layerswanted', participantId, producerId, layer));
    this.quality.on('changed', (participantId, quality) => {
      this.safeEmit('connectionquality', participantId, quality);
      this.observer.safeEmit('connectionquality', quality);
    });
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
    const transport = await this.withinLimit('transports', participantId, held, () =>
      this.router.createWebRtcTransport<MediaAppData>({
        webRtcServer: this.worker.webRtcServer,
        enableUdp: true,
        enableTcp: true,
        preferUdp: true,
        initialAvailableOutgoingBitrate: 1_000_000,
        iceConsentTimeout: this.timeouts.iceConsentTimeoutSeconds,
        appData: { participantId, direction },
      }),
    );
    this.transports.set(transport.id, transport);
    this.observer.safeEmit('newtransport');
    this.closeWhenAbandoned(transport);
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed') this.observer.safeEmit('transportfailed', 'dtls');
    });
    this.quality.watchTransport(transport);
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

  async produce(transportId: string, participantId: string, kind: types.MediaKind, rtpParameters: types.RtpParameters, source: TrackSource, paused: boolean): Promise<types.Producer<MediaAppData>> {
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
    this.quality.watchProducer(producer);
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
    this.quality.watchConsumer(consumer, producer.appData.participantId);
    this.worker.consumers++;
    // Paused by its receiver (a hidden video) or resumed: the layers it wants count again. (The
    // observer also tells of its producer's pauses, which change nothing here.)
    consumer.observer.on('pause', () => this.layers.update());
    consumer.observer.on('resume', () => this.layers.update());
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

  /** The layers a receiver prefers (its element's size, or the app's choice): mediasoup switches at the next key frame. */
  async setPreferredLayers(consumerId: string, layers: types.ConsumerLayers): Promise<void> {
    const consumer = this.consumer(consumerId);
    await consumer.setPreferredLayers(layers);
    this.layers.update();
  }

  /** The importing ends of pipes, by origin node. */
  get pipesIn(): RoomPipes['inbound'] {
    return this.pipes.inbound;
  }

  /** A producer imported through a pipe, kept like the room's own. */
  private async adoptImportedProducer(producer: types.Producer<MediaAppData>): Promise<void> {
    this.producers.set(producer.id, producer);
    producer.observer.once('close', () => {
      this.producers.delete(producer.id);
      this.loadChanged();
    });
    // Every node of the room judges the active speaker over all the voices it holds: the home
    // node holds every producer of the room, so its answer is the room's.
    if (producer.kind === 'audio') await this.speakerObserver.addProducer({ producerId: producer.id }).catch(() => undefined);
    this.loadChanged();
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
    this.quality.close();
    const pipePeers = this.pipes.peers();
    // Closing the router closes every transport, producer and consumer; their observers
    // remove them from the maps and the worker's consumer count.
    if (!this.router.closed) this.router.close();
    this.log.info({ reason }, 'room closed');
    this.safeEmit('closed', reason, pipePeers);
    this.observer.safeEmit('close');
  }

  /**
   * A transport whose client never connects, or whose ICE stays disconnected, is closed after a
   * while: its signaling session may be gone without anyone telling this node.
   */
  private closeWhenAbandoned(transport: types.WebRtcTransport<MediaAppData>): void {
    let timer: NodeJS.Timeout | undefined;
    // A transport whose ICE never connected is a client that could not reach this node (a
    // firewall, a wrong announced address): counted as a failure. One that connected and was
    // lost later is a client that went away, which is not.
    let everConnected = false;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (!transport.closed) {
          this.log.info({ transportId: transport.id, iceState: transport.iceState }, 'closing abandoned transport');
          if (!everConnected) this.observer.safeEmit('transportfailed', 'ice');
          transport.close();
        }
      }, this.timeouts.abandonedTransportMs);
      timer.unref();
    };
    arm();
    transport.on('icestatechange', (state) => {
      if (state === 'connected' || state === 'completed') {
        everConnected = true;
        clearTimeout(timer);
      } else if (state === 'disconnected') arm();
    });
    transport.observer.once('close', () => clearTimeout(timer));
  }

  private assertOpen(): void {
    if (this.closedFlag) throw new GatewayError(ErrorCode.NOT_FOUND, 'room is closed');
  }

  private loadChanged(): void {
    this.armIdleTimer();
    if (!this.closedFlag) this.layers.update();
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
    if (this.closedFlag || this.transports.size > 0 || this.taps.sending) return;
    this.idleTimer = setTimeout(() => this.close('idle'), this.timeouts.idleMs);
    this.idleTimer.unref();
  }
}
