import { ErrorCode, callUnary, type GatewayError } from '@gateway/common';
import type { ParticipantSession } from './ParticipantSession.js';

/** Calls the session's media node; an unreachable node is logged (the node check acts on it). */
export function callSessionNode<Req, Res>(session: ParticipantSession, method: Parameters<typeof callUnary<Req, Res>>[1], request: Req): Promise<Res> {
  return callUnary<Req, Res>(session.sfu, method, request).catch((error: GatewayError) => {
    if (error.code === ErrorCode.UNAVAILABLE) session.log.warn({ err: error }, 'media node unreachable');
    throw error;
  });
}
