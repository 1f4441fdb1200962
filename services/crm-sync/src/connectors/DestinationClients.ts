import { ErrorCode, GatewayError, type Logger } from '@gateway/common';
import type { Destination } from '../destinations/types.js';

export interface DestinationClientLimits {
  /** A client nobody used for this long is closed. */
  idleMs: number;
  /**
   * A client older than this is closed once its deliveries end, and made again at the next one:
   * its host is then checked and resolved again (a customer that moves its database is followed).
   */
  maxAgeMs: number;
}

interface Client {
  /** The connector record the client was made from (its hash): a changed record is a new client. */
  revision: string;
  destination: Promise<Destination>;
  /** Deliveries using it now: a retired client is closed when the last one ends. */
  inUse: number;
  createdAtMs: number;
  lastUsedMs: number;
  retired: boolean;
}

/**
 * Destination clients kept between deliveries, one per tenant and connector: an S3 client, a
 * PostgreSQL pool (authenticated, its schema checked once), a Salesforce or Zendesk client. Made
 * at a connector's first delivery, shared by its concurrent deliveries (each destination keeps no
 * per-delivery state), and closed when the connector's record changes (new settings or
 * credentials), when it has been idle for `idleMs`, past `maxAgeMs` and when crm-sync stops.
 * A client that is retired while deliveries use it is closed when the last of them ends.
 */
export class DestinationClients {
  private readonly clients = new Map<string, Client>();
  private readonly sweeper: NodeJS.Timeout;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly limits: DestinationClientLimits,
    private readonly log: Logger,
  ) {
    this.sweeper = setInterval(() => this.closeIdle(), Math.max(1_000, Math.min(limits.idleMs, limits.maxAgeMs) / 2));
    // Idle clients must not keep a stopping process alive.
    this.sweeper.unref();
  }

  /**
   * Runs `work` with the connector's client, made by `create` when there is none for this
   * `revision` of the connector (the one of an earlier revision is retired).
   */
  async use<T>(key: string, revision: string, create: () => Promise<Destination>, work: (destination: Destination) => Promise<T>): Promise<T> {
    if (this.closing) throw new GatewayError(ErrorCode.UNAVAILABLE, 'crm-sync is stopping');
    const now = Date.now();
    let client = this.clients.get(key);
    if (client && (client.revision !== revision || now - client.createdAtMs > this.limits.maxAgeMs)) {
      this.retire(key, client);
      client = undefined;
    }
    if (!client) {
      const made: Client = { revision, destination: create(), inUse: 0, createdAtMs: now, lastUsedMs: now, retired: false };
      // A client that could not be made is not kept: the next delivery tries again.
      made.destination.catch(() => {
        if (this.clients.get(key) === made) this.clients.delete(key);
      });
      this.clients.set(key, made);
      client = made;
    }
    client.inUse++;
    try {
      return await work(await client.destination);
    } finally {
      client.inUse--;
      client.lastUsedMs = Date.now();
      if (client.retired && client.inUse === 0) void this.closeClient(client);
    }
  }

  /** Retires the connector's client (its record changed or went): closed now, or when its deliveries end. */
  forget(key: string): void {
    const client = this.clients.get(key);
    if (client) this.retire(key, client);
  }

  private retire(key: string, client: Client): void {
    if (this.clients.get(key) === client) this.clients.delete(key);
    if (client.retired) return;
    client.retired = true;
    if (client.inUse === 0) void this.closeClient(client);
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const [key, client] of [...this.clients]) {
      if (client.inUse === 0 && (now - client.lastUsedMs > this.limits.idleMs || now - client.createdAtMs > this.limits.maxAgeMs)) this.retire(key, client);
    }
  }

  private async closeClient(client: Client): Promise<void> {
    const destination = await client.destination.catch(() => undefined);
    await destination?.close().catch((error: unknown) => this.log.warn({ code: GatewayError.from(error).code }, 'closing a destination client failed'));
  }

  /**
   * Closes every client, in use or not (deliveries have ended or been given up on by then); a
   * client that does not close within `graceMs` (a pool waiting on a dead database) is left to
   * the process's exit. Safe to repeat.
   */
  close(graceMs = 5_000): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.sweeper);
      const all = [...this.clients.values()];
      this.clients.clear();
      for (const client of all) client.retired = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled(all.map((client) => this.closeClient(client))), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    })();
    return this.closing;
  }
}
