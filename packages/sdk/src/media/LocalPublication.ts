import type { types } from 'mediasoup-client';
import type { RemoteSource, TrackPublication } from '../types.js';
import { kindOf } from './encodings.js';

/** A source the local participant publishes, muted or not. */
export class LocalPublication implements TrackPublication {
  muted = false;

  constructor(
    readonly source: RemoteSource,
    /** The last track published for the source (stopped while a camera the SDK captured is muted). */
    public current: MediaStreamTrack,
    private readonly producers: ReadonlyMap<RemoteSource, types.Producer>,
  ) {}

  get trackId(): string {
    return this.producers.get(this.source)?.id ?? '';
  }

  get kind(): 'audio' | 'video' {
    return kindOf[this.source];
  }

  get track(): MediaStreamTrack | undefined {
    return this.current.readyState === 'live' ? this.current : undefined;
  }
}
