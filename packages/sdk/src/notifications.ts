import { isConnectionQuality } from '@gateway/common/quality';
import type { Chat } from './chat/Chat.js';
import type { Subscriber } from './media/Subscriber.js';
import type { Recording } from './recording/Recording.js';
import type { Roster } from './Roster.js';
import type { NotificationEvent } from './signaling/Socket.js';
import type { SmartActions } from './smartActions/SmartActions.js';

/** The highest simulcast layer index mediasoup has. */
const MAX_SPATIAL_LAYER = 3;

/** The parts of a room that the server's notifications change. */
export interface NotificationTargets {
  roster: Pick<Roster, 'upsert' | 'update' | 'remove' | 'others' | 'setQuality'>;
  subscriber: Pick<Subscriber, 'add' | 'drop' | 'setPaused' | 'pump'>;
  recorder: Pick<Recording, 'update'>;
  chat: Pick<Chat, 'take' | 'takeRedaction'>;
  actions: Pick<SmartActions, 'take'>;
  setActiveSpeaker(participantId: string): void;
  /** Dynacast: the highest simulcast layer anyone receives of one of the local participant's videos. */
  layersWanted(producerId: string, maxSpatialLayer: number): void;
  /** The server muted one of the local participant's tracks. */
  localTrackMuted(producerId: string): void;
  /** A data message from another participant or from the customer's backend (participantId ''). */
  data(message: { topic: string; payload: string; sentAtMs: number; participantId: string }): void;
}

/** Hands a notification to the part of the room it concerns. */
export function applyNotification(event: NotificationEvent, to: NotificationTargets): void {
  switch (event.$case) {
    case 'participantJoined':
      to.roster.upsert(event.value);
      void to.subscriber.pump();
      return;
    case 'participantLeft':
      to.roster.remove(event.value.participantId);
      return;
    case 'participantUpdated':
      to.roster.update(event.value);
      return;
    case 'producerAdded': {
      const { participantId, track } = event.value;
      if (!track || !to.roster.others.has(participantId)) return;
      to.subscriber.add(participantId, track);
      void to.subscriber.pump();
      return;
    }
    case 'producerClosed':
      to.subscriber.drop(event.value.producerId);
      return;
    case 'producerPaused':
    case 'producerResumed':
      to.subscriber.setPaused(event.value.producerId, event.$case === 'producerPaused');
      return;
    case 'activeSpeaker':
      to.setActiveSpeaker(event.value.participantId);
      return;
    case 'recording':
      to.recorder.update(event.value);
      return;
    case 'message':
      to.chat.take(event.value);
      return;
    case 'messageRedacted':
      to.chat.takeRedaction(event.value);
      return;
    case 'smartAction':
      to.actions.take(event.value);
      return;
    case 'trackMuted':
      to.localTrackMuted(event.value.producerId);
      return;
    case 'dataMessage':
      to.data(event.value);
      return;
    case 'connectionQuality':
      // A level this SDK does not know (a newer server's) is left out rather than shown wrong.
      if (isConnectionQuality(event.value.quality)) to.roster.setQuality(event.value.participantId, event.value.quality);
      return;
    case 'videoLayersWanted': {
      // Decoded from JSON, a number may be anything: only a layer mediasoup can have is acted on.
      const { producerId, maxSpatialLayer } = event.value;
      if (producerId && Number.isInteger(maxSpatialLayer) && maxSpatialLayer >= 0 && maxSpatialLayer <= MAX_SPATIAL_LAYER) to.layersWanted(producerId, maxSpatialLayer);
      return;
    }
    case 'rejoinRequired':
      // The socket closes with 4010 right after; the client joins again.
      return;
  }
}
