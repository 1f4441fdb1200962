import type { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { ParticipantSession } from './ParticipantSession.js';

/** A change of a participant's name or metadata; a field left out stays as it is. */
export interface DetailsChange {
  name?: string | undefined;
  metadata?: string | undefined;
}

/**
 * Changes a participant's name or metadata, asked by the participant (updateParticipant) or by
 * the customer's backend (the room API): saved in its record first (a resume or takeover keeps
 * it; a failed save changes nothing), then announced to the room. Returns the participant
 * without its tracks, as announced.
 */
export async function updateDetails(session: ParticipantSession, hub: Pick<RoomHub, 'publish'>, change: DetailsChange): Promise<ParticipantInfo> {
  if (change.name === undefined && change.metadata === undefined) throw new GatewayError(ErrorCode.BAD_REQUEST, 'name or metadata is required');
  const before = { name: session.info.name, metadata: session.info.metadata };
  if (change.name !== undefined) session.info.name = change.name;
  if (change.metadata !== undefined) session.info.metadata = change.metadata;
  try {
    await session.save();
  } catch (error) {
    Object.assign(session.info, before);
    throw error;
  }
  const updated = { ...session.info, tracks: [] };
  hub.publish(session.tenant, session.room, { $case: 'participantUpdated', value: updated });
  return updated;
}
