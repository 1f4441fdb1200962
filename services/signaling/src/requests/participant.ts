import { ErrorCode, GatewayError } from '@gateway/common';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { Handlers } from './types.js';

export interface ParticipantContext {
  hub: Pick<RoomHub, 'publish'>;
}

export type ParticipantCase = 'updateParticipant';

/**
 * A participant's own name and metadata, when its token allows it (canUpdateMetadata): saved in
 * its record first (a resume or takeover keeps it), then announced to the room. Both are
 * checked with the frame (ws/requests.ts): one line of 128 characters, 4 KiB of text.
 */
export function participantHandlers(ctx: ParticipantContext): Handlers<ParticipantCase> {
  return {
    async updateParticipant(session, { name, metadata }) {
      if (!session.grant.grants.canUpdateMetadata) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not change its name or metadata');
      if (name === undefined && metadata === undefined) throw new GatewayError(ErrorCode.BAD_REQUEST, 'name or metadata is required');
      const before = { name: session.info.name, metadata: session.info.metadata };
      if (name !== undefined) session.info.name = name;
      if (metadata !== undefined) session.info.metadata = metadata;
      try {
        await session.save();
      } catch (error) {
        Object.assign(session.info, before);
        throw error;
      }
      const updated = { ...session.info, tracks: [] };
      ctx.hub.publish(session.tenant, session.room, { $case: 'participantUpdated', value: updated });
      return updated;
    },
  };
}
