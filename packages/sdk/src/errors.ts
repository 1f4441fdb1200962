/** Error codes the server sends (see the signaling protocol), plus the SDK's own. */
export type ErrorCode =
  | 'BAD_REQUEST' | 'MALFORMED_MESSAGE' | 'UNKNOWN_METHOD' | 'FRAME_TOO_LARGE' | 'UNAUTHENTICATED'
  | 'TOKEN_EXPIRED' | 'PERMISSION_DENIED' | 'NOT_JOINED' | 'ALREADY_JOINED' | 'NOT_FOUND' | 'ALREADY_EXISTS'
  | 'RATE_LIMITED' | 'SESSION_EXPIRED' | 'ROOM_UNAVAILABLE' | 'DRAINING' | 'UNAVAILABLE' | 'TIMEOUT' | 'INTERNAL'
  | 'CONNECTION_CLOSED';

export class GatewayError extends Error {
  override readonly name = 'GatewayError';

  constructor(
    readonly code: ErrorCode | string,
    message: string,
    readonly retryAfterMs = 0,
  ) {
    super(message);
  }
}
