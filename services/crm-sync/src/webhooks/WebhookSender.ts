import { setTimeout as sleep } from 'node:timers/promises';
import { AckPolicy, jetstream, type ConsumerMessages, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Counter, Histogram, type Registry } from 'prom-client';
import { Webhook } from 'standardwebhooks';
import { request } from 'undici';
import { z } from 'zod';
import { backoffDelayMs, GatewayError, natsHeadersWithTrace, streams, subjects, WEBHOOKS_DURABLE, webhookEventSchema, type Logger, type NatsConnection, type WebhookEvent } from '@gateway/common';
import { destinationConnections, ownCause, type DestinationConnections, type DestinationNetwork } from '../destinations/network.js';
import type { WebhookStore } from './WebhookStore.js';

export interface WebhookSenderOptions {
  /** Posts in flight at once, all tenants together. */
  concurrency: number;
  /** Posts of one tenant in flight at once: a tenant whose endpoint hangs holds no more. */
  tenantConcurrency: number;
  /** Attempts of one event at one endpoint before it is given up on. */
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** One post's answer must come within this. */
  requestTimeoutMs: number;
}

/** The largest event body read back from the stream (the stream's own limit is larger). */
const MAX_EVENT_BYTES = 32 * 1024;
const subjectPattern = /^gateway\.([A-Za-z0-9_-]{1,64})\.webhook\.(?:event|delivery\.([A-Za-z0-9_-]{1,64}))$/;
const retryAfterSeconds = z.coerce.number().int().min(0).max(86_400);

/**
 * Posts webhook events to the tenants' endpoints (docs/webhooks.md), from one durable consumer of
 * the webhooks stream that every replica shares:
 *   - an event (`gateway.<tenant>.webhook.event`) is fanned out into one delivery per endpoint
 *     that takes its type (`…webhook.delivery.<webhookId>`, message id `<event>.<webhook>`, so a
 *     fan-out repeated after a crash adds nothing), then erased;
 *   - a delivery is posted, signed the Standard Webhooks way; a 2xx answer settles it (erased,
 *     acknowledged), anything else is tried again with backoff until `maxAttempts`, then given up
 *     (erased, counted, logged). Each endpoint retries on its own: one that fails does not hold
 *     back the others, nor the tenant's other events.
 * Nothing of an event's content is logged: its type and id only.
 */
export class WebhookSender {
  private readonly connections: DestinationConnections;
  private readonly running = new Map<string, number>();
  private inFlight = 0;
  private readonly tasks = new Set<Promise<void>>();
  private readonly freed: Array<() => void> = [];
  private messages: ConsumerMessages | undefined;
  private closed = false;
  private readonly metrics;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly store: WebhookStore,
    network: DestinationNetwork,
    private readonly options: WebhookSenderOptions,
    registry: Registry,
    private readonly log: Logger,
  ) {
    this.connections = destinationConnections(network);
    this.metrics = {
      posts: new Counter({
        name: 'gateway_webhook_deliveries_total',
        help: "Webhook posts to tenants' endpoints by result: delivered, retry (will be tried again), given_up (after the last attempt), dropped (endpoint gone or disabled)",
        labelNames: ['type', 'result'] as const,
        registers: [registry],
      }),
      seconds: new Histogram({
        name: 'gateway_webhook_post_seconds',
        help: "Time of one webhook post, until the endpoint's answer",
        buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [registry],
      }),
      lagSeconds: new Histogram({
        name: 'gateway_webhook_delivered_lag_seconds',
        help: 'From an event to its successful post (retries included)',
        buckets: [0.1, 0.5, 1, 5, 30, 120, 600, 3600, 21_600],
        registers: [registry],
      }),
    };
  }

  async start(): Promise<void> {
    const config = { durable_name: WEBHOOKS_DURABLE, ack_policy: AckPolicy.Explicit, ack_wait: (this.options.requestTimeoutMs + 30_000) * 1e6, max_deliver: -1, max_ack_pending: -1 };
    await this.jsm.consumers.add(streams.webhooks.name, config).catch(async (error) => {
      if (!(await this.jsm.consumers.info(streams.webhooks.name, WEBHOOKS_DURABLE).catch(() => undefined))) throw error;
    });
    void this.consume();
  }

  private async consume(): Promise<void> {
    while (!this.closed) {
      try {
        const consumer = await jetstream(this.nc).consumers.get(streams.webhooks.name, WEBHOOKS_DURABLE);
        this.messages = await consumer.consume({ max_messages: this.options.concurrency });
        for await (const message of this.messages) {
          // One post at a time per slot: the next message is taken once a slot is free.
          while (this.inFlight >= this.options.concurrency && !this.closed) await new Promise<void>((resolve) => this.freed.push(resolve));
          if (this.closed) {
            message.nak();
            break;
          }
          this.accept(message);
        }
      } catch (error) {
        if (this.closed) return;
        this.log.error({ err: error }, 'taking webhook events failed; starting again');
      }
      if (!this.closed) await sleep(1_000);
    }
  }

  private accept(message: JsMsg): void {
    const match = subjectPattern.exec(message.subject);
    const event = match ? this.read(message) : undefined;
    if (!match || !event) {
      this.log.error({ seq: message.seq }, 'a malformed webhook message was erased');
      void this.settle(message);
      return;
    }
    const [, tenant, webhookId] = match as unknown as [string, string, string | undefined];
    if ((this.running.get(tenant) ?? 0) >= this.options.tenantConcurrency) {
      // The tenant's endpoints are busy: back later, without holding a slot.
      message.nak(backoffDelayMs(Math.min(message.info.deliveryCount - 1, 4), { initialMs: 500, maxMs: 5_000 }));
      return;
    }
    this.running.set(tenant, (this.running.get(tenant) ?? 0) + 1);
    this.inFlight++;
    const task = (webhookId ? this.post(message, tenant, webhookId, event) : this.fanOut(message, tenant, event))
      .catch((error: unknown) => {
        this.log.error({ err: error, tenant, eventId: event.id }, 'a webhook message failed unexpectedly; will retry');
        message.nak(this.options.retryBaseMs);
      })
      .finally(() => {
        this.tasks.delete(task);
        const left = (this.running.get(tenant) ?? 1) - 1;
        if (left > 0) this.running.set(tenant, left);
        else this.running.delete(tenant);
        this.inFlight--;
        this.freed.shift()?.();
      });
    this.tasks.add(task);
  }

  /** The event a message carries, checked like any input (anyone allowed to publish there could send anything). */
  private read(message: JsMsg): WebhookEvent | undefined {
    if (message.data.length > MAX_EVENT_BYTES) return undefined;
    try {
      const parsed = webhookEventSchema.safeParse(JSON.parse(new TextDecoder().decode(message.data)));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** One delivery per endpoint that takes the event, then the event goes. */
  private async fanOut(message: JsMsg, tenant: string, event: WebhookEvent): Promise<void> {
    const endpoints = event.type === 'webhook.test' ? [] : await this.store.subscribers(tenant, event.type);
    const js = jetstream(this.nc);
    for (const endpoint of endpoints) {
      await js.publish(subjects.webhookDelivery(tenant, endpoint.webhookId), message.data, { msgID: `${event.id}.${endpoint.webhookId}`, timeout: 10_000, headers: natsHeadersWithTrace() });
    }
    await this.settle(message);
  }

  private async post(message: JsMsg, tenant: string, webhookId: string, event: WebhookEvent): Promise<void> {
    const attempt = message.info.deliveryCount;
    const context = { tenant, webhookId, eventId: event.id, type: event.type, attempt };
    const target = await this.store.target(tenant, webhookId);
    if (!target) {
      this.metrics.posts.inc({ type: event.type, result: 'dropped' });
      this.log.info(context, 'webhook endpoint gone or disabled; event dropped');
      await this.settle(message);
      return;
    }
    const body = Buffer.from(message.data);
    const timestamp = new Date();
    // One signature per secret, space separated: during a rotation receivers verify with either.
    const signature = target.secrets.map((secret) => new Webhook(secret).sign(event.id, timestamp, body)).join(' ');
    const started = performance.now();
    let failure: { reason: string; retryAfterMs?: number } | undefined;
    try {
      const answer = await request(target.webhook.url, {
        method: 'POST',
        dispatcher: this.connections.dispatcher,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Gateway-Webhooks/1',
          'webhook-id': event.id,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
      // The answer's body is not ours to read, only to drain.
      await answer.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      if (answer.statusCode < 200 || answer.statusCode >= 300) {
        const hint = retryAfterSeconds.safeParse(answer.headers['retry-after']);
        failure = { reason: `answered ${answer.statusCode}`, ...(answer.statusCode === 429 && hint.success ? { retryAfterMs: hint.data * 1000 } : {}) };
      }
    } catch (error) {
      const own = ownCause(error);
      failure = { reason: own ? `${own.code}: ${own.message}` : GatewayError.from(error).code === 'INTERNAL' ? 'no answer (network error or timeout)' : GatewayError.from(error).message };
    }
    this.metrics.seconds.observe((performance.now() - started) / 1000);
    if (!failure) {
      this.metrics.posts.inc({ type: event.type, result: 'delivered' });
      this.metrics.lagSeconds.observe(Math.max(0, Date.now() - event.createdAtMs) / 1000);
      this.log.info(context, 'webhook delivered');
      await this.settle(message);
      return;
    }
    if (attempt >= this.options.maxAttempts) {
      this.metrics.posts.inc({ type: event.type, result: 'given_up' });
      this.log.warn({ ...context, reason: failure.reason }, 'webhook given up after its last attempt');
      await this.settle(message);
      return;
    }
    const delayMs = Math.max(backoffDelayMs(attempt - 1, { initialMs: this.options.retryBaseMs, maxMs: this.options.retryMaxMs }), Math.min(failure.retryAfterMs ?? 0, this.options.retryMaxMs));
    this.metrics.posts.inc({ type: event.type, result: 'retry' });
    this.log.warn({ ...context, reason: failure.reason, retryInMs: delayMs }, 'webhook failed; will retry');
    message.nak(delayMs);
  }

  /** Erased from the stream, then acknowledged (an event may name a participant: it goes once done). */
  private async settle(message: JsMsg): Promise<void> {
    await this.jsm.streams.deleteMessage(message.info.stream, message.seq, true).catch((error: unknown) => {
      // Already gone (a repeated settle) is fine; anything else is left to the stream's age limit.
      if (!String((error as Error)?.message ?? error).includes('no message found')) this.log.warn({ err: error, seq: message.seq }, 'erasing a webhook message failed');
    });
    message.ack();
  }

  /** Stops taking messages; posts in flight get `graceMs` to finish (unacknowledged, they come back). Safe to repeat. */
  async close(graceMs = 15_000): Promise<void> {
    this.closed = true;
    this.messages?.stop();
    for (const resolve of this.freed.splice(0)) resolve();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.tasks]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    await this.connections.close();
  }
}
