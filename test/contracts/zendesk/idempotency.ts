import type http from 'node:http';
import { drain, parseJsonObject, readBody } from '../http.js';
import type { Account } from './account.js';
import { errorBody, type Reply } from './responses.js';

/**
 * "Idempotency" (Ticketing API introduction): Create Ticket takes an `Idempotency-Key` header.
 * The first request with a key is processed and answered with `x-idempotency-lookup: miss`; a
 * later one with the same key and the same payload is answered with the first one's response and
 * `x-idempotency-lookup: hit`, and creates nothing; the same key with another payload is refused
 * with 400 `IdempotentRequestError`. Keys expire two hours after their first use, then a request
 * with the key is a first one again. Keys belong to the account.
 *
 * Where the documentation is silent, the reading least kind to a client:
 * - a request with a key whose first request is still being processed is refused with 409
 *   Conflict (nothing is created, nothing stored): a client cannot count on waiting for, or on
 *   getting, the first one's answer;
 * - the first request's answer is kept whatever it was (a 422 included), so a request that failed
 *   is not processed again under its key: resent as it was, it gets the same failure;
 * - payloads are compared byte for byte, as sent.
 * A request refused before it reached the endpoint (rate limit, authentication) used no key.
 */

/** "Idempotency keys expire after two hours." */
export const IDEMPOTENCY_KEY_LIFETIME_MS = 2 * 60 * 60_000;

interface KeyUse {
  /** Undefined while the first request is being processed. */
  payload: Buffer | undefined;
  /** The first request's answer as it was sent then (a snapshot: later changes to the ticket do not show). */
  reply: { status: number; body: Buffer; headers: Record<string, string> } | undefined;
  expiresAtMs: number;
}

export class IdempotencyKeys {
  private readonly uses = new Map<string, KeyUse>();

  constructor(private readonly account: Account) {}

  /** Runs `create` on the request's JSON body once per key and payload, as Zendesk does. */
  async once(key: string, req: http.IncomingMessage, create: (body: Record<string, unknown> | undefined) => Reply): Promise<Reply> {
    const now = this.account.now();
    const earlier = this.uses.get(key);
    if (earlier && earlier.expiresAtMs > now) {
      if (!earlier.reply) {
        await drain(req);
        return { status: 409, body: errorBody('Conflict', 'A request with this idempotency key is still being processed') };
      }
      const payload = await readBody(req);
      if (!payload.equals(earlier.payload!)) {
        return { status: 400, body: errorBody('IdempotentRequestError', "Request parameters don't match the given idempotency key") };
      }
      return { status: earlier.reply.status, body: earlier.reply.body, headers: { ...earlier.reply.headers, 'x-idempotency-lookup': 'hit' } };
    }
    // The key is held from the moment the request arrives: its body may still be on its way.
    const use: KeyUse = { payload: undefined, reply: undefined, expiresAtMs: now + IDEMPOTENCY_KEY_LIFETIME_MS };
    this.uses.set(key, use);
    let payload: Buffer | undefined;
    try {
      payload = await readBody(req, 1024 * 1024);
    } catch (error) {
      // The body never arrived whole: nothing was processed, the key stays free.
      this.uses.delete(key);
      throw error;
    }
    const reply = create(payload && parseJsonObject(payload));
    const headers = reply.headers ?? {};
    use.payload = payload ?? Buffer.alloc(0);
    use.reply = { status: reply.status, body: Buffer.from(JSON.stringify(reply.body)), headers };
    return { ...reply, headers: { ...headers, 'x-idempotency-lookup': 'miss' } };
  }
}
