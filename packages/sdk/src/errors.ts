import { ErrorCode as ServerErrorCode } from '@gateway/common/errors';

/**
 * Error codes an app can meet: the ones the server sends in error responses (the platform's
 * own list; that module has no Node dependencies, so the bundle can include it) plus the SDK's
 * own, for things that happen on the client's side of the socket.
 */
export const ErrorCode = {
  ...ServerErrorCode,
  /** A chat message longer than the server accepts (4,000 characters by default). */
  MESSAGE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  /** The WebSocket closed (or was never open) while a request needed it. */
  CONNECTION_CLOSED: 'CONNECTION_CLOSED',
  /** The room was left or disconnected for good; make a new one with connect(). */
  ROOM_CLOSED: 'ROOM_CLOSED',
  /** The browser lacks something the SDK needs (WebSocket, WebRTC, a capture API). */
  UNSUPPORTED: 'UNSUPPORTED',
  /**
   * The user (or the browser's settings, or the page's permissions policy) refused access to a
   * camera, microphone or screen, or dismissed the screen picker. Unlike PERMISSION_DENIED (what
   * the join token does not allow), asking the user again may help.
   */
  DEVICE_PERMISSION_DENIED: 'DEVICE_PERMISSION_DENIED',
  /** No such device: none of that kind, the chosen one is gone, or none matches (a rear camera on a laptop). */
  DEVICE_NOT_FOUND: 'DEVICE_NOT_FOUND',
  /** Gateway.preflight(): ICE did not connect to the media server (neither UDP nor TCP got through). */
  MEDIA_UNREACHABLE: 'MEDIA_UNREACHABLE',
  /** The device exists but cannot be opened: another application (or tab) holds it, or the hardware failed. */
  DEVICE_IN_USE: 'DEVICE_IN_USE',
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
