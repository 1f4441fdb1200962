import { ApiClient, type ApiClientOptions, pathOf } from './api.js';
import type { WebhookEventType } from './events.js';

export interface Webhook {
  webhookId: string;
  url: string;
  /** Event types it receives; `*` for all. */
  events: Array<WebhookEventType | '*'>;
  description: string;
  enabled: boolean;
  createdAtMs: number;
  updatedAtMs: number;
  /** While a rotated-out secret still signs: until when. */
  previousSecretValidUntilMs?: number;
}

export interface WebhookSettings {
  url: string;
  /** Default `['*']`: every type, present and future. */
  events?: Array<WebhookEventType | '*'>;
  description?: string;
  enabled?: boolean;
}

export interface Connector {
  name: string;
  type: string;
  config: Record<string, unknown>;
  updatedAtMs: number;
}

/** One of the tenant's API keys made through the admin API (never with its secret, but when made or rotated). */
export interface ApiKey {
  /** Public: the user of HTTP Basic and the `iss` of join tokens (`ak_…`). */
  keyId: string;
  label: string;
  /** A revoked key is refused everywhere, and stays listed for 30 days. */
  status: 'active' | 'revoked';
  createdAtMs: number;
  rotatedAtMs?: number;
  revokedAtMs?: number;
  /** While the secret before the last rotation is still taken: until when. */
  previousSecretValidUntilMs?: number;
}

/** A key with its secret (`sk_…`): only in the answer that made the secret. Keep it where your backend reads it. */
export type ApiKeyWithSecret = ApiKey & { secret: string };

/** Who a data-subject request is about: your external id of them, or their CRM contact id. */
export type DataSubject = { externalId: string } | { crmContactId: string };

/**
 * The tenant's admin API (docs/http-api.md, docs/webhooks.md): API keys, webhook endpoints,
 * connectors (where everything a contact produces is delivered) and data-subject requests.
 */
export class AdminClient {
  private readonly api: ApiClient;

  /** `url`: crm-sync's admin URL. */
  constructor(options: ApiClientOptions) {
    this.api = new ApiClient(options);
  }

  /** The tenant's API keys made here, oldest first (the bootstrap key of the deployment's configuration is not among them). */
  async listApiKeys(): Promise<ApiKey[]> {
    return (await this.api.call<{ apiKeys: ApiKey[] }>('GET', '/v1/api-keys')).apiKeys;
  }

  /** A new API key: `{keyId, secret}` authenticate like any of the tenant's keys (Basic auth, join tokens). The secret is shown this once. */
  async createApiKey(label: string): Promise<ApiKeyWithSecret> {
    return this.api.call('POST', '/v1/api-keys', { label });
  }

  async getApiKey(keyId: string): Promise<ApiKey> {
    return this.api.call('GET', pathOf('v1', 'api-keys', keyId));
  }

  /** A new secret; the old one is still taken beside it for `overlapSeconds` (default a day), so backends can move over without a refused call. */
  async rotateApiKey(keyId: string, options: { overlapSeconds?: number } = {}): Promise<ApiKeyWithSecret> {
    return this.api.call('POST', `${pathOf('v1', 'api-keys', keyId)}/rotate`, options);
  }

  /** Revokes a key: refused from then on (within 5 s everywhere), join tokens it signed included. */
  async revokeApiKey(keyId: string): Promise<void> {
    await this.api.call('DELETE', pathOf('v1', 'api-keys', keyId));
  }

  async listWebhooks(): Promise<Webhook[]> {
    return (await this.api.call<{ webhooks: Webhook[] }>('GET', '/v1/webhooks')).webhooks;
  }

  /** A new endpoint and its signing secret, shown this once: keep it where your receiver reads it. */
  async createWebhook(settings: WebhookSettings): Promise<{ webhook: Webhook; secret: string }> {
    return this.api.call('POST', '/v1/webhooks', settings);
  }

  async getWebhook(webhookId: string): Promise<Webhook> {
    return this.api.call('GET', pathOf('v1', 'webhooks', webhookId));
  }

  async updateWebhook(webhookId: string, changes: Partial<WebhookSettings>): Promise<Webhook> {
    return this.api.call('PATCH', pathOf('v1', 'webhooks', webhookId), changes);
  }

  async deleteWebhook(webhookId: string): Promise<void> {
    await this.api.call('DELETE', pathOf('v1', 'webhooks', webhookId));
  }

  /** A new secret; the old one keeps signing beside it for `overlapSeconds` (default a day), so receivers can move over without losing events. */
  async rotateWebhookSecret(webhookId: string, options: { overlapSeconds?: number } = {}): Promise<{ webhook: Webhook; secret: string }> {
    return this.api.call('POST', `${pathOf('v1', 'webhooks', webhookId)}/rotate-secret`, options);
  }

  /** Sends a `webhook.test` event to the endpoint, signed and retried like any other. */
  async testWebhook(webhookId: string): Promise<{ eventId: string }> {
    return this.api.call('POST', `${pathOf('v1', 'webhooks', webhookId)}/test`);
  }

  async listConnectors(): Promise<Connector[]> {
    return (await this.api.call<{ connectors: Connector[] }>('GET', '/v1/connectors')).connectors;
  }

  /** Creates or replaces a connector (docs/connectors.md says what each type takes). */
  async putConnector(name: string, connector: { type: string; config: Record<string, unknown>; secrets: Record<string, unknown> }): Promise<Connector> {
    return this.api.call('PUT', pathOf('v1', 'connectors', name), connector);
  }

  async getConnector(name: string): Promise<Connector> {
    return this.api.call('GET', pathOf('v1', 'connectors', name));
  }

  async deleteConnector(name: string): Promise<void> {
    await this.api.call('DELETE', pathOf('v1', 'connectors', name));
  }

  /** Connects to the destination and checks the credentials; throws when that fails. */
  async testConnector(name: string): Promise<void> {
    await this.api.call('POST', `${pathOf('v1', 'connectors', name)}/test`);
  }

  /** Everything held about the person, as JSON. */
  async exportDataSubject(subject: DataSubject): Promise<unknown> {
    return this.api.call('GET', '/v1/data-subjects/export', undefined, subject);
  }

  /** Erases everything held about the person, live rooms included. */
  async eraseDataSubject(subject: DataSubject): Promise<unknown> {
    return this.api.call('DELETE', '/v1/data-subjects', undefined, subject);
  }

  /** Corrects contact details held until delivery. */
  async rectifyDataSubject(subject: DataSubject, corrections: { phoneNumber?: string; crmContactId?: string; externalId?: string }): Promise<unknown> {
    return this.api.call('PATCH', '/v1/data-subjects', corrections, subject);
  }
}
