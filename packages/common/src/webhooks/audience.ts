import type { KV } from '@nats-io/kv';
import { WatchedKeys, type KeptEntries } from '../nats/WatchedKeys.js';
import type { Logger } from '../runtime/logger.js';

/** The endpoints' keys (`<tenant>.<webhookId>`) grouped by tenant, so a tenant is looked up, not searched for. */
class EndpointsByTenant implements KeptEntries<true> {
  private readonly byTenant = new Map<string, Set<string>>();

  has(tenant: string): boolean {
    return (this.byTenant.get(tenant)?.size ?? 0) > 0;
  }

  set(key: string): void {
    const [tenant = '', webhookId = ''] = key.split('.');
    const ids = this.byTenant.get(tenant) ?? new Set<string>();
    ids.add(webhookId);
    this.byTenant.set(tenant, ids);
  }

  delete(key: string): void {
    const [tenant = '', webhookId = ''] = key.split('.');
    const ids = this.byTenant.get(tenant);
    ids?.delete(webhookId);
    // A tenant whose last endpoint went is forgotten: the map holds only tenants with endpoints.
    if (ids?.size === 0) this.byTenant.delete(tenant);
  }

  clear(): void {
    this.byTenant.clear();
  }
}

/**
 * The tenants that have webhook endpoints, kept from a watch of the endpoints' bucket (WatchedKeys;
 * headers only: the records and their sealed secrets are not sent by the watch). A publisher
 * skips the events of a tenant without any (most of them, and every join would otherwise store
 * one): nobody would be told of them. An endpoint created is heard of within the watch's
 * delivery, so the events after it reach it; until the watch has read the bucket, and whenever
 * it stopped, every tenant counts as having endpoints (nothing is dropped for not knowing).
 */
export class WebhookAudience {
  private constructor(private readonly watched: WatchedKeys<true, EndpointsByTenant>) {}

  /** Starts watching; resolves once the bucket was read to its end (or at `readyWithinMs`, still publishing for everyone). */
  static async watch(kv: KV, log: Logger, readyWithinMs = 5_000): Promise<WebhookAudience> {
    const watched = await WatchedKeys.watch(kv, {
      values: false,
      // Any live key is an endpoint: its record is the store's to check, not the publisher's.
      check: () => true as const,
      kept: new EndpointsByTenant(),
      failure: "watching the webhook endpoints failed; every tenant's events are published until it runs again",
      log,
      readyWithinMs,
    });
    return new WebhookAudience(watched);
  }

  /** Whether the tenant's events may have anyone to reach. */
  mayHaveEndpoints(tenant: string): boolean {
    return this.watched.current()?.has(tenant) ?? true;
  }

  close(): void {
    this.watched.close();
  }
}
