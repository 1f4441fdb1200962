import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { ParticipantSession } from './ParticipantSession.js';

/** Reads a participant of the session's room from the store (one this session has not heard of). */
export type ParticipantLookUp = (session: ParticipantSession, participantId: string) => Promise<Pick<ParticipantInfo, 'participantId' | 'visibleTo'> | undefined>;

/**
 * What a participant's client hears of a room event: events about others it may see are passed
 * on (participant/visibility.ts: a hidden supervisor is never told of), its own echoes are not; a
 * room closed on its node means its media is gone (`abandon`).
 */
export function relayRoomEvent(session: ParticipantSession, event: RoomEvent, abandon: (reason: string) => void, lookUp: ParticipantLookUp): void {
  const e = event.event;
  if (!e || session.ended) return;
  const fromOther = (participantId: string) => participantId !== session.participantId;
  // '' is the server itself (the room API's data messages): everyone's.
  const seen = (participantId: string) => participantId === '' || !fromOther(participantId) || session.visibility.sees(participantId) === true;
  /** Tells of a track of another participant it sees; one not heard of yet is looked up first (rare: joins announce themselves). */
  const tellOfTrack = (participantId: string, tell: () => void) => {
    if (!fromOther(participantId)) return;
    const known = session.visibility.sees(participantId);
    if (known !== undefined) {
      if (known) tell();
      return;
    }
    void session.visibility
      .seesOrLooksUp(participantId, (id) => lookUp(session, id))
      .then((sees) => {
        if (sees && !session.ended) tell();
      })
      .catch((error: unknown) => session.log.warn({ err: error }, 'looking up a participant of the room failed'));
  };
  switch (e.$case) {
    case 'roomClosed':
      if (e.value.nodeId === '' || e.value.nodeId === session.nodeId) abandon(e.value.reason);
      return;
    case 'participantJoined':
    case 'participantUpdated':
      session.visibility.learn([e.value]);
      if (fromOther(e.value.participantId) && seen(e.value.participantId)) session.notify(e);
      return;
    case 'participantLeft': {
      const { participantId } = e.value;
      session.qualityTold.delete(participantId);
      if (fromOther(participantId) && seen(participantId)) session.notify(e);
      session.visibility.forget(participantId);
      return;
    }
    case 'producerAdded':
    case 'producerPaused':
    case 'producerResumed':
      tellOfTrack(e.value.participantId, () => session.notify(e));
      return;
    case 'producerClosed':
      // The SFU closes our consumers of that producer by itself.
      for (const [consumerId, producerId] of session.consumers) if (producerId === e.value.producerId) session.consumers.delete(consumerId);
      if (fromOther(e.value.participantId) && seen(e.value.participantId)) session.notify(e);
      return;
    case 'activeSpeaker':
      // Each node of a room judges over the voices it holds: this session's node holds every
      // voice the participant hears, and one judge per participant means no flicker. A voice it
      // may not hear (a whisper to the agent) is nobody speaking, as far as it knows.
      if (event.origin !== '' && event.origin !== session.nodeId) return;
      if (e.value.participantId !== '' && !seen(e.value.participantId)) {
        session.notify({ $case: 'activeSpeaker', value: { participantId: '', producerId: '' } });
        return;
      }
      session.notify(e);
      return;
    case 'recording':
      session.notify(e);
      return;
    case 'connectionQuality': {
      // Oneself: both sides. Another participant: what everyone receives of it (its upstream);
      // how it receives is its own business. Told only when what this client sees changes.
      const { participantId, upstream } = e.value;
      if (!seen(participantId)) return;
      const value = fromOther(participantId) ? { participantId, quality: upstream, upstream, downstream: 'unknown' } : e.value;
      const told = `${value.quality}/${value.upstream}/${value.downstream}`;
      if (session.qualityTold.get(participantId) === told) return;
      session.qualityTold.set(participantId, told);
      session.notify({ $case: 'connectionQuality', value });
      return;
    }
    case 'videoLayersWanted':
      // Dynacast: for the publisher alone, and from the node its producers live on (a node that
      // imported them through a pipe counts the pipe as a receiver there).
      if (fromOther(e.value.participantId)) return;
      if (event.origin !== '' && event.origin !== session.nodeId) return;
      session.notify(e);
      return;
    case 'chatMessage':
      if (seen(e.value.participantId)) session.notify({ $case: 'message', value: e.value });
      return;
    case 'messageRedacted':
    case 'smartAction':
      session.notify(e);
      return;
    case 'dataMessage': {
      // Not back to its sender, only to those it names (everyone when it names none), and
      // without the names: nobody learns who else received it.
      const { destinationParticipantIds: to, ...message } = e.value;
      if (!fromOther(message.participantId) || !seen(message.participantId)) return;
      if (to.length > 0 && !to.includes(session.participantId)) return;
      session.notify({ $case: 'dataMessage', value: { ...message, destinationParticipantIds: [] } });
      return;
    }
  }
}
