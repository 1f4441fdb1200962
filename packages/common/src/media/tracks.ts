import { MediaKind, TrackSource } from '@gateway/proto/gateway/sfu/v1/sfu';

/**
 * A track's source and kind between their names (what clients, mediasoup's appData and file
 * names say) and the SFU protocol's enums: the one mapping signaling, the SFU and the recorder
 * share.
 */
export type TrackSourceName = 'camera' | 'microphone' | 'screen' | 'screen_audio';
export type MediaKindName = 'audio' | 'video';

const sourceByName: Record<TrackSourceName, TrackSource> = {
  camera: TrackSource.TRACK_SOURCE_CAMERA,
  microphone: TrackSource.TRACK_SOURCE_MICROPHONE,
  screen: TrackSource.TRACK_SOURCE_SCREEN,
  screen_audio: TrackSource.TRACK_SOURCE_SCREEN_AUDIO,
};

const nameBySource = new Map<TrackSource, TrackSourceName>(Object.entries(sourceByName).map(([name, source]) => [source, name as TrackSourceName]));

export const TRACK_SOURCE_NAMES = Object.keys(sourceByName) as readonly TrackSourceName[];

/** The protocol's value of a source name; no name (or an unknown one) is UNSPECIFIED. */
export function trackSourceOf(name: string | undefined): TrackSource {
  return (name !== undefined && Object.hasOwn(sourceByName, name) ? sourceByName[name as TrackSourceName] : undefined) ?? TrackSource.TRACK_SOURCE_UNSPECIFIED;
}

/** The name of a protocol source; UNSPECIFIED or a value this build does not know has none. */
export function trackSourceName(source: TrackSource): TrackSourceName | undefined {
  return nameBySource.get(source);
}

export function mediaKindOf(name: MediaKindName): MediaKind {
  return name === 'audio' ? MediaKind.MEDIA_KIND_AUDIO : MediaKind.MEDIA_KIND_VIDEO;
}

/** The name of a protocol kind; UNSPECIFIED or an unknown value has none. */
export function mediaKindName(kind: MediaKind): MediaKindName | undefined {
  return kind === MediaKind.MEDIA_KIND_AUDIO ? 'audio' : kind === MediaKind.MEDIA_KIND_VIDEO ? 'video' : undefined;
}
