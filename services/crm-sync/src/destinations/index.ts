import type { z } from 'zod';
import { PostgresDestination, postgresConfigSchema, postgresSecretsSchema } from './postgres.js';
import type { Destination, DestinationDeps } from './types.js';

export interface DestinationType<C extends z.ZodType, S extends z.ZodType> {
  /** Settings shown back to the tenant. */
  config: C;
  /** Credentials: sealed at rest, never shown. */
  secrets: S;
  create(config: z.infer<C>, secrets: z.infer<S>, deps: DestinationDeps): Destination;
}

const define = <C extends z.ZodType, S extends z.ZodType>(type: DestinationType<C, S>) => type;

/** Every destination type a tenant can connect: one entry per adapter. */
export const destinationTypes = {
  postgres: define({ config: postgresConfigSchema, secrets: postgresSecretsSchema, create: (config, secrets) => new PostgresDestination(config, secrets) }),
};

export type DestinationTypeName = keyof typeof destinationTypes;
