import type { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { Role, Visibility } from '../auth/tokens.js';

/**
 * Whether a participant of `viewerRole` sees a participant whose `visibleTo` is given: is told of
 * it (joins, leaves, tracks, speaking, quality, messages) and may consume its tracks. Everyone is
 * seen by everyone, except a supervisor who whispers (seen by agents and supervisors) or monitors
 * (seen by supervisors only): the end user never learns of either.
 */
export function seenBy(visibleTo: string, viewerRole: string): boolean {
  switch (visibleTo as Visibility) {
    case '':
      return true;
    case 'agents':
      return viewerRole === 'agent' || viewerRole === 'supervisor';
    case 'supervisors':
      return viewerRole === 'supervisor';
    default:
      // A value this replica does not know (a newer one wrote it): hidden, the safe side.
      return viewerRole === 'supervisor';
  }
}

/**
 * What one session knows of who in its room it may see: filled from the room's listing at join
 * and from the room's events after. A participant it has not heard of is looked up (`lookUp`),
 * so a race between events never shows a hidden one.
 */
export class RoomVisibility {
  private readonly visibleToOf = new Map<string, string>();

  constructor(private readonly viewerRole: Role | string) {}

  /** Notes participants as listed or announced. */
  learn(participants: Iterable<Pick<ParticipantInfo, 'participantId' | 'visibleTo'>>): void {
    for (const p of participants) this.visibleToOf.set(p.participantId, p.visibleTo);
  }

  forget(participantId: string): void {
    this.visibleToOf.delete(participantId);
  }

  /** Whether the participant is seen; undefined when this session has not heard of it. */
  sees(participantId: string): boolean | undefined {
    const visibleTo = this.visibleToOf.get(participantId);
    return visibleTo === undefined ? undefined : seenBy(visibleTo, this.viewerRole);
  }

  /** Whether the participant is seen, looking it up when unknown (gone: not seen). */
  async seesOrLooksUp(participantId: string, lookUp: (participantId: string) => Promise<Pick<ParticipantInfo, 'participantId' | 'visibleTo'> | undefined>): Promise<boolean> {
    const known = this.sees(participantId);
    if (known !== undefined) return known;
    const info = await lookUp(participantId);
    if (!info) return false;
    this.learn([info]);
    return seenBy(info.visibleTo, this.viewerRole);
  }
}
