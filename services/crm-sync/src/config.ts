import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  type ConfiguredTenants,
  OBJECT_WRITE_MS,
  adminOriginsShape,
  env,
  loadConfig,
  natsShape,
  opsDrainShape,
  readNatsSettings,
  readKeyringSettings,
  readTenantsSettings,
  tenantKeysShape,
  tenantsShape,
} from '@gateway/common';

const shape = {
  ...natsShape,
  LOG_LEVEL: env.logLevel(),
  ...tenantsShape,
  ...tenantKeysShape,
  CRM_SYNC_NODE_ID: env.string(`crm-${os.hostname()}-${randomBytes(3).toString('hex')}`),
  /** The tenants' admin API (connectors). */
  CRM_SYNC_HOST: env.string('0.0.0.0'),
  CRM_SYNC_PORT: env.port(8090),
  CRM_SYNC_OPS_PORT: env.port(9103),
  /** The origins whose pages (the admin page) may call the admin API from a browser. */
  ...adminOriginsShape,
  /** Deliveries in progress at once, all tenants together. */
  CRM_SYNC_CONCURRENCY: env.positiveInt(8),
  /** Deliveries of one tenant in progress at once (per replica): a tenant whose destination hangs holds no more. */
  CRM_SYNC_TENANT_CONCURRENCY: env.positiveInt(2),
  /**
   * Events of one tenant a replica holds waiting for a slot (marked in progress), beyond its
   * running ones; a busier tenant's further events are handed back to JetStream for later.
   */
  CRM_SYNC_TENANT_BACKLOG: env.positiveInt(1_000),
  /** Events a replica holds waiting for a slot, all tenants together. */
  CRM_SYNC_BACKLOG: env.positiveInt(4_000),
  /** The longest crm-sync waits for one answer from a destination, whatever timeout the tenant set. */
  CRM_SYNC_DESTINATION_TIMEOUT_MAX_SECONDS: z.coerce.number().int().min(1).max(600).default(120),
  /** A failed connector test is answered this long after it began, whatever the failure (and a test still running then fails). */
  CRM_SYNC_CONNECTOR_TEST_SECONDS: z.coerce.number().min(0.1).max(120).default(10),
  /** First retry delay; each later one doubles, with jitter, up to the maximum. */
  CRM_SYNC_RETRY_BASE_SECONDS: z.coerce.number().positive().default(2),
  CRM_SYNC_RETRY_MAX_SECONDS: z.coerce.number().positive().default(600),
  /** How long JetStream waits for a delivery's answer before handing it out again. */
  CRM_SYNC_ACK_WAIT_SECONDS: env.positiveInt(300),
  /** On SIGTERM, how long deliveries under way get to finish (a stuck one is handed out again later); within the Pod's termination grace. */
  CRM_SYNC_STOP_GRACE_SECONDS: z.coerce.number().min(0).max(60).default(20),
  /**
   * Whether tenants' destinations may be on private, loopback or link-local addresses. Off in
   * production: a tenant could otherwise aim crm-sync at the platform's own network. On for a
   * single machine (`make up`, tests) and where customer databases are peered into the network.
   */
  CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS: env.boolean(false),
  /** Days a communication may wait for delivery before it is deleted undelivered (a tenant's retentionDays overrides it). */
  CRM_SYNC_RETENTION_DAYS: z.coerce.number().positive().max(365).default(7),
  /** Webhook posts in flight at once, all tenants together, and of one tenant (docs/webhooks.md). */
  CRM_SYNC_WEBHOOK_CONCURRENCY: env.positiveInt(16),
  CRM_SYNC_WEBHOOK_TENANT_CONCURRENCY: env.positiveInt(4),
  /** Attempts at one endpoint before an event is given up on; with the delays below, about 10 hours. */
  CRM_SYNC_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(15),
  /** First webhook retry delay; each later one doubles, with jitter, up to the maximum. */
  CRM_SYNC_WEBHOOK_RETRY_BASE_SECONDS: z.coerce.number().positive().default(5),
  CRM_SYNC_WEBHOOK_RETRY_MAX_SECONDS: z.coerce.number().positive().default(7_200),
  /** An endpoint's answer must come within this. */
  CRM_SYNC_WEBHOOK_TIMEOUT_SECONDS: z.coerce.number().min(0.5).max(60).default(10),
  /**
   * The residue scanner's nkey seed (docs/data-lifecycle.md): with it crm-sync scans NATS every
   * CRM_SYNC_RESIDUE_SCAN_MINUTES as the residue identity, exports gateway_residue_items and
   * answers GET /residue and POST /residue/sweep on its ops port.
   */
  CRM_SYNC_RESIDUE_NKEY_SEED_FILE: z.string().min(1).optional(),
  CRM_SYNC_RESIDUE_SCAN_MINUTES: z.coerce.number().positive().max(1_440).default(15),
  /** The longest an object write may go without storing a chunk: older chunks no object names are a write's leftovers. */
  CRM_SYNC_RESIDUE_OBJECT_WRITE_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .default(OBJECT_WRITE_MS / 1000),
  /** The token that lets callers other than the pod itself use /residue (Authorization: Bearer). */
  ...opsDrainShape,
};

export type CrmSyncConfig = ReturnType<typeof readCrmSyncConfig>;

export function readCrmSyncConfig(source: Record<string, string | undefined> = process.env) {
  const c = loadConfig(shape, source);
  return {
    nats: readNatsSettings(c, 'crm-sync'),
    logLevel: c.LOG_LEVEL,
    /** The tenants at start-up and their file: the service keeps them current (ConfiguredTenants). */
    tenants: readTenantsSettings(c),
    keyring: readKeyringSettings(c),
    destinationNetwork: { allowPrivate: c.CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS },
    nodeId: c.CRM_SYNC_NODE_ID,
    host: c.CRM_SYNC_HOST,
    port: c.CRM_SYNC_PORT,
    adminAllowedOrigins: c.ADMIN_ALLOWED_ORIGINS,
    opsPort: c.CRM_SYNC_OPS_PORT,
    concurrency: c.CRM_SYNC_CONCURRENCY,
    tenantConcurrency: Math.min(c.CRM_SYNC_TENANT_CONCURRENCY, c.CRM_SYNC_CONCURRENCY),
    backlog: c.CRM_SYNC_BACKLOG,
    tenantBacklog: Math.min(c.CRM_SYNC_TENANT_BACKLOG, c.CRM_SYNC_BACKLOG),
    maxRequestTimeoutMs: c.CRM_SYNC_DESTINATION_TIMEOUT_MAX_SECONDS * 1000,
    connectorTestMs: Math.round(c.CRM_SYNC_CONNECTOR_TEST_SECONDS * 1000),
    retryBaseMs: c.CRM_SYNC_RETRY_BASE_SECONDS * 1000,
    retryMaxMs: c.CRM_SYNC_RETRY_MAX_SECONDS * 1000,
    ackWaitMs: c.CRM_SYNC_ACK_WAIT_SECONDS * 1000,
    stopGraceMs: Math.round(c.CRM_SYNC_STOP_GRACE_SECONDS * 1000),
    webhooks: {
      concurrency: c.CRM_SYNC_WEBHOOK_CONCURRENCY,
      tenantConcurrency: Math.min(c.CRM_SYNC_WEBHOOK_TENANT_CONCURRENCY, c.CRM_SYNC_WEBHOOK_CONCURRENCY),
      maxAttempts: c.CRM_SYNC_WEBHOOK_MAX_ATTEMPTS,
      retryBaseMs: c.CRM_SYNC_WEBHOOK_RETRY_BASE_SECONDS * 1000,
      retryMaxMs: c.CRM_SYNC_WEBHOOK_RETRY_MAX_SECONDS * 1000,
      requestTimeoutMs: c.CRM_SYNC_WEBHOOK_TIMEOUT_SECONDS * 1000,
    },
    residue: c.CRM_SYNC_RESIDUE_NKEY_SEED_FILE
      ? {
          nats: { ...readNatsSettings(c, 'residue'), seedFile: c.CRM_SYNC_RESIDUE_NKEY_SEED_FILE },
          scanMs: c.CRM_SYNC_RESIDUE_SCAN_MINUTES * 60_000,
          objectWriteMs: c.CRM_SYNC_RESIDUE_OBJECT_WRITE_SECONDS * 1000,
        }
      : undefined,
    opsTokenFile: c.OPS_DRAIN_TOKEN_FILE,
    /** A tenant's retentionDays overrides it; read from the tenants as they are at each delivery. */
    retentionDays: c.CRM_SYNC_RETENTION_DAYS,
  };
}

/**
 * How long a tenant's communications may wait for delivery: its retentionDays as configured now
 * (a changed tenants file applies to the next delivery), the deployment's for a tenant without
 * it or no longer configured.
 */
export function tenantRetentionMs(config: Pick<CrmSyncConfig, 'retentionDays'>, tenants: Pick<ConfiguredTenants, 'find'>): (tenant: string) => number {
  return (tenant) => (tenants.find(tenant)?.retentionDays ?? config.retentionDays) * 86_400_000;
}
