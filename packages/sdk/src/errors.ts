/**
 * Error codes an app can meet: the ones the server sends in error responses (the same list as
 * the platform's ErrorCode, which lives in a Node-only package the SDK cannot import) plus the
 * SDK's own, for things that happen on the client's side of the socket.
 */
export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  MALFORMED_MESSAGE: 'MALFORMED_MESSAGE',
  UNKNOWN_METHOD: 'UNKNOWN_METHOD',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  NOT_JOINED: 'NOT_JOINED',
  ALREADY_JOINED: 'ALREADY_JOINED',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  RATE_LIMITED: 'RATE_LIMITED',
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  ROOM_UNAVAILABLE: 'ROOM_UNAVAILABLE',
  DRAINING: 'DRAINING',
  UNAVAILABLE: 'UNAVAILABLE',
  TIMEOUT: 'TIMEOUT',
  INTERNAL: 'INTERNAL',
  // The SDK's own.
  /** The WebSocket closed (or was never open) while a request needed it. */
  CONNECTION_CLOSED: 'CONNECTION_CLOSED',
  /** The room was left or disconnected for good; make a new one with connect(). */
  ROOM_CLOSED: 'ROOM_CLOSED',
  /** The browser lacks something the SDK needs (WebSocket, WebRTC, a capture API). */
  UNSUPPORTED: 'UNSUPPORTED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Every error the SDK rejects with or reports: a stable `code` to branch on, and a message. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  /** Set with RATE_LIMITED: when to try again. */
  readonly retryAfterMs: number;

  constructor(
    readonly code: ErrorCode | (string & {}),
    message: string,
    options: { cause?: unknown; retryAfterMs?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.retryAfterMs = options.retryAfterMs ?? 0;
  }

  /** Wraps anything thrown (a DOMException from getUserMedia, say) keeping GatewayErrors as they are. */
  static from(error: unknown, fallback: ErrorCode = ErrorCode.INTERNAL): GatewayError {
    if (error instanceof GatewayError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new GatewayError(fallback, message, { cause: error });
  }
}

export function hasCode(error: unknown, ...codes: string[]): boolean {
  return error instanceof GatewayError && codes.includes(error.code);
}
