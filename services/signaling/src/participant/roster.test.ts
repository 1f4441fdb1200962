import { describe, expect, it } from 'vitest';
import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import type { ParticipantInfo, TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { rosterAfter } from './roster.js';

const info = (participantId: string, tracks: TrackInfo[] = []): ParticipantInfo => ({
  participantId,
  identity: `user-${participantId}`,
  role: 'end_user',
  joinedAtMs: 1,
  tracks,
  name: '',
  metadata: '',
  visibleTo: '',
});
const camera = (producerId: string, paused = false): TrackInfo => ({ producerId, source: 'camera', kind: 'video', paused });

/**
 * A room whose participants' records change as the room's events say (what each replica writes
 * and publishes), so that a listing taken at any point can be compared with the roster.
 */
class Room {
  readonly records = new Map<string, ParticipantInfo>();
  readonly events: RoomEvent[] = [];

  private happen(event: RoomEvent['event'], change: () => void): void {
    change();
    this.events.push({ tenant: 'demo', room: 'room-1', atMs: Date.now(), origin: 'replica-a', event });
  }
  join(participant: ParticipantInfo): void {
    this.happen({ $case: 'participantJoined', value: participant }, () => this.records.set(participant.participantId, participant));
  }
  leave(participantId: string): void {
    this.happen({ $case: 'participantLeft', value: { participantId, reason: 'left' } }, () => this.records.delete(participantId));
  }
  rename(participantId: string, name: string): void {
    const updated = { ...this.records.get(participantId)!, name };
    // Announced without its tracks, as participant/details.ts does: those it had stay.
    this.happen({ $case: 'participantUpdated', value: { ...updated, tracks: [] } }, () => this.records.set(participantId, updated));
  }
  publish(participantId: string, track: TrackInfo): void {
    const p = this.records.get(participantId)!;
    this.happen({ $case: 'producerAdded', value: { participantId, track } }, () => this.records.set(participantId, { ...p, tracks: [...p.tracks, track] }));
  }
  pause(participantId: string, producerId: string, paused: boolean): void {
    const p = this.records.get(participantId)!;
    const tracks = p.tracks.map((t) => (t.producerId === producerId ? { ...t, paused } : t));
    this.happen({ $case: paused ? 'producerPaused' : 'producerResumed', value: { participantId, producerId } }, () => this.records.set(participantId, { ...p, tracks }));
  }
  unpublish(participantId: string, producerId: string): void {
    const p = this.records.get(participantId)!;
    const tracks = p.tracks.filter((t) => t.producerId !== producerId);
    this.happen({ $case: 'producerClosed', value: { participantId, producerId } }, () => this.records.set(participantId, { ...p, tracks }));
  }
  listing(): ParticipantInfo[] {
    return [...this.records.values()];
  }
}

const byId = (infos: ParticipantInfo[]) => [...infos].sort((a, b) => a.participantId.localeCompare(b.participantId));

describe('rosterAfter', () => {
  it('is the listing taken later: joins, leaves, renames and tracks heard since the first listing', () => {
    const room = new Room();
    room.join(info('PA_1', [camera('PR_1')]));
    room.join(info('PA_2'));
    const listed = room.listing();
    const heardFrom = room.events.length;
    room.join(info('PA_3'));
    room.publish('PA_3', camera('PR_3'));
    room.pause('PA_1', 'PR_1', true);
    room.leave('PA_2');
    room.rename('PA_1', 'Ann');
    room.publish('PA_1', camera('PR_4'));
    room.unpublish('PA_1', 'PR_4');
    room.pause('PA_3', 'PR_3', true);
    room.pause('PA_3', 'PR_3', false);
    room.join(info('PA_5'));
    room.leave('PA_5');
    expect(byId(rosterAfter(listed, room.events.slice(heardFrom)))).toEqual(byId(room.listing()));
  });

  it('takes events the listing already reflects without change (heard before the listing answered)', () => {
    const room = new Room();
    room.join(info('PA_1'));
    const heardFrom = room.events.length;
    room.join(info('PA_2'));
    room.publish('PA_2', camera('PR_2'));
    room.join(info('PA_3'));
    room.leave('PA_3');
    // The listing was answered after all of these, the watch heard them too.
    expect(byId(rosterAfter(room.listing(), room.events.slice(heardFrom)))).toEqual(byId(room.listing()));
  });

  it('ignores tracks of participants it does not hold', () => {
    const heard: RoomEvent[] = [{ tenant: 'demo', room: 'room-1', atMs: 1, origin: 'a', event: { $case: 'producerAdded', value: { participantId: 'PA_9', track: camera('PR_9') } } }];
    expect(rosterAfter([info('PA_1')], heard)).toEqual([info('PA_1')]);
  });
});
