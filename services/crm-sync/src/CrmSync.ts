import http from 'node:http';
import {
  ApiKeyStore,
  ArtifactStore,
  ConfiguredTenants,
  DeviceKeys,
  createKeyring,
  buckets,
  closeHttp,
  connectNats,
  createMetricsRegistry,
  observeKeyring,
  ensureStream,
  hardenHttpServer,
  listenHttp,
  catalog,
  observeConsumerLag,
  observeStreamSizes,
  streamNameOf,
  openBucket,
  readDrainToken,
  Residue,
  residueMetrics,
  startOpsServer,
  Startup,
  streams,
  TenantAuth,
  WEBHOOKS_DURABLE,
  WebhookAudience,
  WebhookEvents,
  type Logger,
  type ManagedKeyring,
  type NatsConnection,
} from '@gateway/common';
import { tenantRetentionMs, type CrmSyncConfig } from './config.js';
import { Confirmations } from './Confirmations.js';
import { ConnectorStore } from './connectors/ConnectorStore.js';
import { KvContactMaps } from './connectors/ContactMap.js';
import { Deliveries, deliveryConsumers } from './Deliveries.js';
import { DataSubjects } from './DataSubjects.js';
import { createAdminHandler } from './http/admin.js';
import { WebhookSender } from './webhooks/WebhookSender.js';
import { WebhookStore } from './webhooks/WebhookStore.js';

/** crm-sync: takes every finished communication to the tenant's destinations, then deletes it here. */
export class CrmSync {
  port = 0;
  opsPort = 0;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly deliveries: Deliveries,
    private readonly webhookSender: WebhookSender,
    private readonly connectors: ConnectorStore,
    private readonly httpServer: http.Server,
    private readonly stopOps: () => Promise<void>,
    private readonly keyring: ManagedKeyring,
    private readonly tenants: ConfiguredTenants,
    private readonly stopResidue: () => Promise<void>,
  ) {}

  static async start(config: CrmSyncConfig, log: Logger): Promise<CrmSync> {
    const opsToken = readDrainToken(config.opsTokenFile);
    return Startup.run(async (startup) => {
      // Twenty-odd NATS requests per delivery: no caller's stack captured for each (connectNats).
      const nc = startup.opened(await connectNats(config.nats, config.nodeId, log, { asyncTraces: false }), (connection) => connection.close());
      const keyring = startup.opened(await createKeyring(config.keyring, log), (keys) => keys.close());
      // Tenants given as a file are taken up again when it changes: credentials and retention.
      const tenants = startup.opened(ConfiguredTenants.start(config.tenants, log), (configured) => configured.close());
      const retentionMs = tenantRetentionMs(config, tenants);
      const registry = createMetricsRegistry('crm-sync');
      observeKeyring(registry, keyring);
      const contactMaps = new KvContactMaps(await openBucket(nc, buckets.crmContacts));
      const connectors = startup.opened(
        new ConnectorStore(await openBucket(nc, buckets.connectors), keyring, contactMaps, log, config.destinationNetwork, { maxRequestTimeoutMs: config.maxRequestTimeoutMs }),
        (store) => store.close(),
      );
      const confirmations = new Confirmations(await openBucket(nc, buckets.crmConfirmations), log);
      const artifacts = await ArtifactStore.open(nc, keyring);
      await ensureStream(nc, streams.recordings);
      await ensureStream(nc, streams.alerts);
      await ensureStream(nc, streams.audit);
      const jsm = await ensureStream(nc, streams.transcripts);
      await ensureStream(nc, streams.sessions);
      // A delivery's webhook event only for tenants with endpoints: most have none, and each event
      // stored for nobody cost a publish, then a read, a listing, an erasure and an acknowledgement.
      const webhooksBucket = await openBucket(nc, buckets.webhooks);
      const audience = startup.opened(await WebhookAudience.watch(webhooksBucket, log), (watch) => watch.close());
      const deliveries = startup.opened(
        new Deliveries(nc, jsm, connectors, artifacts, keyring, confirmations, { ...config, retentionMs }, registry, log, new WebhookEvents(nc, log, audience)),
        (running) => running.close(),
      );
      await deliveries.start();
      await ensureStream(nc, streams.webhooks);
      const webhooks = new WebhookStore(webhooksBucket, keyring, config.destinationNetwork, log);
      const webhookSender = startup.opened(new WebhookSender(nc, jsm, webhooks, config.destinationNetwork, config.webhooks, registry, log), (sender) => sender.close());
      await webhookSender.start();
      observeConsumerLag(registry, jsm, [...deliveryConsumers, { stream: streams.webhooks.name, durable: WEBHOOKS_DURABLE }]);
      // How full every stream, bucket and object store is (the alert at 80 % reads it).
      observeStreamSizes(registry, jsm, catalog.map(streamNameOf));

      const dataSubjects = new DataSubjects(nc, jsm, artifacts, contactMaps, new DeviceKeys(await openBucket(nc, buckets.deviceKeys)), keyring, confirmations, log);
      // The admin API takes the tenants' API keys kept in NATS too; a change made here applies here at once.
      const apiKeysBucket = await openBucket(nc, buckets.apiKeys);
      const credentials = new TenantAuth(() => tenants.current, { kv: apiKeysBucket, log });
      const apiKeys = new ApiKeyStore(apiKeysBucket, keyring, log, (keyId) => credentials.forget(keyId));
      const httpServer = http.createServer(
        createAdminHandler(credentials, connectors, dataSubjects, webhooks, apiKeys, nc, log, { connectorTestMs: config.connectorTestMs, allowedOrigins: config.adminAllowedOrigins }),
      );
      hardenHttpServer(httpServer);
      const port = await listenHttp(httpServer, config.port, config.host);
      startup.opened(httpServer, closeHttp);
      const residue = config.residue ? startup.opened(await startResidue(config, retentionMs, registry, log), (scanner) => scanner.close()) : undefined;
      const ops = await startOpsServer({
        port: config.opsPort,
        registry,
        readiness: () => (nc.isClosed() ? 'nats connection closed' : undefined),
        drainToken: opsToken,
        ...(residue ? { actions: residue.actions } : {}),
      });
      const service = new CrmSync(nc, deliveries, webhookSender, connectors, httpServer, ops.close, keyring, tenants, residue?.close ?? (async () => undefined));
      service.port = port;
      service.opsPort = ops.port;
      return service;
    });
  }

  /** Stops taking events; deliveries in progress finish (unacknowledged ones come back later). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([this.deliveries.close(), this.webhookSender.close()]);
      await closeHttp(this.httpServer);
      await this.stopOps();
      await this.stopResidue();
      await this.connectors.close();
      // Drained when NATS is there; closed after a while when it is not (draining would wait for it).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.nc.drain().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
      if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
      // Unwrapped keys go with the process, wiped.
      this.keyring.close();
      this.tenants.close();
    })();
    return this.closing;
  }
}

/**
 * The residue scanner, as its own NATS identity (it reads what crm-sync may not, and deletes only
 * residue): a scan every few minutes for the metrics and the alert, and the ops endpoints.
 * Retention is crm-sync's own, so an event waiting longer than its tenant's retention is residue.
 */
async function startResidue(config: CrmSyncConfig, retentionMs: (tenant: string) => number, registry: ReturnType<typeof createMetricsRegistry>, log: Logger) {
  const settings = config.residue!;
  const nc = await connectNats(settings.nats, `${config.nodeId}-residue`, log);
  const residue = await Residue.open(nc).catch(async (error: unknown) => {
    await nc.close();
    throw error;
  });
  const record = residueMetrics(registry);
  const options = { retentionMs, objectWriteMs: settings.objectWriteMs };
  let running: Promise<unknown> = Promise.resolve();
  // One scan or sweep at a time: a sweep right after a scan removes what that scan found.
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const next = running.catch(() => undefined).then(work);
    running = next;
    return next;
  };
  const scan = () =>
    serial(async () => {
      const report = await residue.scan(options);
      record(report);
      if (report.items.length > 0) log.warn({ residue: report.summary }, 'residue found');
      return report;
    });
  const timer = setInterval(() => void scan().catch((error) => log.warn({ err: error }, 'residue scan failed')), settings.scanMs);
  void scan().catch((error) => log.warn({ err: error }, 'residue scan failed'));
  const actions = {
    '/residue': { method: 'GET' as const, run: async () => summaryOf(await scan()) },
    '/residue/sweep': {
      method: 'POST' as const,
      run: async () => {
        const report = await scan();
        const { swept, markersPurged } = await serial(async () => ({ swept: await residue.sweep(report), markersPurged: await residue.sweepMarkers(report) }));
        log.info({ swept, markersPurged }, 'residue swept');
        return { ...summaryOf(await scan()), swept, markersPurged };
      },
    },
  };
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      clearInterval(timer);
      await running.catch(() => undefined);
      await nc.drain().catch(() => undefined);
    })());
  return { actions, close };
}

function summaryOf(report: Awaited<ReturnType<Residue['scan']>>) {
  return { scannedAt: new Date(report.scannedAtMs).toISOString(), durationMs: report.durationMs, entries: report.entries, residue: report.summary, markers: report.markers };
}
