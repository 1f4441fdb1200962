import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { RoomHub } from '../rooms/RoomHub.js';
import { callSessionNode } from './nodeCall.js';
import type { ParticipantSession } from './ParticipantSession.js';

/**
 * Pauses or resumes one of the session's producers on its media node and tells the room: the
 * participant's own request (requests/media.ts) and a mute from the room API
 * (participant/SessionControl.ts) go through here. Throws NOT_FOUND for a producer the session
 * does not hold.
 */
export async function setTrackPaused(session: ParticipantSession, hub: Pick<RoomHub, 'publish'>, requested: string, pause: boolean): Promise<TrackInfo> {
  const producerId = session.ownProducer(requested);
  await callSessionNode(session, pause ? session.sfu.pauseProducer : session.sfu.resumeProducer, { room: session.roomRef(), producerId });
  const track = session.tracks.get(producerId)!;
  track.paused = pause;
  // Stored before anyone hears of it, as for produce: a participant joining meanwhile either
  // lists the record with the new state or is subscribed in time for the notification.
  await session.persist();
  hub.publish(session.tenant, session.room, { $case: pause ? 'producerPaused' : 'producerResumed', value: { participantId: session.participantId, producerId } });
  return { ...track };
}
