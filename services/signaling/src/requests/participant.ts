import { ErrorCode, GatewayError } from '@gateway/common';
import { updateDetails } from '../participant/details.js';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { Handlers } from './types.js';

export interface ParticipantContext {
  hub: Pick<RoomHub, 'publish'>;
}

export type ParticipantCase = 'updateParticipant';

/**
 * A participant's own name and metadata, when its token allows it (canUpdateMetadata). Both are
 * checked with the frame (ws/requests.ts): one line of 128 characters, 4 KiB of text.
 */
export function participantHandlers(ctx: ParticipantContext): Handlers<ParticipantCase> {
  return {
    async updateParticipant(session, change) {
      if (!session.grant.grants.canUpdateMetadata) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not change its name or metadata');
      return updateDetails(session, ctx.hub, change);
    },
  };
}
