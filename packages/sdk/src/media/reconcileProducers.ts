import type { types } from 'mediasoup-client';
import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import { warn } from '../log.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { RemoteSource } from '../types.js';
import type { LocalPublication } from './LocalPublication.js';

/** Failures after which the server's state is set right by the reconciliation that follows a reconnection. */
export const CONNECTION_FAILURES = [ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT];

/** What the reconciliation reads and changes of the publisher. */
export interface PublishedMedia {
  signaling: Pick<SignalingClient, 'request'>;
  /** The publications are the truth: kept across reconnections, whatever the server lost. */
  publications: ReadonlyMap<RemoteSource, LocalPublication>;
  /** The producers this side holds; those the server no longer has are closed and taken out. */
  producers: Map<RemoteSource, types.Producer>;
  /** Whether the SDK captured the track (a muted camera it stopped waits for its unmute). */
  owns(track: MediaStreamTrack): boolean;
  produce(source: RemoteSource, track: MediaStreamTrack, paused: boolean): Promise<void>;
  /** A publication that cannot come back: it is forgotten and the app told it is gone. */
  drop(source: RemoteSource, track: MediaStreamTrack): void;
}

/**
 * Makes the server's producers match the publications: closes the ones we no longer publish,
 * pauses or resumes those muted or unmuted while the connection was away, publishes again what
 * the server lost (always the case after a rejoin), muted ones paused from the start.
 */
export async function reconcileProducers(media: PublishedMedia, onServer: TrackInfo[]): Promise<void> {
  const { signaling, publications, producers } = media;
  const serverTracks = new Map(onServer.map((t) => [t.producerId, t]));
  for (const [source, producer] of [...producers]) {
    const onServerTrack = serverTracks.get(producer.id);
    if (!onServerTrack) {
      producer.close();
      producers.delete(source);
      continue;
    }
    const muted = publications.get(source)?.muted ?? false;
    if (onServerTrack.paused === muted) continue;
    // Muted or unmuted while the connection was away.
    await signaling.request(muted ? 'pauseProducer' : 'resumeProducer', { producerId: producer.id }).catch((error: unknown) => {
      if (hasCode(error, ...CONNECTION_FAILURES)) throw error;
      warn(`could not ${muted ? 'mute' : 'unmute'} the ${source} on the server`, error);
    });
  }
  const ours = new Set([...producers.values()].map((p) => p.id));
  for (const track of onServer) {
    if (!ours.has(track.producerId)) await signaling.request('closeProducer', { producerId: track.producerId }).catch(() => undefined);
  }
  for (const [source, publication] of [...publications]) {
    if (producers.has(source)) continue;
    const track = publication.current;
    // A muted camera whose capture the SDK stopped is published again when it is unmuted.
    if (publication.muted && track.readyState === 'ended' && media.owns(track)) continue;
    try {
      if (track.readyState === 'ended') throw new GatewayError(ErrorCode.NOT_FOUND, 'the track ended');
      await media.produce(source, track, publication.muted);
    } catch (error) {
      if (hasCode(error, ...CONNECTION_FAILURES)) throw error;
      // Cannot come back (e.g. the new token does not allow it): tell the app it is gone.
      warn(`could not publish the ${source} again`, error);
      media.drop(source, track);
    }
  }
}
