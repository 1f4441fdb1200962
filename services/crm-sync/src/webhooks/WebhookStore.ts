import { randomBytes } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import {
  ErrorCode,
  GatewayError,
  isLiveEntry,
  listEntries,
  newId,
  openJson,
  parseWith,
  schemas,
  sealJson,
  type Keyring,
  type Logger,
  type SealedValue,
  type WebhookEventType,
  webhookEventTypes,
} from '@gateway/common';
import { assertPublicHost, type DestinationNetwork } from '../destinations/network.js';

/** Endpoints one tenant may have. */
export const MAX_WEBHOOKS_PER_TENANT = 10;
/** How long the secret before a rotation still signs, unless the rotation says otherwise (24 h, as Stripe's default roll). */
/**
 * How long a replica reuses a tenant's list of endpoints for fanning events out: a listing is a
 * KV key scan, too costly for every event. A change made through this replica applies at once;
 * one made through another replica within this time.
 */
const SUBSCRIBERS_CACHE_MS = 5_000;
const DEFAULT_OVERLAP_SECONDS = 24 * 3600;
const MAX_OVERLAP_SECONDS = 7 * 24 * 3600;

const eventFilter = z
  .array(z.union([z.literal('*'), z.enum(webhookEventTypes)]))
  .min(1)
  .max(webhookEventTypes.length + 1)
  .transform((events) => [...new Set(events)].sort());

const url = z
  .string()
  .max(2048)
  .refine((value) => URL.canParse(value), 'must be an absolute URL')
  .refine((value) => !URL.canParse(value) || ['https:', 'http:'].includes(new URL(value).protocol), 'must be https')
  .refine((value) => !URL.canParse(value) || (new URL(value).username === '' && new URL(value).password === ''), 'must carry no credentials')
  .refine((value) => !URL.canParse(value) || new URL(value).hash === '', 'must have no fragment');

export const webhookCreateSchema = z.strictObject({
  url,
  /** Event types to receive; ["*"] (the default) for every one, present and future. */
  events: eventFilter.default(['*']),
  description: schemas.text(256).default(''),
  enabled: z.boolean().default(true),
});
export const webhookUpdateSchema = z
  .strictObject({ url: url.optional(), events: eventFilter.optional(), description: schemas.text(256).optional(), enabled: z.boolean().optional() })
  .refine((patch) => Object.keys(patch).length > 0, 'name at least one of url, events, description, enabled');
export const secretRotationSchema = z.strictObject({
  /** Seconds the current secret keeps signing beside the new one (0: it stops at once). */
  overlapSeconds: z.number().int().min(0).max(MAX_OVERLAP_SECONDS).default(DEFAULT_OVERLAP_SECONDS),
});

/** What the admin API shows of an endpoint: never its secrets. */
export interface WebhookView {
  webhookId: string;
  url: string;
  events: string[];
  description: string;
  enabled: boolean;
  createdAtMs: number;
  updatedAtMs: number;
  /** While a rotated-out secret still signs: until when. */
  previousSecretValidUntilMs?: number;
}

interface Secrets {
  current: string;
  previous?: { secret: string; validUntilMs: number };
}

interface StoredWebhook extends Omit<WebhookView, 'previousSecretValidUntilMs'> {
  previousSecretValidUntilMs: number;
  secrets: SealedValue;
}

/** A record as read back from KV: checked before it is shown or used. */
const storedSchema = z.object({
  webhookId: schemas.id(),
  url,
  events: z.array(z.string().max(64)).max(64),
  description: z.string().max(1024),
  enabled: z.boolean(),
  createdAtMs: z.number().int().min(0),
  updatedAtMs: z.number().int().min(0),
  previousSecretValidUntilMs: z.number().int().min(0),
  secrets: z.object({
    wrapped: z.object({ kekId: z.string().min(1).max(256), value: z.string().min(1).max(1024) }),
    value: z.string().min(1).max(4096),
  }),
});
const secretsSchema = z.object({
  current: z.string().regex(/^whsec_[A-Za-z0-9+/=]{20,100}$/),
  previous: z.object({ secret: z.string().regex(/^whsec_[A-Za-z0-9+/=]{20,100}$/), validUntilMs: z.number().int().min(0) }).optional(),
});

/** A signing secret in the Standard Webhooks form: `whsec_` and 32 random bytes in base64. */
function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * Tenants' webhook endpoints, in KV. Each has its own signing secret, sealed with the tenant's
 * key (bound to the tenant and the endpoint) and shown once, when made or rotated.
 */
export class WebhookStore {
  private readonly listed = new Map<string, { atMs: number; webhooks: Promise<WebhookView[]> }>();

  constructor(
    private readonly kv: KV,
    private readonly keyring: Keyring,
    private readonly network: DestinationNetwork,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  private key(tenant: string, webhookId: string): string {
    return `${tenant}.${webhookId}`;
  }

  async create(tenant: string, input: unknown): Promise<{ webhook: WebhookView; secret: string }> {
    const valid = parseWith(webhookCreateSchema, input, 'the body');
    await this.checkUrl(valid.url);
    if ((await this.list(tenant)).length >= MAX_WEBHOOKS_PER_TENANT) {
      throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a tenant has at most ${MAX_WEBHOOKS_PER_TENANT} webhook endpoints`);
    }
    const webhookId = newId('WH');
    const secret = newSecret();
    const at = this.now();
    const stored: StoredWebhook = { webhookId, ...valid, createdAtMs: at, updatedAtMs: at, previousSecretValidUntilMs: 0, secrets: await this.seal(tenant, webhookId, { current: secret }) };
    await this.kv.create(this.key(tenant, webhookId), JSON.stringify(stored));
    this.listed.delete(tenant);
    return { webhook: this.view(stored), secret };
  }

  async get(tenant: string, webhookId: string): Promise<WebhookView> {
    return this.view((await this.stored(tenant, webhookId)).stored);
  }

  async list(tenant: string): Promise<WebhookView[]> {
    const views: WebhookView[] = [];
    for (const entry of await listEntries(this.kv, `${tenant}.*`)) {
      const stored = this.check(entry.key, entry.value);
      if (stored) views.push(this.view(stored));
    }
    return views.sort((a, b) => a.createdAtMs - b.createdAtMs);
  }

  async update(tenant: string, webhookId: string, input: unknown): Promise<WebhookView> {
    const patch = parseWith(webhookUpdateSchema, input, 'the body');
    if (patch.url !== undefined) await this.checkUrl(patch.url);
    return this.change(tenant, webhookId, async (stored) => ({ ...stored, ...patch, updatedAtMs: this.now() }));
  }

  /** A new secret; the one before keeps signing beside it for the overlap, so receivers can switch without losing events. */
  async rotateSecret(tenant: string, webhookId: string, input: unknown): Promise<{ webhook: WebhookView; secret: string }> {
    const { overlapSeconds } = parseWith(secretRotationSchema, input ?? {}, 'the body');
    const secret = newSecret();
    const webhook = await this.change(tenant, webhookId, async (stored) => {
      const old = await this.secretsOf(tenant, stored);
      const validUntilMs = this.now() + overlapSeconds * 1000;
      const secrets: Secrets = overlapSeconds > 0 ? { current: secret, previous: { secret: old.current, validUntilMs } } : { current: secret };
      return { ...stored, updatedAtMs: this.now(), previousSecretValidUntilMs: secrets.previous ? validUntilMs : 0, secrets: await this.seal(tenant, webhookId, secrets) };
    });
    return { webhook, secret };
  }

  async remove(tenant: string, webhookId: string): Promise<void> {
    await this.stored(tenant, webhookId);
    await this.kv.purge(this.key(tenant, webhookId));
    this.listed.delete(tenant);
  }

  /** The enabled endpoints of the tenant that take this type of event. */
  async subscribers(tenant: string, type: WebhookEventType): Promise<WebhookView[]> {
    let cached = this.listed.get(tenant);
    if (!cached || this.now() - cached.atMs > SUBSCRIBERS_CACHE_MS) {
      const fresh = { atMs: this.now(), webhooks: this.list(tenant) };
      this.listed.set(tenant, fresh);
      // A listing that failed is not kept.
      fresh.webhooks.catch(() => this.listed.get(tenant) === fresh && this.listed.delete(tenant));
      cached = fresh;
    }
    return (await cached.webhooks).filter((webhook) => webhook.enabled && (webhook.events.includes('*') || webhook.events.includes(type)));
  }

  /**
   * What a delivery needs: where, and the secrets that sign (the current one first, and the
   * previous one while its overlap lasts). Undefined when the endpoint is gone or disabled.
   */
  async target(tenant: string, webhookId: string): Promise<{ webhook: WebhookView; secrets: string[] } | undefined> {
    const entry = await this.kv.get(this.key(tenant, webhookId));
    if (!isLiveEntry(entry)) return undefined;
    const stored = this.check(entry.key, entry.value);
    if (!stored?.enabled) return undefined;
    const secrets = await this.secretsOf(tenant, stored);
    const signing = [secrets.current, ...(secrets.previous && secrets.previous.validUntilMs > this.now() ? [secrets.previous.secret] : [])];
    return { webhook: this.view(stored), secrets: signing };
  }

  /** Webhook URLs are the tenant's to choose: refused like a connector's host when not public (DestinationNetwork). */
  private async checkUrl(value: string): Promise<void> {
    const parsed = new URL(value);
    if (parsed.protocol !== 'https:' && !this.network.allowPrivate) throw new GatewayError(ErrorCode.BAD_REQUEST, 'url: must be https');
    await assertPublicHost(parsed.hostname, this.network);
  }

  private async change(tenant: string, webhookId: string, edit: (stored: StoredWebhook) => Promise<StoredWebhook>): Promise<WebhookView> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { stored, revision } = await this.stored(tenant, webhookId);
      const next = await edit(stored);
      try {
        await this.kv.update(this.key(tenant, webhookId), JSON.stringify(next), revision);
        this.listed.delete(tenant);
        return this.view(next);
      } catch {
        // Changed meanwhile (another request, another replica): read again.
      }
    }
    throw new GatewayError(ErrorCode.UNAVAILABLE, 'the webhook kept changing; try again');
  }

  private async stored(tenant: string, webhookId: string): Promise<{ stored: StoredWebhook; revision: number }> {
    const entry = await this.kv.get(this.key(tenant, webhookId));
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such webhook');
    const stored = this.check(entry.key, entry.value);
    if (!stored) throw new GatewayError(ErrorCode.INTERNAL, 'the webhook record is unreadable');
    return { stored, revision: entry.revision };
  }

  private check(key: string, value: Uint8Array): StoredWebhook | undefined {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(value));
    } catch {
      parsed = undefined;
    }
    const result = storedSchema.safeParse(parsed);
    // The record's id must be its key's: a record copied under another key is not that endpoint.
    if (result.success && key === `${key.split('.')[0]}.${result.data.webhookId}`) return result.data;
    this.log.error({ key }, 'a webhook record is unreadable; left out');
    return undefined;
  }

  private seal(tenant: string, webhookId: string, secrets: Secrets): Promise<SealedValue> {
    return sealJson(this.keyring, tenant, `webhook:${webhookId}`, secrets);
  }

  private async secretsOf(tenant: string, stored: StoredWebhook): Promise<Secrets> {
    const opened = secretsSchema.safeParse(await openJson<unknown>(this.keyring, tenant, `webhook:${stored.webhookId}`, stored.secrets));
    if (!opened.success) throw new GatewayError(ErrorCode.INTERNAL, "the webhook's secrets are unreadable");
    return opened.data;
  }

  private view({ secrets: _secrets, previousSecretValidUntilMs, ...shown }: StoredWebhook): WebhookView {
    return { ...shown, ...(previousSecretValidUntilMs > this.now() ? { previousSecretValidUntilMs } : {}) };
  }
}
