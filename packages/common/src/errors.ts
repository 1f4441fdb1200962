/**
 * One error type for the whole platform: a stable code, a message safe to show a client,
 * and the underlying cause. Each boundary (WebSocket, gRPC, HTTP) maps codes once, in its
 * own adapter, instead of sprinkling status numbers through domain code.
 */
export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  MALFORMED_MESSAGE: 'MALFORMED_MESSAGE',
  UNKNOWN_METHOD: 'UNKNOWN_METHOD',
  /** An HTTP method the resource does not take; `details.allow` lists those it does. */
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  /** A chat message or upload over its size limit. */
  MESSAGE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  /** An upload whose content is not one of the allowed types (checked by content, not by its declared type). */
  UNSUPPORTED_CONTENT: 'UNSUPPORTED_CONTENT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  TOKEN_EXPIRED: 'TOKEN_EXPIRED',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  NOT_JOINED: 'NOT_JOINED',
  ALREADY_JOINED: 'ALREADY_JOINED',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  RATE_LIMITED: 'RATE_LIMITED',
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  /** The customer's backend removed the participant (or ended the room): its session and its join token are done for good. */
  REMOVED: 'REMOVED',
  /** The room was ended by the customer's backend moments ago; joining it is refused for a short while. */
  ROOM_ENDED: 'ROOM_ENDED',
  ROOM_UNAVAILABLE: 'ROOM_UNAVAILABLE',
  DRAINING: 'DRAINING',
  UNAVAILABLE: 'UNAVAILABLE',
  TIMEOUT: 'TIMEOUT',
  CONFIG_INVALID: 'CONFIG_INVALID',
  /** The operation does not apply in the current state (e.g. resuming a recording that is not paused). */
  INVALID_STATE: 'INVALID_STATE',
  /** A configured limit (transports, consumers, participants, rooms, sessions per token, uploads) is reached. */
  LIMIT_EXCEEDED: 'LIMIT_EXCEEDED',
  /** This node has no capacity left for the work; another node may take it. */
  NO_CAPACITY: 'NO_CAPACITY',
  /** The offer an agent answers is no longer theirs (it timed out, was taken back, or went to another agent). */
  OFFER_MOVED_ON: 'OFFER_MOVED_ON',
  /** A customer's destination (CRM, database, storage) refused or failed a delivery. */
  DESTINATION_FAILED: 'DESTINATION_FAILED',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes = new Set<string>(Object.values(ErrorCode));

/** Error names of the NATS client for a backend that is momentarily out of reach. */
const UNAVAILABLE_ERRORS = new Set(['TimeoutError', 'NoResponders', 'ClosedConnectionError', 'DrainingConnectionError', 'ConnectionError']);

export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ErrorCode;
  /** Extra fields for the client (e.g. retryAfterMs); never personal data. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  static isCode(value: string): value is ErrorCode {
    return knownCodes.has(value);
  }

  /** Wraps anything thrown into a GatewayError, keeping GatewayErrors as they are. */
  static from(error: unknown, fallback: ErrorCode = ErrorCode.INTERNAL): GatewayError {
    if (error instanceof GatewayError) return error;
    const message = error instanceof Error ? error.message : String(error);
    // A backend that did not answer in time, is draining or has no one listening (NATS names its
    // errors so) is a passing outage the client may retry, not a fault of ours.
    if (error instanceof Error && UNAVAILABLE_ERRORS.has(error.name)) return new GatewayError(ErrorCode.UNAVAILABLE, 'a backend did not answer; try again', { cause: error });
    return new GatewayError(fallback, message, { cause: error });
  }
}

/** The HTTP status of each code, for the HTTP boundaries (signaling's routes, crm-sync's admin API). */
const httpStatusByCode: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  MALFORMED_MESSAGE: 400,
  FRAME_TOO_LARGE: 413,
  MESSAGE_TOO_LARGE: 413,
  UNSUPPORTED_CONTENT: 415,
  UNAUTHENTICATED: 401,
  TOKEN_EXPIRED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  ALREADY_EXISTS: 409,
  INVALID_STATE: 409,
  OFFER_MOVED_ON: 409,
  REMOVED: 410,
  ROOM_ENDED: 409,
  RATE_LIMITED: 429,
  LIMIT_EXCEEDED: 429,
  DESTINATION_FAILED: 502,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
};

/** The error of an HTTP method a resource does not take; the boundary answers 405 with an `allow` header. */
export function methodNotAllowed(allowed: readonly string[]): GatewayError {
  return new GatewayError(ErrorCode.METHOD_NOT_ALLOWED, `use ${allowed.join(' or ')}`, { details: { allow: allowed.join(', ') } });
}

export function httpStatusOf(code: ErrorCode): number {
  return httpStatusByCode[code] ?? 500;
}
