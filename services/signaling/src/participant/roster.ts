import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';

/**
 * The room's participants as a listing showed them, brought up to date with the room events
 * heard since (in their order): joins and updates replace a participant, leaves drop one, and
 * tracks come and go. A join lists its room once, having subscribed to the room's events first,
 * and shows the joining client this: whoever joined, left or published after the listing is
 * here as they are now.
 */
export function rosterAfter(listed: readonly ParticipantInfo[], heard: readonly RoomEvent[]): ParticipantInfo[] {
  const roster = new Map(listed.map((info) => [info.participantId, info]));
  const withTracks = (participantId: string, change: (tracks: ParticipantInfo['tracks']) => ParticipantInfo['tracks']) => {
    const info = roster.get(participantId);
    if (info) roster.set(participantId, { ...info, tracks: change(info.tracks) });
  };
  for (const { event } of heard) {
    if (!event) continue;
    switch (event.$case) {
      case 'participantJoined':
      case 'participantUpdated':
        roster.set(event.value.participantId, event.value);
        break;
      case 'participantLeft':
        roster.delete(event.value.participantId);
        break;
      case 'producerAdded': {
        const track = event.value.track;
        if (track) withTracks(event.value.participantId, (tracks) => [...tracks.filter((t) => t.producerId !== track.producerId), track]);
        break;
      }
      case 'producerClosed':
        withTracks(event.value.participantId, (tracks) => tracks.filter((t) => t.producerId !== event.value.producerId));
        break;
      case 'producerPaused':
      case 'producerResumed': {
        const paused = event.$case === 'producerPaused';
        withTracks(event.value.participantId, (tracks) => tracks.map((t) => (t.producerId === event.value.producerId ? { ...t, paused } : t)));
        break;
      }
      default:
        break;
    }
  }
  return [...roster.values()];
}
