import pg from 'pg';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { Delivery, Destination } from './types.js';

export const postgresConfigSchema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(5432),
  database: z.string().min(1),
  user: z.string().min(1),
  /** Table name prefix inside the schema. */
  schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/).default('public'),
  /** verify-full in production; disable only for a database on the same host. */
  ssl: z.enum(['disable', 'require', 'verify-full']).default('verify-full'),
});
export const postgresSecretsSchema = z.object({ password: z.string().min(1) });

/**
 * Migrations of the customer's database, applied in order under an advisory lock so that
 * several crm-sync replicas never race. Each entry runs once; the table records which ran.
 */
const migrations = (schema: string): string[] => [
  `create table if not exists ${schema}.gateway_sessions (
     delivery_id text primary key,
     kind text not null,
     tenant text not null,
     room text not null,
     started_at timestamptz,
     ended_at timestamptz,
     contacts jsonb not null,
     metadata jsonb not null,
     delivered_at timestamptz not null default now()
   )`,
  `create table if not exists ${schema}.gateway_artifacts (
     artifact_id text primary key,
     delivery_id text not null references ${schema}.gateway_sessions (delivery_id) on delete cascade,
     kind text not null,
     content_type text not null,
     size_bytes bigint not null,
     part integer not null,
     content bytea not null
   )`,
  `create index if not exists gateway_artifacts_delivery on ${schema}.gateway_artifacts (delivery_id)`,
];

/** A customer PostgreSQL database: a row per session (delivery) and per artifact, with its bytes. */
export class PostgresDestination implements Destination {
  private readonly pool: pg.Pool;
  private migrated: Promise<void> | undefined;

  constructor(
    private readonly config: z.infer<typeof postgresConfigSchema>,
    secrets: z.infer<typeof postgresSecretsSchema>,
  ) {
    this.pool = new pg.Pool({
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.user,
      password: secrets.password,
      ssl: config.ssl === 'disable' ? false : { rejectUnauthorized: config.ssl === 'verify-full' },
      max: 4,
      connectionTimeoutMillis: 10_000,
      query_timeout: 60_000,
    });
    // An idle client that loses its connection must not take the process down.
    this.pool.on('error', () => undefined);
  }

  async test(): Promise<void> {
    await this.run(async (client) => {
      await client.query('select 1');
    });
  }

  private migrate(): Promise<void> {
    this.migrated ??= this.run(async (client) => {
      const schema = this.config.schema;
      await client.query('select pg_advisory_lock(hashtext($1))', ['gateway_migrations']);
      try {
        await client.query(`create table if not exists ${schema}.gateway_schema_migrations (version integer primary key, applied_at timestamptz not null default now())`);
        const applied = new Set((await client.query<{ version: number }>(`select version from ${schema}.gateway_schema_migrations`)).rows.map((r) => r.version));
        for (const [index, sql] of migrations(schema).entries()) {
          const version = index + 1;
          if (applied.has(version)) continue;
          await client.query('begin');
          await client.query(sql);
          await client.query(`insert into ${schema}.gateway_schema_migrations (version) values ($1)`, [version]);
          await client.query('commit');
        }
      } finally {
        await client.query('select pg_advisory_unlock(hashtext($1))', ['gateway_migrations']);
      }
    }).catch((error: unknown) => {
      this.migrated = undefined;
      throw error;
    });
    return this.migrated;
  }

  async deliver(delivery: Delivery): Promise<void> {
    await this.migrate();
    const schema = this.config.schema;
    // Read the bytes before opening the transaction, so it stays short.
    const contents = await Promise.all(delivery.artifacts.map((a) => a.read()));
    await this.run(async (client) => {
      await client.query('begin');
      try {
        // Idempotent: a redelivery after a crash inserts nothing twice.
        await client.query(
          `insert into ${schema}.gateway_sessions (delivery_id, kind, tenant, room, started_at, ended_at, contacts, metadata)
           values ($1, $2, $3, $4, to_timestamp($5::double precision / 1000), to_timestamp($6::double precision / 1000), $7, $8)
           on conflict (delivery_id) do nothing`,
          [delivery.deliveryId, delivery.kind, delivery.tenant, delivery.room, delivery.startedAtMs, delivery.endedAtMs, JSON.stringify(delivery.contacts), JSON.stringify(delivery.metadata)],
        );
        for (const [index, artifact] of delivery.artifacts.entries()) {
          await client.query(
            `insert into ${schema}.gateway_artifacts (artifact_id, delivery_id, kind, content_type, size_bytes, part, content)
             values ($1, $2, $3, $4, $5, $6, $7) on conflict (artifact_id) do nothing`,
            [artifact.artifactId, delivery.deliveryId, artifact.kind, artifact.contentType, artifact.sizeBytes, artifact.part, contents[index]],
          );
        }
        await client.query('commit');
      } catch (error) {
        await client.query('rollback').catch(() => undefined);
        throw error;
      }
    });
  }

  /** Runs with a pooled client; database errors become DESTINATION_FAILED without their details (they may quote data). */
  private async run<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `cannot connect to the database: ${describe(error)}`, { cause: error });
    }
    // A connection the server drops while it is checked out emits 'error' on the client; the
    // query in flight fails on its own, and the event must not take the process down.
    const onError = () => undefined;
    client.on('error', onError);
    let broken: Error | undefined;
    try {
      return await work(client);
    } catch (error) {
      broken = error as Error;
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the database refused the delivery: ${describe(error)}`, { cause: error });
    } finally {
      client.off('error', onError);
      // After a failure the connection may be dead: destroy it rather than pool it.
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }
}

/** The error's class and SQLSTATE, never its message text (it can contain values). */
function describe(error: unknown): string {
  const code = (error as { code?: string }).code;
  return code ? `SQLSTATE ${code}` : error instanceof Error ? error.name : 'unknown error';
}
