import { Webhook, WebhookVerificationError as SignatureError } from 'standardwebhooks';
import type { WebhookEvent } from './events.js';

/** Why a webhook request was refused. */
export type WebhookRefusal = 'MISSING_HEADERS' | 'BAD_SIGNATURE' | 'TIMESTAMP_OUT_OF_RANGE' | 'REPLAYED' | 'MALFORMED';

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  constructor(
    readonly code: WebhookRefusal,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Remembers the requests already taken, to refuse a replay. The key is the event's id with the
 * request's timestamp: a copy of a request sent again by someone else carries both unchanged,
 * while a retry of ours is signed anew with a new timestamp and is let through (the event's id
 * stays the same: deduplicate your processing by it).
 */
export interface SeenEvents {
  /** True when the key was already seen; else remembers it (for at least twice the timestamp tolerance) and returns false. */
  checkAndRemember(key: string): boolean | Promise<boolean>;
}

/** Requests seen by this process in the last `ttlMs` (at most `maxEntries`): enough for one receiver process; several share a store of their own (Redis, a database). */
export class MemorySeenEvents implements SeenEvents {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs = 10 * 60_000,
    private readonly maxEntries = 100_000,
  ) {}

  checkAndRemember(id: string): boolean {
    const now = Date.now();
    for (const [seenId, at] of this.seen) {
      if (now - at <= this.ttlMs && this.seen.size <= this.maxEntries) break;
      this.seen.delete(seenId);
    }
    if (this.seen.has(id)) return true;
    this.seen.set(id, now);
    return false;
  }
}

export interface WebhookReceiverOptions {
  /** How far the `webhook-timestamp` may be from now, in seconds (default 300). */
  toleranceSeconds?: number;
  /** Where taken requests are remembered (default: this process's memory). `null` turns replay refusal off. */
  seen?: SeenEvents | null;
}

const TYPES = new Set(['room.started', 'room.ended', 'participant.joined', 'participant.left', 'track.published', 'recording.ready', 'delivery.succeeded', 'delivery.failed', 'webhook.test']);

/**
 * Verifies the webhooks of one endpoint (docs/webhooks.md): the Standard Webhooks signature
 * (HMAC-SHA256 of `id.timestamp.body` with the endpoint's secret), a timestamp within the
 * tolerance, and a request not taken before (a replay). Give it the raw body, before any JSON parsing: a
 * re-serialized body no longer matches its signature.
 *
 * ```ts
 * const receiver = new WebhookReceiver(process.env.GATEWAY_WEBHOOK_SECRET!);
 * app.post('/gateway-events', express.raw({ type: 'application/json' }), async (req, res) => {
 *   const event = await receiver.receive(req.body, req.headers); // throws WebhookVerificationError
 *   if (event.type === 'recording.ready') ...
 *   res.sendStatus(204);
 * });
 * ```
 */
export class WebhookReceiver {
  private readonly verifiers: Webhook[];
  private readonly toleranceMs: number;
  private readonly seen: SeenEvents | null;

  /** `secrets`: the endpoint's `whsec_…` secret, or several while you move from one to the next. */
  constructor(secrets: string | readonly string[], options: WebhookReceiverOptions = {}) {
    const list = typeof secrets === 'string' ? [secrets] : [...secrets];
    if (list.length === 0) throw new TypeError('give the endpoint secret');
    this.verifiers = list.map((secret) => new Webhook(secret));
    this.toleranceMs = (options.toleranceSeconds ?? 300) * 1000;
    this.seen = options.seen === undefined ? new MemorySeenEvents(Math.max(2 * this.toleranceMs, 60_000)) : options.seen;
  }

  /** The event, once its signature, time and id are checked; throws WebhookVerificationError otherwise. */
  async receive(body: string | Uint8Array, headers: Record<string, string | string[] | undefined> | Headers): Promise<WebhookEvent> {
    const header = (name: string) => {
      const value = headers instanceof Headers ? headers.get(name) : headers[name];
      return Array.isArray(value) ? value[0] : (value ?? undefined);
    };
    const id = header('webhook-id');
    const timestamp = header('webhook-timestamp');
    const signature = header('webhook-signature');
    if (!id || !timestamp || !signature) throw new WebhookVerificationError('MISSING_HEADERS', 'webhook-id, webhook-timestamp and webhook-signature are required');
    const seconds = Number(timestamp);
    if (!/^\d{1,12}$/.test(timestamp) || Math.abs(Date.now() - seconds * 1000) > this.toleranceMs) {
      throw new WebhookVerificationError('TIMESTAMP_OUT_OF_RANGE', 'the webhook-timestamp is too far from now');
    }
    // The timestamp is checked above with our tolerance; the library checks the signature (and its own 5 minutes).
    const signed = { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature };
    let payload: unknown;
    let verified = false;
    for (const verifier of this.verifiers) {
      try {
        payload = verifier.verify(body, signed);
        verified = true;
        break;
      } catch (error) {
        if (!(error instanceof SignatureError)) throw error;
        if (/timestamp/i.test(error.message)) throw new WebhookVerificationError('TIMESTAMP_OUT_OF_RANGE', 'the webhook-timestamp is too far from now');
      }
    }
    if (!verified) throw new WebhookVerificationError('BAD_SIGNATURE', 'no signature matches the secret');
    const event = payload as WebhookEvent | null;
    if (!event || typeof event !== 'object' || event.id !== id || !TYPES.has(event.type) || typeof event.data !== 'object' || event.data === null) {
      throw new WebhookVerificationError('MALFORMED', 'the body is not a webhook event of this version');
    }
    if (this.seen && (await this.seen.checkAndRemember(`${id}.${timestamp}`))) throw new WebhookVerificationError('REPLAYED', 'this request was already received');
    return event;
  }
}
