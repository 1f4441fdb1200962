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

/** One recording's streams: a plain RTP transport and a consumer per producer. */
interface Tap {
  paused: boolean;
  streams: Map<string, { transport: types.PlainTransport; consumer: types.Consumer<MediaAppData> }>;
}

export interface MediaAppData extends types.AppData {
  participantId: string;
  source?: TrackSource;
  direction?: 'send' | 'recv';
}

type RoomEvents = {
  closed: [reason: RoomCloseReason];
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
  private closedFlag = false;
  private idleTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly tenant: string,
    readonly name: string,
    readonly worker: PooledWorker,
    readonly router: types.Router,
    private readonly speakerObserver: types.ActiveSpeakerObserver,
    private readonly timeouts: RoomTimeouts,
    private readonly log: Logger,
  ) {
    super();
    speakerObserver.on('dominantspeaker', ({ producer }) => {
      const participantId = (producer.appData as MediaAppData).participantId;
      if (participantId) this.safeEmit('activespeaker', participantId, producer.id);
    });
    // The worker dying closes the router underneath us.
    router.observer.once('close', () => this.close(worker.worker.died ? 'worker_died' : 'closed'));
    this.armIdleTimer();
  }

  static async open(tenant: string, name: string, worker: PooledWorker, timeouts: RoomTimeouts, log: Logger): Promise<Room> {
    const router = await worker.worker.createRouter({ mediaCodecs, appData: { tenant, room: name } });
    const speakerObserver = await router.createActiveSpeakerObserver({ interval: 300 });
    return new Room(tenant, name, worker, router, speakerObserver, timeouts, log.child({ room: `${tenant}/${name}` }));
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  get rtpCapabilities(): types.RtpCapabilities {
    return this.router.rtpCapabilities;
  }

  async createWebRtcTransport(participantId: string, direction: 'send' | 'recv'): Promise<types.WebRtcTransport<MediaAppData>> {
    this.assertOpen();
    const transport = await this.router.createWebRtcTransport<MediaAppData>({
      webRtcServer: this.worker.webRtcServer,
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      initialAvailableOutgoingBitrate: 1_000_000,
      iceConsentTimeout: this.timeouts.iceConsentTimeoutSeconds,
      appData: { participantId, direction },
    });
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
    let producer: types.Producer<MediaAppData>;
    try {
      producer = await transport.produce<MediaAppData>({ kind, rtpParameters, paused, appData: { participantId, source } });
    } catch (error) {
      throw new GatewayError(ErrorCode.BAD_REQUEST, `produce refused: ${(error as Error).message}`, { cause: error });
    }
    this.producers.set(producer.id, producer);
    producer.observer.once('close', () => {
      this.producers.delete(producer.id);
      this.loadChanged();
    });
    if (kind === 'audio') await this.speakerObserver.addProducer({ producerId: producer.id }).catch(() => undefined);
    this.loadChanged();
    return producer;
  }

  /** Creates a paused consumer; the client resumes it once its side is ready. */
  async consume(transportId: string, producerId: string, rtpCapabilities: types.RtpCapabilities): Promise<types.Consumer<MediaAppData>> {
    this.assertOpen();
    const transport = this.transport(transportId);
    const producer = this.producer(producerId);
    if (!this.router.canConsume({ producerId, rtpCapabilities })) {
      throw new GatewayError(ErrorCode.BAD_REQUEST, 'the device cannot receive this producer with its capabilities');
    }
    const consumer = await transport.consume<MediaAppData>({
      producerId,
      rtpCapabilities,
      paused: true,
      appData: { participantId: transport.appData.participantId, source: producer.appData.source },
    });
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
      await transport.connect({ ip: destination.ip, port: destination.port, ...(rtcpMux ? {} : { rtcpPort: destination.rtcpPort }) });
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
    for (const { consumer } of tap.streams.values()) {
      if (paused) await consumer.pause();
      else {
        await consumer.resume();
        // Video picks up again at a key frame, not with a frozen picture until the next one.
        if (consumer.kind === 'video') await consumer.requestKeyFrame();
      }
    }
  }

  closeTap(tapId: string): void {
    const tap = this.taps.get(tapId);
    if (!tap) return;
    this.taps.delete(tapId);
    for (const { transport } of tap.streams.values()) transport.close();
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
    // Closing the router closes every transport, producer and consumer; their observers
    // remove them from the maps and the worker's consumer count.
    if (!this.router.closed) this.router.close();
    this.log.info({ reason }, 'room closed');
    this.safeEmit('closed', reason);
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

  /** A room without transports for a while is closed, so abandoned rooms don't pile up. */
  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.closedFlag || this.transports.size > 0) return;
    this.idleTimer = setTimeout(() => this.close('idle'), this.timeouts.idleMs);
    this.idleTimer.unref();
  }
}
