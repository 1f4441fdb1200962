import type { types } from 'mediasoup';
import { MediaKind, TrackSource, type ProducerInfo } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { MediaAppData, TrackSource as RoomTrackSource } from '../Room.js';

/** Between the SFU's protocol enums and mediasoup's names, in one place. */
export const sourceNames: Record<number, RoomTrackSource | undefined> = {
  [TrackSource.TRACK_SOURCE_CAMERA]: 'camera',
  [TrackSource.TRACK_SOURCE_MICROPHONE]: 'microphone',
  [TrackSource.TRACK_SOURCE_SCREEN]: 'screen',
  [TrackSource.TRACK_SOURCE_SCREEN_AUDIO]: 'screen_audio',
};

export const sourceValues: Record<string, TrackSource> = Object.fromEntries(Object.entries(sourceNames).map(([value, name]) => [name, Number(value) as TrackSource]));

export const mediaKind = (kind: types.MediaKind) => (kind === 'audio' ? MediaKind.MEDIA_KIND_AUDIO : MediaKind.MEDIA_KIND_VIDEO);

export const kindName = (kind: MediaKind): types.MediaKind | undefined => (kind === MediaKind.MEDIA_KIND_AUDIO ? 'audio' : kind === MediaKind.MEDIA_KIND_VIDEO ? 'video' : undefined);

export function producerInfo(producer: types.Producer<MediaAppData>): ProducerInfo {
  return {
    producerId: producer.id,
    participantId: producer.appData.participantId,
    kind: mediaKind(producer.kind),
    source: sourceValues[producer.appData.source ?? ''] ?? TrackSource.TRACK_SOURCE_UNSPECIFIED,
    paused: producer.paused,
  };
}
