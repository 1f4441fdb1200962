import type { types } from 'mediasoup-client';
import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, hasCode } from '../errors.js';
import type { Emit } from '../events.js';
import { warn } from '../log.js';
import type { MutableParticipant, RemoteTrackSink } from '../Roster.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { RemoteSource, RoomEvents, TrackPublication } from '../types.js';
import { asStruct } from './Transports.js';

/** What the app sees of a remote track (participant.publications). */
interface RemotePublication extends TrackPublication {
  muted: boolean;
  track: MediaStreamTrack | undefined;
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
}

/** Receives the other participants' tracks: one consumer per remote producer, made again whenever it is lost. */
export class Subscriber implements RemoteTrackSink {
  private readonly remoteTracks = new Map<string, RemoteTrack>();
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
    const publication: RemotePublication = { trackId: info.producerId, source, kind: info.kind === 'audio' ? 'audio' : 'video', muted: info.paused, track: undefined };
    this.remoteTracks.set(info.producerId, { producerId: info.producerId, participantId, source, paused: info.paused, publication, announced: false, failed: false });
    this.context.participant(participantId)?.publications.set(source, publication);
  }

  drop(producerId: string): void {
    const remote = this.remoteTracks.get(producerId);
    if (!remote) return;
    this.remoteTracks.delete(producerId);
    this.detachConsumer(remote);
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
    this.context.emit(paused ? 'trackPaused' : 'trackResumed', { participant, source: remote.source, track: consumer.track });
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
    const { signaling } = this.context;
    for (const remote of [...this.remoteTracks.values()]) {
      const consumer = remote.consumer;
      if (consumer?.kind !== 'video' || signaling.state !== 'connected') continue;
      await signaling.request(held ? 'pauseConsumer' : 'resumeConsumer', { consumerId: consumer.id }).catch((error: unknown) => warn(`could not ${held ? 'hold' : 'release'} a received video`, error));
    }
  }

  /** The receive transport is closing: its consumers die with it; the tracks stay known and are consumed again on a new one. */
  detachAll(): void {
    for (const remote of this.remoteTracks.values()) this.detachConsumer(remote);
  }

  /** Forgets every remote track (the room is being torn down). */
  clear(): void {
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
      // Created paused on the server; resuming it there also asks the sender for a key frame.
      // Video received while it is held stays paused there until holdVideo(false).
      if (!(this.videoHeld && consumer.kind === 'video')) await signaling.request('resumeConsumer', { consumerId: consumer.id });
      if (remote.consumer !== consumer || stale()) return true;
      const participant = this.context.participant(remote.participantId);
      if (!participant) return true;
      if (remote.paused) consumer.pause();
      remote.announced = true;
      remote.publication.track = consumer.track;
      participant.tracks.set(remote.source, consumer.track);
      this.context.emit('track', { participant, source: remote.source, track: consumer.track });
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
    if (participant) this.context.emit('trackEnded', { participant, source: remote.source, track: consumer.track });
  }
}
