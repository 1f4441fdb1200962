import type { types } from 'mediasoup-client';
import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, hasCode } from '../errors.js';
import type { Emit } from '../events.js';
import { warn } from '../log.js';
import type { MutableParticipant, RemoteTrackSink } from '../Roster.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { RemoteSource, RemoteTrackPublication, RoomEvents, VideoLayers, VideoQuality } from '../types.js';
import { layerForHeight, QUALITY_LAYERS, spatialLayerCount } from './adaptive.js';
import { asStruct } from './Transports.js';
import { VideoViews, type ViewEnvironment, type ViewState } from './VideoViews.js';

/** What the server was last told of a consumer: created paused, with mediasoup's default layers. */
interface Applied {
  readonly consumer: types.Consumer;
  paused: boolean;
  spatial: number | undefined;
  temporal: number | undefined;
}

/** What the app sees of a remote track (participant.publications), and controls of it. */
class RemotePublication implements RemoteTrackPublication {
  muted: boolean;
  track: MediaStreamTrack | undefined = undefined;
  enabled = true;

  constructor(
    readonly trackId: string,
    readonly source: RemoteSource,
    readonly kind: 'audio' | 'video',
    muted: boolean,
    private readonly control: PublicationControl,
  ) {
    this.muted = muted;
  }

  attach(element: HTMLMediaElement): HTMLMediaElement {
    this.control.attach(this.trackId, element);
    return element;
  }

  detach(element?: HTMLMediaElement): HTMLMediaElement[] {
    return this.control.detach(this.trackId, element);
  }

  setEnabled(enabled: boolean): Promise<void> {
    this.enabled = enabled;
    return this.control.sync(this.trackId);
  }

  setPreferredLayers(layers: VideoLayers | undefined): Promise<void> {
    return this.control.prefer(this.trackId, layers && { ...layers });
  }

  setVideoQuality(quality: VideoQuality | undefined): Promise<void> {
    return this.control.prefer(this.trackId, quality && { ...QUALITY_LAYERS[quality] });
  }
}

/** What a publication asks of the subscriber, by its track id. */
interface PublicationControl {
  attach(producerId: string, element: HTMLMediaElement): void;
  detach(producerId: string, element: HTMLMediaElement | undefined): HTMLMediaElement[];
  prefer(producerId: string, layers: VideoLayers | undefined): Promise<void>;
  sync(producerId: string): Promise<void>;
}

/** A remote producer we know of, consumed or waiting to be. */
interface RemoteTrack {
  readonly producerId: string;
  readonly participantId: string;
  readonly source: RemoteSource;
  /** Paused by its sender (muted): the same producer, no media meanwhile. */
  paused: boolean;
  readonly publication: RemotePublication;
  consumer?: types.Consumer;
  /** `track` was emitted for the consumer (so `trackEnded` is owed). */
  announced: boolean;
  /** Consuming failed for a reason retrying won't fix. */
  failed: boolean;
  /** The elements the app attached it to. */
  readonly elements: Set<HTMLMediaElement>;
  /** Adaptive stream: what the attached elements make of a video (undefined until one was attached). */
  views?: VideoViews;
  view?: ViewState;
  /** The layers the app asked for, over adaptive stream's choice. */
  preferred?: VideoLayers;
  /** What the server was told of the current consumer. */
  applied?: Applied;
  /** Requests about the consumer go one after the other, each for the latest wish. */
  syncing: Promise<void>;
}

/** What a received track should be at the server now. */
export interface ReceiveWish {
  paused: boolean;
  /** undefined: mediasoup's default, the top layer. */
  layers: VideoLayers | undefined;
}

/**
 * What the server should do with a received track: paused when the app disabled it, when video
 * is held (the page hidden, ConnectOptions.pauseVideoWhenHidden) or, with adaptive stream, when
 * none of its elements can be seen; in the layers the app asked for or else those that fit the
 * largest element showing it.
 */
export function receiveWish(input: {
  kind: 'audio' | 'video';
  enabled: boolean;
  videoHeld: boolean;
  view: ViewState | undefined;
  preferred: VideoLayers | undefined;
  layerCount: number;
}): ReceiveWish {
  const { kind, enabled, videoHeld, view, preferred, layerCount } = input;
  if (kind === 'audio') return { paused: !enabled, layers: undefined };
  const paused = !enabled || videoHeld || view?.visible === false;
  if (preferred) return { paused, layers: preferred };
  if (view?.visible && layerCount > 1) return { paused, layers: { spatial: layerForHeight(view.heightPx, layerCount) } };
  return { paused, layers: undefined };
}

/** What receiving needs of its room. */
export interface SubscriberContext {
  signaling: Pick<SignalingClient, 'request' | 'state'>;
  isClosed(): boolean;
  /** The receive transport, when the token allows subscribing. */
  recvTransport(): types.Transport | undefined;
  recvRtpCapabilities(): types.RtpCapabilities;
  /** Another participant in the room, whose tracks map shows what is received of them. */
  participant(participantId: string): MutableParticipant | undefined;
  emit: Emit<Pick<RoomEvents, 'track' | 'trackEnded' | 'trackPaused' | 'trackResumed' | 'trackMuted' | 'trackUnmuted'>>;
  /** Adaptive stream (ConnectOptions.adaptiveStream): attached videos follow their elements. */
  adaptiveStream: boolean;
  /** The browser's observers and timers; tests give their own. */
  viewEnvironment?: ViewEnvironment;
}

/** Receives the other participants' tracks: one consumer per remote producer, made again whenever it is lost. */
export class Subscriber implements RemoteTrackSink {
  private readonly remoteTracks = new Map<string, RemoteTrack>();
  private readonly control: PublicationControl = {
    attach: (producerId, element) => this.attach(producerId, element),
    detach: (producerId, element) => this.detach(producerId, element),
    prefer: (producerId, layers) => {
      const remote = this.remoteTracks.get(producerId);
      if (remote) remote.preferred = layers;
      return this.syncQuietly(producerId);
    },
    sync: (producerId) => this.syncQuietly(producerId),
  };
  private pumpRun: Promise<void> | undefined;
  private pumpAgain = false;
  /** Received video is held at the SFU (the page is hidden; see holdVideo()). */
  private videoHeld = false;

  constructor(private readonly context: SubscriberContext) {}

  add(participantId: string, info: TrackInfo): void {
    const existing = this.remoteTracks.get(info.producerId);
    if (existing) {
      this.setPaused(info.producerId, info.paused);
      return;
    }
    const source = info.source as RemoteSource;
    const publication = new RemotePublication(info.producerId, source, info.kind === 'audio' ? 'audio' : 'video', info.paused, this.control);
    this.remoteTracks.set(info.producerId, {
      producerId: info.producerId,
      participantId,
      source,
      paused: info.paused,
      publication,
      announced: false,
      failed: false,
      elements: new Set(),
      syncing: Promise.resolve(),
    });
    this.context.participant(participantId)?.publications.set(source, publication);
  }

  drop(producerId: string): void {
    const remote = this.remoteTracks.get(producerId);
    if (!remote) return;
    this.remoteTracks.delete(producerId);
    this.detachConsumer(remote);
    remote.views?.close();
    const participant = this.context.participant(remote.participantId);
    if (participant?.publications.get(remote.source) === remote.publication) participant.publications.delete(remote.source);
  }

  dropTracksOf(participantId: string, keep?: ReadonlySet<string>): void {
    for (const remote of [...this.remoteTracks.values()]) {
      if (remote.participantId === participantId && !keep?.has(remote.producerId)) this.drop(remote.producerId);
    }
  }

  /** The sender muted or unmuted a track: the same producer and consumer go on. */
  setPaused(producerId: string, paused: boolean): void {
    const remote = this.remoteTracks.get(producerId);
    if (!remote || remote.paused === paused) return;
    remote.paused = paused;
    remote.publication.muted = paused;
    const participant = this.context.participant(remote.participantId);
    if (!participant) return;
    this.context.emit(paused ? 'trackMuted' : 'trackUnmuted', { participant, source: remote.source, publication: remote.publication });
    const consumer = remote.consumer;
    if (!consumer || !remote.announced) return;
    // Locally too, so the receiver stops expecting media instead of showing a stall.
    if (paused) consumer.pause();
    else consumer.resume();
    this.context.emit(paused ? 'trackPaused' : 'trackResumed', { participant, source: remote.source, track: consumer.track, publication: remote.publication });
  }

  /**
   * Holds or releases every received video at the SFU (pauseConsumer, resumeConsumer): nothing
   * is sent for it meanwhile, which spares a phone's data and battery while the app is in the
   * background. Released, the SFU asks the sender for a key frame, so the picture is back at
   * once. Sound goes on either way.
   */
  async holdVideo(held: boolean): Promise<void> {
    if (this.videoHeld === held) return;
    this.videoHeld = held;
    for (const remote of [...this.remoteTracks.values()]) {
      if (remote.consumer?.kind === 'video') await this.syncQuietly(remote.producerId);
    }
  }

  /** After a reconnection: what changed while the connection was away reaches the server now. */
  async resync(): Promise<void> {
    for (const remote of [...this.remoteTracks.values()]) if (remote.consumer) await this.syncQuietly(remote.producerId);
  }

  /** Shows a remote track in an element, and watches the element for adaptive stream. */
  private attach(producerId: string, element: HTMLMediaElement): void {
    const remote = this.remoteTracks.get(producerId);
    if (!remote) return;
    remote.elements.add(element);
    element.autoplay = true;
    if (remote.publication.kind === 'video') {
      // Sound is played by the room (its own elements, setAudioOutput); a silent video may autoplay.
      element.muted = true;
      (element as HTMLVideoElement).playsInline = true;
    }
    if (remote.publication.track) showIn(element, remote.publication.track);
    if (remote.publication.kind !== 'video' || !this.context.adaptiveStream) return;
    remote.views ??= new VideoViews((view) => {
      remote.view = view;
      void this.syncQuietly(remote.producerId);
    }, this.context.viewEnvironment);
    remote.views.add(element);
  }

  private detach(producerId: string, element: HTMLMediaElement | undefined): HTMLMediaElement[] {
    const remote = this.remoteTracks.get(producerId);
    if (!remote) return [];
    const detached = element ? (remote.elements.has(element) ? [element] : []) : [...remote.elements];
    for (const e of detached) {
      remote.elements.delete(e);
      remote.views?.remove(e);
      const shown = e.srcObject as MediaStream | null;
      if (shown && typeof shown.getTracks === 'function' && shown.getTracks().every((t) => t === remote.publication.track)) e.srcObject = null;
    }
    return detached;
  }

  /** Brings the server in line with what is wished of a remote track; failures are warnings (a reconnection syncs again). */
  private syncQuietly(producerId: string): Promise<void> {
    const remote = this.remoteTracks.get(producerId);
    if (!remote) return Promise.resolve();
    return this.sync(remote).catch((error: unknown) => warn(`could not change how a ${remote.source} track is received`, error));
  }

  /**
   * Queues a sync of the remote track after those under way; rejects with its failure. While
   * the connection is away nothing is sent (a reconnection syncs again), except for a consumer
   * just made, which the restoring of a session resumes before it counts as connected.
   */
  private sync(remote: RemoteTrack, justConsumed = false): Promise<void> {
    const run = remote.syncing.then(() => this.applyWish(remote, justConsumed));
    remote.syncing = run.catch(() => undefined);
    return run;
  }

  private async applyWish(remote: RemoteTrack, justConsumed: boolean): Promise<void> {
    const applied = remote.applied;
    const consumer = remote.consumer;
    const { signaling } = this.context;
    if (!applied || !consumer || applied.consumer !== consumer || consumer.closed || (!justConsumed && signaling.state !== 'connected')) return;
    const layerCount = consumer.kind === 'video' ? spatialLayerCount(consumer.rtpParameters) : 1;
    const wish = receiveWish({ kind: remote.publication.kind, enabled: remote.publication.enabled, videoHeld: this.videoHeld, view: remote.view, preferred: remote.preferred, layerCount });
    // Layers first: a video resumed next starts at a key frame of the layer it will keep.
    // Without a wish, a layer chosen before goes back to the top (mediasoup's own default); a
    // video paused keeps the one it has until it shows again.
    const layers = wish.layers ?? (applied.spatial !== undefined ? { spatial: layerCount - 1 } : undefined);
    if (layers && !wish.paused && consumer.kind === 'video' && (layers.spatial !== applied.spatial || layers.temporal !== applied.temporal)) {
      await signaling.request('setPreferredLayers', { consumerId: consumer.id, spatialLayer: layers.spatial, temporalLayer: layers.temporal });
      applied.spatial = layers.spatial;
      applied.temporal = layers.temporal;
    }
    if (wish.paused !== applied.paused) {
      // Resumed, the SFU asks the sender for a key frame, so the picture is back at once.
      await signaling.request(wish.paused ? 'pauseConsumer' : 'resumeConsumer', { consumerId: consumer.id });
      applied.paused = wish.paused;
    }
  }

  /** The receive transport is closing: its consumers die with it; the tracks stay known and are consumed again on a new one. */
  detachAll(): void {
    for (const remote of this.remoteTracks.values()) this.detachConsumer(remote);
  }

  /** Forgets every remote track (the room is being torn down). */
  clear(): void {
    for (const remote of this.remoteTracks.values()) remote.views?.close();
    this.remoteTracks.clear();
  }

  /** Receive statistics per remote track. */
  getReceiveStats(): Promise<Array<{ participantId: string; trackId: string; source: RemoteSource; kind: 'audio' | 'video'; stats: RTCStatsReport }>> {
    const consumed = [...this.remoteTracks.values()].filter((r) => r.consumer && !r.consumer.closed);
    return Promise.all(consumed.map(async (r) => ({ participantId: r.participantId, trackId: r.producerId, source: r.source, kind: r.consumer!.kind, stats: await r.consumer!.getStats() })));
  }

  /**
   * Consumes every known remote track that has no consumer yet, one at a time. Level-triggered:
   * anything that changes what should be received calls it again; concurrent calls share one run.
   */
  pump(): Promise<void> {
    this.pumpAgain = true;
    this.pumpRun ??= this.runPump();
    return this.pumpRun;
  }

  private async runPump(): Promise<void> {
    // Yield once, so pump() has stored this run before it can finish.
    await Promise.resolve();
    try {
      while (this.pumpAgain) {
        this.pumpAgain = false;
        for (const remote of [...this.remoteTracks.values()]) {
          if (this.context.isClosed() || !this.context.recvTransport() || this.context.signaling.state === 'disconnected') return;
          if (remote.consumer || remote.failed || this.remoteTracks.get(remote.producerId) !== remote) continue;
          if (!(await this.consume(remote))) return;
        }
      }
    } finally {
      this.pumpRun = undefined;
    }
  }

  /** Returns false when the connection failed (stop for now: a reconnection pumps again). */
  private async consume(remote: RemoteTrack): Promise<boolean> {
    const { signaling } = this.context;
    const transport = this.context.recvTransport()!;
    const stale = () => this.context.isClosed() || this.context.recvTransport() !== transport || this.remoteTracks.get(remote.producerId) !== remote;
    try {
      const info = await signaling.request('consume', {
        producerId: remote.producerId,
        rtpCapabilities: asStruct(this.context.recvRtpCapabilities()),
        transportId: transport.id,
      });
      if (stale()) return true;
      const consumer = await transport.consume({
        id: info.consumerId,
        producerId: info.producerId,
        kind: info.kind as types.MediaKind,
        rtpParameters: info.rtpParameters as types.RtpParameters,
        appData: { participantId: remote.participantId, source: remote.source },
      });
      if (stale()) {
        consumer.close();
        return true;
      }
      remote.consumer = consumer;
      // Created paused on the server, with the top layer; resuming it there also asks the sender
      // for a key frame. Video that should not be received (held, disabled, not seen) stays paused.
      remote.applied = { consumer, paused: true, spatial: undefined, temporal: undefined };
      await this.sync(remote, true);
      if (remote.consumer !== consumer || stale()) return true;
      const participant = this.context.participant(remote.participantId);
      if (!participant) return true;
      if (remote.paused) consumer.pause();
      remote.announced = true;
      remote.publication.track = consumer.track;
      participant.tracks.set(remote.source, consumer.track);
      for (const element of remote.elements) showIn(element, consumer.track);
      this.context.emit('track', { participant, source: remote.source, track: consumer.track, publication: remote.publication });
      return true;
    } catch (error) {
      if (remote.consumer && this.remoteTracks.get(remote.producerId) === remote) {
        remote.consumer.close();
        remote.consumer = undefined;
      }
      if (hasCode(error, ErrorCode.CONNECTION_CLOSED)) return false;
      if (hasCode(error, ErrorCode.TIMEOUT)) {
        // A live but slow connection: try again a little later.
        setTimeout(() => void this.pump(), 2_000);
        return false;
      }
      if (hasCode(error, ErrorCode.NOT_FOUND)) {
        // The producer closed meanwhile; its producerClosed notification is on its way.
        this.remoteTracks.delete(remote.producerId);
        return true;
      }
      remote.failed = true;
      warn(`could not receive a ${remote.source} track`, error);
      return true;
    }
  }

  /** Closes the consumer of a remote track (which stays known) and tells the app. */
  private detachConsumer(remote: RemoteTrack): void {
    const consumer = remote.consumer;
    if (!consumer) return;
    remote.consumer = undefined;
    consumer.close();
    const participant = this.context.participant(remote.participantId);
    if (!remote.announced) return;
    remote.announced = false;
    if (remote.publication.track === consumer.track) remote.publication.track = undefined;
    if (participant?.tracks.get(remote.source) === consumer.track) participant.tracks.delete(remote.source);
    if (participant) this.context.emit('trackEnded', { participant, source: remote.source, track: consumer.track, publication: remote.publication });
  }
}

/** Plays a track in an element (unless it already does). */
function showIn(element: HTMLMediaElement, track: MediaStreamTrack): void {
  const current = element.srcObject as MediaStream | null;
  if (current && typeof current.getTracks === 'function' && current.getTracks().length === 1 && current.getTracks()[0] === track) return;
  element.srcObject = new MediaStream([track]);
}
