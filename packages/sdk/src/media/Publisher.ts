import type { types } from 'mediasoup-client';
import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import type { Emit } from '../events.js';
import { warn } from '../log.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { CaptureOptions, Grants, Participant, PublishOptions, RemoteSource, RoomEvents, Source } from '../types.js';
import { Dynacast } from './Dynacast.js';
import { kindOf, producerOptions } from './encodings.js';
import { LocalCapture } from './LocalCapture.js';
import { LocalPublication } from './LocalPublication.js';
import { CONNECTION_FAILURES, reconcileProducers } from './reconcileProducers.js';

const SOURCES: readonly Source[] = ['microphone', 'camera', 'screen'];

/** What publishing needs of its room. */
export interface PublisherContext {
  signaling: Pick<SignalingClient, 'request' | 'whenConnected' | 'state'>;
  /** The send transport, when the token allows publishing. */
  sendTransport(): types.Transport | undefined;
  /** The local participant, whom trackMuted and trackUnmuted name. */
  localParticipant(): Participant;
  emit: Emit<Pick<RoomEvents, 'localTrackPublished' | 'localTrackUnpublished' | 'trackMuted' | 'trackUnmuted'>>;
  /** Dynacast (ConnectOptions.dynacast): simulcast layers nobody receives are not encoded. */
  dynacast: boolean;
}

/**
 * Publishes the local participant's tracks: captures what the app asks for (LocalCapture.ts),
 * keeps one producer per source, mutes by pausing it (never by unpublishing), and publishes
 * again what the server lost (reconcileProducers.ts: the publications are the truth, kept across
 * reconnections).
 */
export class Publisher {
  /** What this participant publishes, by source, muted or not. */
  readonly publications = new Map<RemoteSource, LocalPublication>();
  /** The live tracks of the publications, by source (a muted camera the SDK captured has none). */
  readonly localTracks = new Map<RemoteSource, MediaStreamTrack>();
  private readonly producers = new Map<RemoteSource, types.Producer>();
  private readonly capture = new LocalCapture();
  /** Mutes, unmutes and setEnabled() calls run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly dynacast = new Dynacast();

  constructor(private readonly context: PublisherContext) {}

  /** The SFU says the highest simulcast layer anyone receives of one of our videos (dynacast). */
  layersWanted(producerId: string, maxSpatialLayer: number): void {
    if (!this.context.dynacast) return;
    const producer = [...this.producers.values()].find((p) => p.id === producerId);
    if (producer) this.dynacast.wanted(producer, maxSpatialLayer);
  }

  /** When the connection is cut every layer is encoded again, until the SFU says anew (what it says while away is lost). */
  resetLayers(): void {
    this.dynacast.reset(this.producers.values());
  }

  /** The sender statistics of every live producer (muted ones included), by track. */
  getSendStats(): Promise<Array<{ trackId: string; source: RemoteSource; kind: 'audio' | 'video'; stats: RTCStatsReport }>> {
    const live = [...this.producers.entries()].filter(([, producer]) => !producer.closed);
    return Promise.all(live.map(async ([source, producer]) => ({ trackId: producer.id, source, kind: producer.kind, stats: await producer.getStats() })));
  }

  /**
   * See Room.setMicrophoneEnabled and the others: enabling publishes a source not yet published
   * and unmutes one that is muted; disabling mutes it (the screen share ends instead: sharing
   * again needs the browser's picker anyway).
   */
  setEnabled(source: Source, enabled: boolean, grants: Readonly<Grants>, options?: CaptureOptions): Promise<void> {
    return this.serially(async () => {
      if (options) this.capture.setOptions(source, options);
      const publication = this.publications.get(source);
      if (enabled) {
        if (publication) await this.applyMute(source, false);
        else await this.publish({ [source]: true }, grants);
        return;
      }
      if (!publication) return;
      if (source === 'screen') await this.unpublish(source);
      else await this.applyMute(source, true);
    });
  }

  /**
   * Captures a source from another device (a camera by id or facing mode, a microphone by id)
   * and puts the new track into the same producer: no renegotiation, the others' consumers go
   * on, a mute stays. The options also hold for later captures. A source not published, or a
   * camera muted (stopped), only keeps the options for its next capture. When the new device
   * fails, the camera as it was is captured again and the error is thrown.
   */
  switchDevice(source: 'camera' | 'microphone', options: CaptureOptions): Promise<MediaStreamTrack | undefined> {
    return this.serially(async () => {
      const undoChoice = this.capture.chooseDevice(source, options);
      const publication = this.publications.get(source);
      const old = publication?.track;
      if (!publication || !old) return undefined;
      const captureAgain = async () => {
        const track = await this.capture.recapture(source);
        if (!track) throw new GatewayError(ErrorCode.NOT_FOUND, `no ${source} found`);
        return track;
      };
      // A camera the SDK captured is stopped before the next is opened: phones cannot open two,
      // and a video sender whose old camera stops after the switch may stop encoding.
      if (source === 'camera') this.capture.release(old);
      let track: MediaStreamTrack;
      try {
        track = await captureAgain();
      } catch (error) {
        undoChoice();
        // The camera as it was, so the call goes on with it.
        if (old.readyState === 'ended') {
          await captureAgain()
            .then((again) => this.replaceCapture(source, publication, again))
            .catch((restoreError: unknown) => warn(`could not capture the ${source} again`, restoreError));
        }
        throw error;
      }
      await this.replaceCapture(source, publication, track);
      return track;
    });
  }

  /** Puts a freshly captured track into a publication's producer in place of the old one, which stops. */
  private async replaceCapture(source: Source, publication: LocalPublication, track: MediaStreamTrack): Promise<void> {
    if (this.publications.get(source) !== publication) {
      track.stop();
      return;
    }
    try {
      await this.producers.get(source)?.replaceTrack({ track });
    } catch (error) {
      track.stop();
      throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
    }
    const previous = publication.current;
    publication.current = track;
    this.localTracks.set(source, track);
    this.capture.release(previous);
    this.context.emit('localTrackUnpublished', { source, track: previous });
    this.context.emit('localTrackPublished', { source, track });
  }

  /** Mutes or unmutes a published source; rejects with NOT_FOUND when it is not published. */
  setMuted(source: Source, muted: boolean): Promise<void> {
    return this.serially(() => this.applyMute(source, muted));
  }

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
    if (options.screenAudio) {
      // The screen's sound goes with the screen share, under its grant.
      if (!grants.canPublish || !grants.sources.includes('screen')) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not publish the screen');
      if (options.screenAudio.kind !== 'audio') throw new GatewayError(ErrorCode.BAD_REQUEST, 'screenAudio needs an audio track');
      if (!options.screen && !this.publications.has('screen')) throw new GatewayError(ErrorCode.BAD_REQUEST, 'screenAudio goes with a screen share');
    }
    const tracks = await this.capture.tracksFor(options, sources, (s) => this.localTracks.has(s));
    try {
      await this.context.signaling.whenConnected();
      for (const [source, track] of tracks) await this.publishTrack(source, track);
    } catch (error) {
      // Nothing captured for a publish that failed stays open (the camera light would stay on).
      for (const [source, track] of tracks) if (this.localTracks.get(source) !== track) this.capture.release(track);
      throw error;
    }
  }

  /** Stops publishing a source (and stops its track if the SDK captured it). */
  async unpublish(source: RemoteSource): Promise<void> {
    const { signaling } = this.context;
    const publication = this.publications.get(source);
    const producer = this.producers.get(source);
    this.publications.delete(source);
    this.localTracks.delete(source);
    this.producers.delete(source);
    if (producer) {
      producer.close();
      // When not connected, the reconciliation after a resume closes it on the server.
      if (signaling.state === 'connected') await signaling.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
    }
    if (publication) {
      const track = publication.current;
      this.capture.release(track);
      this.context.emit('localTrackUnpublished', { source, track });
    }
    // The screen's sound ends with the screen share.
    if (source === 'screen' && this.publications.has('screen_audio')) await this.unpublish('screen_audio');
  }

  /**
   * The server paused one of our producers (the customer's backend muted it): it is paused and
   * its publication muted here too, so nothing is sent for it and trackMuted tells the app, which
   * may unmute it (unmuteTrack, setMicrophoneEnabled) like any mute. Returns its source and track.
   */
  mutedByServer(producerId: string): { source: RemoteSource; track: MediaStreamTrack } | undefined {
    for (const [source, producer] of this.producers) {
      if (producer.id !== producerId) continue;
      producer.pause();
      const publication = this.publications.get(source);
      if (publication && !publication.muted) {
        publication.muted = true;
        this.announceMute(publication);
      }
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

  /** After a (re)join: the server's producers made to match the publications (reconcileProducers.ts). */
  reconcile(onServer: TrackInfo[]): Promise<void> {
    const { publications, producers, capture } = this;
    return reconcileProducers(
      {
        signaling: this.context.signaling,
        publications,
        producers,
        owns: (track) => capture.owns(track),
        produce: (source, track, paused) => this.produce(source, track, paused),
        drop: (source, track) => {
          this.publications.delete(source);
          this.localTracks.delete(source);
          capture.release(track);
          this.context.emit('localTrackUnpublished', { source, track });
        },
      },
      onServer,
    );
  }

  /** Stops what the SDK captured and forgets every local track (the room is being torn down). */
  stopAll(): void {
    for (const [source, publication] of [...this.publications]) {
      this.capture.release(publication.current);
      this.publications.delete(source);
      this.localTracks.delete(source);
    }
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Mutes by pausing the producer, here (nothing is sent) and on the server (the others are told,
   * and see it in the room's state); the producer and the others' consumers stay. A camera the
   * SDK captured is also stopped (its light goes off) and captured again on unmute, its new track
   * replacing the old one in the same producer.
   */
  private async applyMute(source: RemoteSource, muted: boolean): Promise<void> {
    const publication = this.publications.get(source);
    if (!publication) throw new GatewayError(ErrorCode.NOT_FOUND, `the ${source} is not published`);
    if (publication.muted === muted) return;
    const { signaling } = this.context;
    let producer = this.producers.get(source);
    if (!muted && !publication.track) {
      // The capture was stopped while muted: capture again, into the same producer.
      if (source === 'screen' || source === 'screen_audio') throw new GatewayError(ErrorCode.NOT_FOUND, 'the screen share ended');
      const track = await this.capture.recapture(source);
      if (!track) throw new GatewayError(ErrorCode.NOT_FOUND, `no ${source} found`);
      if (this.publications.get(source) !== publication) {
        track.stop();
        return;
      }
      try {
        if (producer) await producer.replaceTrack({ track });
      } catch (error) {
        track.stop();
        throw GatewayError.from(error, ErrorCode.UNAVAILABLE);
      }
      publication.current = track;
      this.localTracks.set(source, track);
      if (!producer) {
        // Not on the server (a rejoin while muted): published again now, unmuted.
        publication.muted = false;
        await this.produce(source, track);
        this.announceMute(publication);
        return;
      }
    }
    publication.muted = muted;
    producer = this.producers.get(source);
    if (producer) {
      if (muted) producer.pause();
      else producer.resume();
      try {
        // While away, the reconciliation after the reconnection tells the server.
        if (signaling.state === 'connected') await signaling.request(muted ? 'pauseProducer' : 'resumeProducer', { producerId: producer.id });
      } catch (error) {
        if (!hasCode(error, ...CONNECTION_FAILURES)) {
          publication.muted = !muted;
          if (muted) producer.resume();
          else producer.pause();
          throw error;
        }
      }
    }
    const track = publication.track;
    if (muted && source === 'camera' && track && this.capture.owns(track)) {
      // The camera light goes off; nothing is sent while paused anyway.
      if (producer && !producer.closed) await producer.replaceTrack({ track: null }).catch(() => undefined);
      track.stop();
      this.localTracks.delete(source);
    }
    this.announceMute(publication);
  }

  private announceMute(publication: LocalPublication): void {
    this.context.emit(publication.muted ? 'trackMuted' : 'trackUnmuted', { participant: this.context.localParticipant(), source: publication.source, publication });
  }

  /** Publishes a track for a source; publishing one for a muted source unmutes it. */
  private async publishTrack(source: RemoteSource, track: MediaStreamTrack): Promise<void> {
    const publication = this.publications.get(source);
    const previous = publication?.current;
    if (previous === track) return;
    const producer = this.producers.get(source);
    if (publication && producer) {
      await producer.replaceTrack({ track });
      publication.current = track;
      this.localTracks.set(source, track);
      this.capture.release(previous!);
      this.context.emit('localTrackUnpublished', { source, track: previous! });
      this.context.emit('localTrackPublished', { source, track });
      if (publication.muted) await this.applyMute(source, false);
      return;
    }
    // New, or not on the server (muted through a rejoin): published afresh, unmuted.
    const wasMuted = publication?.muted ?? false;
    const fresh = new LocalPublication(source, track, this.producers);
    this.publications.set(source, fresh);
    this.localTracks.set(source, track);
    try {
      await this.produce(source, track);
    } catch (error) {
      if (this.publications.get(source) === fresh) {
        this.publications.delete(source);
        this.localTracks.delete(source);
      }
      throw error;
    }
    this.context.emit('localTrackPublished', { source, track });
    if (wasMuted) this.announceMute(fresh);
  }

  private async produce(source: RemoteSource, track: MediaStreamTrack, paused = false): Promise<void> {
    const transport = this.context.sendTransport();
    if (!transport) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not publish');
    const producer = await transport.produce({ track, ...producerOptions(source, track), stopTracks: false, appData: { source, paused } });
    if (paused) producer.pause();
    if (this.publications.get(source)?.current !== track || this.context.sendTransport() !== transport) {
      // Unpublished (or the transport replaced) while the server was creating it.
      producer.close();
      await this.context.signaling.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
      return;
    }
    // The browser's "Stop sharing" button (or an unplugged camera) ends the track.
    producer.on('trackended', () => void this.unpublish(source).catch(() => undefined));
    producer.observer.once('close', () => this.dynacast.forget(producer.id));
    this.producers.set(source, producer);
  }
}
