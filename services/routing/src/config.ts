import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { adminOriginsShape, env, loadConfig, natsShape, readKeyringSettings, readNatsSettings, readTenantsSettings, tenantKeysShape, tenantsShape } from '@gateway/common';

const seconds = (fallback: number, max = 3_600) => z.coerce.number().min(0.1).max(max).default(fallback);

const shape = {
  ...natsShape,
  LOG_LEVEL: env.logLevel(),
  ...tenantsShape,
  ...tenantKeysShape,
  ROUTING_REPLICA_ID: env.string(`routing-${os.hostname()}-${randomBytes(3).toString('hex')}`),
  /** The tenants' admin API (the directory: people, teams, queues, routing profiles). */
  ROUTING_HOST: env.string('0.0.0.0'),
  ROUTING_PORT: env.port(8091),
  ROUTING_OPS_PORT: env.port(9105),
  /** The origins whose pages (the admin page) may call the admin API from a browser. */
  ...adminOriginsShape,
  /** An offer not answered within this goes to the next agent. */
  ROUTING_OFFER_TIMEOUT_SECONDS: seconds(15, 300),
  /** Offers in a row an agent lets time out before being set away. */
  ROUTING_MISSED_OFFERS_BEFORE_AWAY: z.coerce.number().int().min(1).max(20).default(2),
  /** An agent's app not reported by signaling for this long is taken as gone: its offer moves on. */
  ROUTING_PRESENCE_TIMEOUT_SECONDS: seconds(15, 300),
  /** A gone agent's app may come back within this and resume; after it the agent is offline. */
  ROUTING_AGENT_GRACE_SECONDS: seconds(60),
  /** A gone end user's app may come back within this and keep its place; after it the contact is abandoned. */
  ROUTING_END_USER_GRACE_SECONDS: seconds(60),
  /** How often time is looked at (offers timing out, overflow, callbacks, presence). */
  ROUTING_TICK_MS: z.coerce.number().int().min(50).max(5_000).default(500),
  /** How often a replica tries to take the leases of tenants nobody holds. */
  ROUTING_LEASE_POLL_MS: z.coerce.number().int().min(100).max(60_000).default(2_000),
};

export type RoutingConfig = ReturnType<typeof readRoutingConfig>;

export function readRoutingConfig(source: Record<string, string | undefined> = process.env) {
  const c = loadConfig(shape, source);
  return {
    nats: readNatsSettings(c, 'routing'),
    logLevel: c.LOG_LEVEL,
    /** The tenants at start-up and their file: the service keeps them current (ConfiguredTenants). */
    tenants: readTenantsSettings(c),
    keyring: readKeyringSettings(c),
    replicaId: c.ROUTING_REPLICA_ID,
    host: c.ROUTING_HOST,
    port: c.ROUTING_PORT,
    adminAllowedOrigins: c.ADMIN_ALLOWED_ORIGINS,
    opsPort: c.ROUTING_OPS_PORT,
    engine: { offerTimeoutMs: Math.round(c.ROUTING_OFFER_TIMEOUT_SECONDS * 1000), missedOffersBeforeAway: c.ROUTING_MISSED_OFFERS_BEFORE_AWAY },
    tenant: {
      presenceTimeoutMs: Math.round(c.ROUTING_PRESENCE_TIMEOUT_SECONDS * 1000),
      agentGraceMs: Math.round(c.ROUTING_AGENT_GRACE_SECONDS * 1000),
      endUserGraceMs: Math.round(c.ROUTING_END_USER_GRACE_SECONDS * 1000),
      tickMs: c.ROUTING_TICK_MS,
      queueViewMs: 1_000,
    },
    leasePollMs: c.ROUTING_LEASE_POLL_MS,
  };
}
