import type { types } from 'mediasoup';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { MediaAppData } from './mediaTypes.js';

/** One recording's streams: a plain RTP transport and a consumer per producer. */
interface Tap {
  paused: boolean;
  streams: Map<string, { transport: types.PlainTransport; consumer: types.Consumer<MediaAppData> }>;
}

/** What the taps use of their room. */
export interface TapRoom {
  readonly router: types.Router;
  /** NOT_FOUND once the room is closed. */
  assertOpen(): void;
  /** The room's producer, or NOT_FOUND. */
  producer(id: string): types.Producer<MediaAppData>;
  /** Streams came or went (they keep the room from going idle). */
  changed(): void;
}

/**
 * A room's recording taps: each sends some of the room's producers to a recorder over plain RTP.
 * The tap, not each stream, is paused (a PCI pause): a paused tap sends nothing at all.
 */
export class RoomTaps {
  private readonly taps = new Map<string, Tap>();

  constructor(private readonly room: TapRoom) {}

  /**
   * Sends one producer's RTP to a recorder at `ip:port` (RTCP to `rtcpPort`, or muxed) as part of the
   * tap `tapId`. A paused tap creates the stream paused; a video stream starts with a key frame.
   */
  async createStream(tapId: string, producerId: string, destination: { ip: string; port: number; rtcpPort?: number }, listenIp: string, paused = false) {
    this.room.assertOpen();
    const producer = this.room.producer(producerId);
    let tap = this.taps.get(tapId);
    if (tap?.streams.has(producerId)) throw new GatewayError(ErrorCode.ALREADY_EXISTS, 'the tap already records this producer');
    const rtcpMux = !destination.rtcpPort;
    const transport = await this.room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: listenIp }, rtcpMux, comedia: false });
    try {
      await transport.connect({ ip: destination.ip, port: destination.port, ...(rtcpMux ? {} : { rtcpPort: destination.rtcpPort }) }).catch((error: unknown) => {
        throw new GatewayError(ErrorCode.BAD_REQUEST, 'the tap destination was refused', { cause: error });
      });
      tap = this.taps.get(tapId) ?? { paused, streams: new Map() };
      this.taps.set(tapId, tap);
      const consumer = await transport.consume<MediaAppData>({
        producerId,
        rtpCapabilities: this.room.router.rtpCapabilities,
        paused: tap.paused,
        appData: { participantId: `tap:${tapId}`, source: producer.appData.source },
      });
      const streams = tap.streams;
      streams.set(producerId, { transport, consumer });
      transport.observer.once('close', () => {
        streams.delete(producerId);
        this.room.changed();
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

  async setPaused(tapId: string, paused: boolean): Promise<void> {
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

  /** Every stream the room sends to recorders (for metrics: a PCI pause must leave none sending). */
  get consumers(): Array<types.Consumer<MediaAppData>> {
    return [...this.taps.values()].flatMap((tap) => [...tap.streams.values()].map((s) => s.consumer));
  }

  /** Whether any tap still has a stream. */
  get sending(): boolean {
    return [...this.taps.values()].some((tap) => tap.streams.size > 0);
  }

  close(tapId: string): void {
    const tap = this.taps.get(tapId);
    if (!tap) return;
    this.taps.delete(tapId);
    for (const { transport } of tap.streams.values()) transport.close();
  }
}
