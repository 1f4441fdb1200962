import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';

/**
 * The room's participants as a listing showed them, kept up to date with the room events heard
 * since (in their order): joins replace a participant, updates change its name, metadata and
 * visibility (an update carries no tracks: those it had stay), leaves drop one, and tracks come
 * and go. Whoever joined, left or published after the listing is here as they are now, provided
 * the room's events were subscribed to before the listing was read.
 */
export class Roster {
  private readonly participants: Map<string, ParticipantInfo>;

  constructor(listed: readonly ParticipantInfo[]) {
    this.participants = new Map(listed.map((info) => [info.participantId, info]));
  }

  get size(): number {
    return this.participants.size;
  }

  /** The participants as they are now (a copy: later events do not change it). */
  list(): ParticipantInfo[] {
    return [...this.participants.values()];
  }

  apply({ event }: RoomEvent): void {
    if (!event) return;
    switch (event.$case) {
      case 'participantJoined':
        this.participants.set(event.value.participantId, event.value);
        return;
      case 'participantUpdated': {
        const known = this.participants.get(event.value.participantId);
        this.participants.set(event.value.participantId, { ...event.value, tracks: known?.tracks ?? event.value.tracks });
        return;
      }
      case 'participantLeft':
        this.participants.delete(event.value.participantId);
        return;
      case 'producerAdded': {
        const track = event.value.track;
        if (track) this.withTracks(event.value.participantId, (tracks) => [...tracks.filter((t) => t.producerId !== track.producerId), track]);
        return;
      }
      case 'producerClosed':
        this.withTracks(event.value.participantId, (tracks) => tracks.filter((t) => t.producerId !== event.value.producerId));
        return;
      case 'producerPaused':
      case 'producerResumed': {
        const paused = event.$case === 'producerPaused';
        this.withTracks(event.value.participantId, (tracks) => tracks.map((t) => (t.producerId === event.value.producerId ? { ...t, paused } : t)));
        return;
      }
      default:
        return;
    }
  }

  private withTracks(participantId: string, change: (tracks: ParticipantInfo['tracks']) => ParticipantInfo['tracks']): void {
    const info = this.participants.get(participantId);
    if (info) this.participants.set(participantId, { ...info, tracks: change(info.tracks) });
  }
}

/** A listing brought up to date with the room events heard since (Roster). */
export function rosterAfter(listed: readonly ParticipantInfo[], heard: readonly RoomEvent[]): ParticipantInfo[] {
  const roster = new Roster(listed);
  for (const event of heard) roster.apply(event);
  return roster.list();
}
