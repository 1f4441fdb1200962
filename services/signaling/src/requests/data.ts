import { ErrorCode, GatewayError } from '@gateway/common';
import { limiterPerKey } from '../limits/RateLimiter.js';
import type { ParticipantSession } from '../participant/ParticipantSession.js';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { Handlers } from './types.js';

export interface DataContext {
  hub: Pick<RoomHub, 'publish'>;
  /** Each participant's own budget (typing indicators send a few a second). */
  limits: { ratePerSecond: number; rateBurst: number };
}

export type DataCase = 'sendData';

/**
 * Ephemeral messages between participants (typing indicators, an app's own signals): relayed
 * through the room's events to every replica, never stored, never delivered to the CRM. The
 * payload's size and the topic's form are checked with the frame (ws/requests.ts).
 */
export function dataHandlers(ctx: DataContext): Handlers<DataCase> {
  const limiterOf = limiterPerKey<ParticipantSession>(ctx.limits.ratePerSecond, ctx.limits.rateBurst);

  return {
    async sendData(session, { topic, payload, destinationParticipantIds }) {
      if (session.info.visibleTo !== '') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'a hidden participant cannot send data messages');
      const wait = limiterOf(session).take();
      if (wait > 0) throw new GatewayError(ErrorCode.RATE_LIMITED, 'too many data messages; slow down', { details: { retryAfterMs: wait } });
      const destinations = [...new Set(destinationParticipantIds)].filter((id) => id !== session.participantId);
      // Naming only oneself leaves nobody to send it to.
      if (destinationParticipantIds.length > 0 && destinations.length === 0) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a data message needs someone else to go to');
      const sentAtMs = Date.now();
      ctx.hub.publish(session.tenant, session.room, {
        $case: 'dataMessage',
        value: { topic, payload, sentAtMs, participantId: session.participantId, destinationParticipantIds: destinations },
      });
      return { sentAtMs };
    },
  };
}
