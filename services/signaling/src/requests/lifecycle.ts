import { ErrorCode, GatewayError } from '@gateway/common';
import type { ParticipantSession } from '../participant/ParticipantSession.js';
import type { Handlers } from './types.js';

export interface LifecycleContext {
  /** Ends the session for good (SessionRegistry.end). */
  end(session: ParticipantSession, reason: 'left'): Promise<void>;
}

export type LifecycleCase = 'join' | 'resume' | 'ping' | 'leave';

/**
 * The session's own requests. A join or resume reaches a handler only on a connection that
 * already holds a session (the connection hands the first one to the JoinService).
 */
export function lifecycleHandlers(ctx: LifecycleContext): Handlers<LifecycleCase> {
  const alreadyJoined = () => Promise.reject(new GatewayError(ErrorCode.ALREADY_JOINED, 'this connection already holds a session'));
  return {
    join: alreadyJoined,
    resume: alreadyJoined,
    ping: async (_session, { clientTimeMs }) => ({ clientTimeMs, serverTimeMs: Date.now() }),
    async leave(session) {
      await ctx.end(session, 'left');
      return {};
    },
  };
}
