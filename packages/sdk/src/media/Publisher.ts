import type { types } from 'mediasoup-client';
import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import type { Emit } from '../events.js';
import { warn } from '../log.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { Grants, PublishOptions, RoomEvents, Source } from '../types.js';
import { captureScreen, captureUserMedia } from './capture.js';
import { kindOf, producerOptions } from './encodings.js';

const SOURCES: readonly Source[] = ['microphone', 'camera', 'screen'];

/** What publishing needs of its room. */
export interface PublisherContext {
  signaling: Pick<SignalingClient, 'request' | 'whenConnected' | 'state'>;
  /** The send transport, when the token allows publishing. */
  sendTransport(): types.Transport | undefined;
  emit: Emit<Pick<RoomEvents, 'localTrackPublished' | 'localTrackUnpublished'>>;
}

/**
 * Publishes the local participant's tracks: captures what the app asks for, keeps one producer
 * per source, and publishes again what the server lost (localTracks is the truth, kept across
 * reconnections).
 */
export class Publisher {
  /** What this participant publishes, by source. */
  readonly localTracks = new Map<Source, MediaStreamTrack>();
  private readonly producers = new Map<Source, types.Producer>();
  /** Tracks the SDK captured itself, and therefore stops. */
  private readonly ownedTracks = new WeakSet<MediaStreamTrack>();

  constructor(private readonly context: PublisherContext) {}

  /** See Room.publish; `grants` are what the join token allows. */
  async publish(options: PublishOptions, grants: Readonly<Grants>): Promise<void> {
    const sources = SOURCES.filter((s) => options[s]);
    for (const source of sources) {
      if (!grants.canPublish || !grants.sources.includes(source)) {
        throw new GatewayError(ErrorCode.PERMISSION_DENIED, `this token may not publish the ${source}`);
      }
      const given = options[source];
      if (typeof given === 'object' && given.kind !== kindOf[source]) {
        throw new GatewayError(ErrorCode.BAD_REQUEST, `the ${source} needs a ${kindOf[source]} track`);
      }
    }
    const tracks = await this.tracksFor(options, sources);
    try {
      await this.context.signaling.whenConnected();
      for (const [source, track] of tracks) await this.publishTrack(source, track);
    } catch (error) {
      // Nothing captured for a publish that failed stays open (the camera light would stay on).
      for (const [source, track] of tracks) if (this.ownedTracks.has(track) && this.localTracks.get(source) !== track) track.stop();
      throw error;
    }
  }

  /** Stops publishing a source (and stops its track if the SDK captured it). */
  async unpublish(source: Source): Promise<void> {
    const { signaling } = this.context;
    const track = this.localTracks.get(source);
    const producer = this.producers.get(source);
    this.localTracks.delete(source);
    this.producers.delete(source);
    if (producer) {
      producer.close();
      // When not connected, the reconciliation after a resume closes it on the server.
      if (signaling.state === 'connected') await signaling.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
    }
    if (track) {
      if (this.ownedTracks.has(track)) track.stop();
      this.context.emit('localTrackUnpublished', { source, track });
    }
  }

  /**
   * The server paused one of our producers (the customer's backend muted it): it is paused here
   * too, so nothing is sent for it. Returns its source and track; unmuting is publishing again.
   */
  mutedByServer(producerId: string): { source: Source; track: MediaStreamTrack } | undefined {
    for (const [source, producer] of this.producers) {
      if (producer.id !== producerId) continue;
      producer.pause();
      const track = this.localTracks.get(source);
      return track ? { source, track } : undefined;
    }
    return undefined;
  }

  /** The track published for a source, if it is still live. */
  liveTrack(source: Source): MediaStreamTrack | undefined {
    const track = this.localTracks.get(source);
    return track && track.readyState === 'live' ? track : undefined;
  }

  /** The send transport is closing: its producers die with it; localTracks still says what to publish again. */
  forgetProducers(): void {
    this.producers.clear();
  }

  /**
   * Makes the server's producers match localTracks: closes the ones we no longer publish,
   * publishes again what the server lost (always the case after a rejoin).
   */
  async reconcile(onServer: TrackInfo[]): Promise<void> {
    const serverIds = new Set(onServer.map((t) => t.producerId));
    for (const [source, producer] of [...this.producers]) {
      if (serverIds.has(producer.id)) continue;
      producer.close();
      this.producers.delete(source);
    }
    const ours = new Set([...this.producers.values()].map((p) => p.id));
    for (const track of onServer) {
      if (!ours.has(track.producerId)) await this.context.signaling.request('closeProducer', { producerId: track.producerId }).catch(() => undefined);
    }
    for (const [source, track] of [...this.localTracks]) {
      if (this.producers.has(source)) continue;
      try {
        if (track.readyState === 'ended') throw new GatewayError(ErrorCode.NOT_FOUND, 'the track ended');
        await this.produce(source, track);
      } catch (error) {
        if (hasCode(error, ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT)) throw error;
        // Cannot come back (e.g. the new token does not allow it): tell the app it is gone.
        warn(`could not publish the ${source} again`, error);
        this.localTracks.delete(source);
        if (this.ownedTracks.has(track)) track.stop();
        this.context.emit('localTrackUnpublished', { source, track });
      }
    }
  }

  /** Stops what the SDK captured and forgets every local track (the room is being torn down). */
  stopAll(): void {
    for (const [source, track] of [...this.localTracks]) {
      if (this.ownedTracks.has(track)) track.stop();
      this.localTracks.delete(source);
    }
  }

  private async tracksFor(options: PublishOptions, sources: Source[]): Promise<Array<[Source, MediaStreamTrack]>> {
    const out: Array<[Source, MediaStreamTrack]> = [];
    const capture = (s: Source) => options[s] === true && !this.localTracks.has(s);
    if (capture('camera') || capture('microphone')) {
      const captured = await captureUserMedia({ camera: capture('camera'), microphone: capture('microphone') });
      for (const source of ['camera', 'microphone'] as const) {
        const track = captured[source];
        if (track) this.ownedTracks.add(track);
        if (track) out.push([source, track]);
      }
    }
    if (capture('screen')) {
      const track = await captureScreen();
      this.ownedTracks.add(track);
      out.push(['screen', track]);
    }
    for (const source of sources) {
      const given = options[source];
      if (typeof given === 'object') out.push([source, given]);
    }
    return out;
  }

  private async publishTrack(source: Source, track: MediaStreamTrack): Promise<void> {
    const previous = this.localTracks.get(source);
    if (previous === track) return;
    const producer = this.producers.get(source);
    if (producer && previous) {
      await producer.replaceTrack({ track });
      this.localTracks.set(source, track);
      if (this.ownedTracks.has(previous)) previous.stop();
      this.context.emit('localTrackUnpublished', { source, track: previous });
      this.context.emit('localTrackPublished', { source, track });
      return;
    }
    this.localTracks.set(source, track);
    try {
      await this.produce(source, track);
    } catch (error) {
      if (this.localTracks.get(source) === track) this.localTracks.delete(source);
      throw error;
    }
    this.context.emit('localTrackPublished', { source, track });
  }

  private async produce(source: Source, track: MediaStreamTrack): Promise<void> {
    const transport = this.context.sendTransport();
    if (!transport) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not publish');
    const producer = await transport.produce({ track, ...producerOptions(source, track), stopTracks: false, appData: { source } });
    if (this.localTracks.get(source) !== track || this.context.sendTransport() !== transport) {
      // Unpublished (or the transport replaced) while the server was creating it.
      producer.close();
      await this.context.signaling.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
      return;
    }
    // The browser's "Stop sharing" button (or an unplugged camera) ends the track.
    producer.on('trackended', () => void this.unpublish(source).catch(() => undefined));
    this.producers.set(source, producer);
  }
}
