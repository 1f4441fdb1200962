import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { ErrorCode, GatewayError } from '../errors.js';

/**
 * What a client (an SDK, a customer's backend) is told of a failure, decided once at each public
 * boundary. Codes whose messages can carry internal detail (a gRPC peer's address, a library's
 * text, a database's words) get a fixed text instead, and the details go to the log under a
 * reference the client can quote to support.
 */
const genericMessages: Partial<Record<ErrorCode, string>> = {
  INTERNAL: 'internal error',
  CONFIG_INVALID: 'internal error',
  UNAVAILABLE: 'a service this request needs is unavailable; try again shortly',
  TIMEOUT: 'the request timed out; try again',
};

export interface ClientError {
  code: ErrorCode;
  message: string;
  /** Quoted in the log line that holds the details; set when the message was replaced. */
  reference?: string;
  retryAfterMs?: number;
}

/** A short random reference for one failure. */
export function newReference(): string {
  return randomBytes(6).toString('hex');
}

/**
 * Maps anything thrown to what the client sees, and logs what it does not see. `context` names
 * the request (method, path, ids), never personal data.
 */
export function toClientError(error: unknown, log: Logger, context: Record<string, unknown> = {}): ClientError {
  const gatewayError = GatewayError.from(error);
  const retryAfterMs = typeof gatewayError.details.retryAfterMs === 'number' && Number.isFinite(gatewayError.details.retryAfterMs) ? gatewayError.details.retryAfterMs : undefined;
  const generic = genericMessages[gatewayError.code];
  if (!generic) return { code: gatewayError.code, message: gatewayError.message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  const reference = newReference();
  const level = gatewayError.code === ErrorCode.INTERNAL || gatewayError.code === ErrorCode.CONFIG_INVALID ? 'error' : 'warn';
  log[level]({ ...context, err: error, code: gatewayError.code, reference }, 'request failed');
  return { code: gatewayError.code, message: `${generic} (reference ${reference})`, reference, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
}
