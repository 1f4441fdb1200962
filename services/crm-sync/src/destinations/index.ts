import type { z } from 'zod';
import { PostgresDestination, postgresConfigSchema, postgresSecretsSchema } from './postgres.js';
import { S3Destination, s3ConfigSchema, s3SecretsSchema } from './s3.js';
import { SalesforceDestination, salesforceConfigSchema, salesforceSecretsSchema } from './salesforce.js';
import type { Destination, DestinationDeps } from './types.js';
import { ZendeskDestination, zendeskConfigSchema, zendeskSecretsSchema } from './zendesk.js';

export interface DestinationType<C extends z.ZodType, S extends z.ZodType> {
  /** Settings shown back to the tenant. */
  config: C;
  /** Credentials: sealed at rest, never shown. */
  secrets: S;
  create(config: z.infer<C>, secrets: z.infer<S>, deps: DestinationDeps): Destination;
  /** The hosts the settings send crm-sync to (checked against the destination network). */
  hosts(config: z.infer<C>): string[];
}

const hostOf = (url: string) => new URL(url).hostname;

const define = <C extends z.ZodType, S extends z.ZodType>(type: DestinationType<C, S>) => type;

/** Every destination type a tenant can connect: one entry per adapter. */
export const destinationTypes = {
  postgres: define({
    config: postgresConfigSchema,
    secrets: postgresSecretsSchema,
    create: (config, secrets, deps) => new PostgresDestination(config, secrets, deps.network, Math.min(60_000, deps.maxRequestTimeoutMs)),
    hosts: (config) => [config.host],
  }),
  // Without an endpoint the client goes to AWS's own endpoints.
  s3: define({
    config: s3ConfigSchema,
    secrets: s3SecretsSchema,
    create: (config, secrets, deps) => new S3Destination(config, secrets, deps),
    hosts: (config) => (config.endpoint ? [hostOf(config.endpoint)] : []),
  }),
  // The instance URL the token response names is checked when it arrives.
  salesforce: define({
    config: salesforceConfigSchema,
    secrets: salesforceSecretsSchema,
    create: (config, secrets, deps) => new SalesforceDestination(config, secrets, deps),
    hosts: (config) => [hostOf(config.loginUrl)],
  }),
  zendesk: define({
    config: zendeskConfigSchema,
    secrets: zendeskSecretsSchema,
    create: (config, secrets, deps) => new ZendeskDestination(config, secrets, deps),
    hosts: (config) => [hostOf(config.subdomainUrl)],
  }),
};

export type DestinationTypeName = keyof typeof destinationTypes;
