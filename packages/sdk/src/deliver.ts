import { ErrorCode, hasCode } from './errors.js';

/** A request cut off by the connection is sent again once reconnected, this many times in all. */
export const DELIVERY_ATTEMPTS = 5;

/**
 * Runs a request that is safe to repeat, waiting for the connection when it is away: cut off
 * (or unanswered), it is sent again once connected. `delivered` checks first whether an earlier
 * attempt went through after all (a resume or rejoin brings back what the server has).
 */
export async function deliver<T>(connection: { whenConnected(): Promise<void> }, send: () => Promise<T>, delivered: () => T | undefined, attempts = DELIVERY_ATTEMPTS): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await connection.whenConnected();
    const done = delivered();
    if (done !== undefined) return done;
    try {
      return await send();
    } catch (error) {
      if (attempt >= attempts || !hasCode(error, ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT)) throw error;
    }
  }
}
