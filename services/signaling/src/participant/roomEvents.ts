import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantSession } from './ParticipantSession.js';

/**
 * What a participant's client hears of a room event: events about others are passed on, its own
 * echoes are not; a room closed on its node means its media is gone (`abandon`).
 */
export function relayRoomEvent(session: ParticipantSession, event: RoomEvent, abandon: (reason: string) => void): void {
  const e = event.event;
  if (!e || session.ended) return;
  const fromOther = (participantId: string) => participantId !== session.participantId;
  switch (e.$case) {
    case 'roomClosed':
      if (e.value.nodeId === '' || e.value.nodeId === session.nodeId) abandon(e.value.reason);
      return;
    case 'participantJoined':
    case 'participantUpdated':
      if (fromOther(e.value.participantId)) session.notify(e);
      return;
    case 'participantLeft':
      session.qualityTold.delete(e.value.participantId);
      if (fromOther(e.value.participantId)) session.notify(e);
      return;
    case 'producerAdded':
    case 'producerPaused':
    case 'producerResumed':
      if (fromOther(e.value.participantId)) session.notify(e);
      return;
    case 'producerClosed':
      // The SFU closes our consumers of that producer by itself.
      for (const [consumerId, producerId] of session.consumers) if (producerId === e.value.producerId) session.consumers.delete(consumerId);
      if (fromOther(e.value.participantId)) session.notify(e);
      return;
    case 'activeSpeaker':
      // Each node of a room judges over the voices it holds: this session's node holds every
      // voice the participant hears, and one judge per participant means no flicker.
      if (event.origin === '' || event.origin === session.nodeId) session.notify(e);
      return;
    case 'recording':
      session.notify(e);
      return;
    case 'connectionQuality': {
      // Oneself: both sides. Another participant: what everyone receives of it (its upstream);
      // how it receives is its own business. Told only when what this client sees changes.
      const { participantId, upstream } = e.value;
      const value = fromOther(participantId) ? { participantId, quality: upstream, upstream, downstream: 'unknown' } : e.value;
      const told = `${value.quality}/${value.upstream}/${value.downstream}`;
      if (session.qualityTold.get(participantId) === told) return;
      session.qualityTold.set(participantId, told);
      session.notify({ $case: 'connectionQuality', value });
      return;
    }
    case 'chatMessage':
      session.notify({ $case: 'message', value: e.value });
      return;
    case 'messageRedacted':
    case 'smartAction':
      session.notify(e);
      return;
    case 'dataMessage': {
      // Not back to its sender, only to those it names (everyone when it names none), and
      // without the names: nobody learns who else received it.
      const { destinationParticipantIds: to, ...message } = e.value;
      if (!fromOther(message.participantId)) return;
      if (to.length > 0 && !to.includes(session.participantId)) return;
      session.notify({ $case: 'dataMessage', value: { ...message, destinationParticipantIds: [] } });
      return;
    }
  }
}
