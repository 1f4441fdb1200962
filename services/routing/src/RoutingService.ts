import http from 'node:http';
import {
  buckets,
  closeHttp,
  ConfiguredTenants,
  hardenHttpServer,
  listenHttp,
  connectNats,
  createKeyring,
  createMetricsRegistry,
  observeKeyring,
  ROUTING_LEASE_TTL_MS,
  openBucket,
  startOpsServer,
  Startup,
  TenantAuth,
  type Logger,
  type ManagedKeyring,
  type NatsConnection,
} from '@gateway/common';
import type { RoutingConfig } from './config.js';
import { RoutingEngine } from './engine/RoutingEngine.js';
import { routingMetrics } from './metrics.js';
import { TenantLease } from './ownership/TenantLease.js';
import { TenantOwner } from './ownership/TenantOwner.js';
import { TenantRouting, type RoutingObserver } from './ownership/TenantRouting.js';
import { DirectoryStore } from './directory/DirectoryStore.js';
import { directoryView } from './directory/view.js';
import { createDirectoryHandler } from './http/directory.js';
import { RoutingRecords } from './state/RoutingRecords.js';

interface Held {
  lease: TenantLease;
  routing: TenantRouting;
  stopWatching: () => void;
}

/**
 * The routing service (docs/routing.md): takes the lease of every tenant nobody holds, and runs
 * the routing of the tenants whose leases it holds. A lease lost (this replica stalled past its
 * age limit) stops that tenant's routing at once; the replica that takes it over loads the tenant
 * from the store.
 */
export class RoutingService {
  port = 0;
  opsPort = 0;
  private readonly held = new Map<string, Held>();
  private readonly starting = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly config: RoutingConfig,
    private readonly configured: ConfiguredTenants,
    private readonly nc: NatsConnection,
    private readonly keyring: ManagedKeyring,
    private readonly leases: Awaited<ReturnType<typeof openBucket>>,
    private readonly records: RoutingRecords,
    private readonly directories: DirectoryStore,
    private readonly observer: RoutingObserver,
    private readonly log: Logger,
    private readonly httpServer: http.Server,
    private readonly stopOps: () => Promise<void>,
  ) {}

  static async start(config: RoutingConfig, log: Logger): Promise<RoutingService> {
    let service: RoutingService | undefined;
    return Startup.run(async (startup) => {
      const nc = startup.opened(await connectNats(config.nats, config.replicaId, log), (connection) => connection.close());
      const keyring = startup.opened(await createKeyring(config.keyring, log), (keys) => keys.close());
      // Tenants given as a file are taken up again when it changes: the next poll takes a new
      // tenant's lease and hands a removed tenant's back.
      const tenants = startup.opened(ConfiguredTenants.start(config.tenants, log), (configured) => configured.close());
      const registry = createMetricsRegistry('routing');
      observeKeyring(registry, keyring);
      const leases = await openBucket(nc, buckets.routingLeases);
      const records = new RoutingRecords(await openBucket(nc, buckets.routingState), (key) => log.error({ key }, 'a routing record is unreadable; left out'));
      const views = () => [...(service?.held.entries() ?? [])].map(([tenant, { routing }]) => ({ tenant, view: routing.queueView() }));
      const metrics = routingMetrics(registry, views);
      const directories = new DirectoryStore(await openBucket(nc, buckets.routingDirectory), log);
      // Any of a tenant's API keys opens its directory, those made through crm-sync's admin API too.
      const credentials = new TenantAuth(() => tenants.current, { kv: await openBucket(nc, buckets.apiKeys), log });
      const httpServer = http.createServer(createDirectoryHandler(credentials, directories, log, config.adminAllowedOrigins));
      hardenHttpServer(httpServer);
      const port = await listenHttp(httpServer, config.port, config.host);
      startup.opened(httpServer, closeHttp);
      const ops = await startOpsServer({ port: config.opsPort, registry, readiness: () => (nc.isClosed() ? 'nats connection closed' : undefined) });
      startup.opened(ops, (server) => server.close());
      const started = new RoutingService(config, tenants, nc, keyring, leases, records, directories, metrics.observer, log, httpServer, ops.close);
      service = started;
      started.port = port;
      started.opsPort = ops.port;
      await started.poll();
      started.timer = setInterval(() => void started.poll(), config.leasePollMs);
      return started;
    });
  }

  /** The tenants this replica decides for now. */
  get tenants(): string[] {
    return [...this.held.keys()];
  }

  /** Takes the lease of each tenant nobody holds, and starts its routing; lets go of tenants no longer configured. */
  private async poll(): Promise<void> {
    if (this.closing) return;
    const configured = new Set(this.configured.current.map((t) => t.name));
    for (const [tenant, held] of this.held) {
      if (configured.has(tenant)) continue;
      this.held.delete(tenant);
      await this.letGo(held).catch((error: unknown) => this.log.warn({ tenant, err: error }, 'letting go of a tenant no longer configured failed; its lease expires'));
      this.log.info({ tenant }, 'the tenant is no longer configured: its routing stopped');
    }
    for (const tenant of configured) {
      if (this.held.has(tenant) || this.starting.has(tenant)) continue;
      this.starting.add(tenant);
      await this.take(tenant)
        .catch((error: unknown) => this.log.warn({ tenant, err: error }, 'could not take up the tenant; trying again'))
        .finally(() => this.starting.delete(tenant));
    }
  }

  private async take(tenant: string): Promise<void> {
    const lease = new TenantLease(this.leases, tenant, this.config.replicaId, { refreshMs: Math.max(500, Math.floor(ROUTING_LEASE_TTL_MS / 3)), ttlMs: ROUTING_LEASE_TTL_MS });
    if (!(await lease.acquire())) return;
    // A tenant without a directory yet has no queues and no agents: its commands are answered
    // (NOT_FOUND, PERMISSION_DENIED), not left to time out.
    const snapshot = await this.directories.snapshot(tenant).catch(async (error: unknown) => {
      await lease.release();
      throw error;
    });
    if (this.closing) {
      await lease.release();
      return;
    }
    const directory = directoryView(snapshot);
    const engine = new RoutingEngine(this.config.engine);
    const owner = new TenantOwner(tenant, this.records, engine);
    const routing = new TenantRouting(tenant, this.nc, owner, directory, this.keyring, this.log, this.config.tenant, this.observer);
    // The tenant's admins change the directory through any replica: the owner takes it up within a second.
    const stopWatching = this.directories.watch(tenant, snapshot.revision, () => {
      this.directories
        .snapshot(tenant)
        .then((changed) => routing.applyDirectory(directoryView(changed)))
        .catch((error: unknown) => this.log.warn({ tenant, err: error }, 'a directory change could not be applied; the next one tries again'));
    });
    const held = { lease, routing, stopWatching };
    lease.on('lost', () => {
      this.log.warn({ tenant }, 'the routing lease was lost; another replica decides for the tenant now');
      stopWatching();
      void routing.close();
      if (this.held.get(tenant) === held) this.held.delete(tenant);
    });
    this.held.set(tenant, held);
    try {
      await routing.start();
      this.log.info({ tenant }, 'routing the tenant');
    } catch (error) {
      this.held.delete(tenant);
      stopWatching();
      await routing.close();
      await lease.release();
      throw error;
    }
  }

  /** Stops a tenant's routing and releases its lease. */
  private async letGo({ lease, routing, stopWatching }: Held): Promise<void> {
    stopWatching();
    await routing.close();
    await lease.release();
  }

  /** Stops deciding and hands every tenant over at once (its lease released). Safe to repeat. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.timer);
      for (const held of this.held.values()) await this.letGo(held);
      this.held.clear();
      await closeHttp(this.httpServer);
      await this.stopOps();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.nc.drain().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
      if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
      this.keyring.close();
      this.configured.close();
    })();
    return this.closing;
  }
}
