import type { types } from 'mediasoup';
import type { ProducerInfo } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { MediaAppData } from '../Room.js';
import { mediaKindOf, trackSourceOf } from '@gateway/common';

/** A producer as the SFU protocol describes it (names and enums map in @gateway/common's media/tracks). */
export function producerInfo(producer: types.Producer<MediaAppData>): ProducerInfo {
  return {
    producerId: producer.id,
    participantId: producer.appData.participantId,
    kind: mediaKindOf(producer.kind),
    source: trackSourceOf(producer.appData.source),
    paused: producer.paused,
  };
}
