import { KvWatchInclude, type KV } from '@nats-io/kv';
import { liveKeys } from '../nats/connection.js';
import type { Logger } from '../runtime/logger.js';

/**
 * The tenants that have webhook endpoints, kept from a watch of the endpoints' bucket (keys
 * `<tenant>.<webhookId>`, headers only: the records and their sealed secrets are not read).
 * A publisher skips the events of a tenant without any (most of them, and every join would
 * otherwise store one): nobody would be told of them. An endpoint created is heard of within the
 * watch's delivery, so the events after it reach it; until the watch has read the bucket, and
 * whenever it stopped, every tenant counts as having endpoints (nothing is dropped for not
 * knowing).
 */
export class WebhookAudience {
  private readonly endpoints = new Map<string, Set<string>>();
  private current = false;
  private stopped = false;
  private stopWatch: (() => void) | undefined;

  private constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Starts watching; resolves once the bucket was read to its end (or at `readyWithinMs`, still publishing for everyone). */
  static async watch(kv: KV, log: Logger, readyWithinMs = 5_000): Promise<WebhookAudience> {
    const audience = new WebhookAudience(kv, log);
    await Promise.race([audience.run(), new Promise((resolve) => setTimeout(resolve, readyWithinMs).unref())]);
    return audience;
  }

  /** Whether the tenant's events may have anyone to reach. */
  mayHaveEndpoints(tenant: string): boolean {
    return !this.current || (this.endpoints.get(tenant)?.size ?? 0) > 0;
  }

  close(): void {
    this.stopped = true;
    this.current = false;
    this.stopWatch?.();
  }

  /**
   * Resolves when the bucket was read (its keys listed, with the changes heard since the watch
   * started applied over them); keeps watching, and starts again after a failure, in the
   * background.
   */
  private run(): Promise<void> {
    return new Promise((caughtUp) => {
      const follow = async (): Promise<void> => {
        // Changes from now on first, then the listing: no change falls between the two.
        const watch = await this.kv.watch({ headers_only: true, include: KvWatchInclude.UpdatesOnly });
        this.stopWatch = () => watch.stop();
        const changed = new Set<string>();
        const listing = liveKeys(this.kv).then((keys) => {
          for (const key of keys) if (!changed.has(key)) this.apply(key, true);
          this.current = true;
          caughtUp();
        });
        this.endpoints.clear();
        listing.catch(() => watch.stop());
        for await (const entry of watch) {
          changed.add(entry.key);
          this.apply(entry.key, entry.operation === 'PUT');
        }
        await listing;
      };
      const loop = async () => {
        while (!this.stopped) {
          try {
            await follow();
          } catch (error) {
            this.log.warn({ err: error }, "watching the webhook endpoints failed; every tenant's events are published until it runs again");
          }
          this.current = false;
          if (!this.stopped) await new Promise((r) => setTimeout(r, 1_000));
        }
      };
      void loop();
    });
  }

  private apply(key: string, present: boolean): void {
    const [tenant = '', webhookId = ''] = key.split('.');
    const ids = this.endpoints.get(tenant) ?? new Set<string>();
    if (present) ids.add(webhookId);
    else ids.delete(webhookId);
    if (ids.size > 0) this.endpoints.set(tenant, ids);
    else this.endpoints.delete(tenant);
  }
}
