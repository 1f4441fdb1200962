import net from 'node:net';
import pg from 'pg';
import { z } from 'zod';
import { ErrorCode, GatewayError } from '@gateway/common';
import { resolveDestination, type DestinationNetwork } from './network.js';
import { collect, piecesOf } from './streaming.js';
import { contactMetadataOf, type ArtifactContent, type Delivery, type DeliveryArtifact, type Destination } from './types.js';

/**
 * Artifacts up to this size go into `gateway_artifacts.content`, as they always have; larger
 * ones into `gateway_artifact_chunks`, a row per chunk, with `content` left empty: a bytea value
 * holds at most 1 GB and is written and read whole, and recordings run to gigabytes.
 */
export const INLINE_MAX_BYTES = 16 * 1024 * 1024;
/** Bytes per chunk row. */
export const CHUNK_ROW_BYTES = 1024 * 1024;
/**
 * A delivery whose artifacts come to at most this is written in one statement, their bytes
 * held together for it; a larger one in a transaction, an artifact at a time.
 */
const ONE_STATEMENT_MAX_BYTES = 1024 * 1024;

export const postgresConfigSchema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(5432),
  database: z.string().min(1),
  user: z.string().min(1),
  /** Table name prefix inside the schema. */
  schema: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/)
    .default('public'),
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
  // 4: large artifacts in chunk rows. `chunk_count` 0: the bytes are in `content` (as before);
  // above 0: `content` is empty and the bytes are the chunks' `data` in `seq` order (0, 1, ...).
  // `sha256` (hex, of the whole artifact) lets readers check what they put back together.
  `alter table ${schema}.gateway_artifacts
     add column if not exists chunk_count integer not null default 0,
     add column if not exists sha256 text;
   create table if not exists ${schema}.gateway_artifact_chunks (
     artifact_id text not null references ${schema}.gateway_artifacts (artifact_id) on delete cascade,
     seq integer not null,
     data bytea not null,
     primary key (artifact_id, seq)
   )`,
  // 5: contact-center contacts' records, typed (their `gateway_sessions` row, of kind
  // `contact`, holds the same as JSON with the end user's references). `connected_at`,
  // `agent_id`, `disposition` and `notes` are null when the contact had none.
  `create table if not exists ${schema}.gateway_contacts (
     contact_id text primary key,
     delivery_id text not null references ${schema}.gateway_sessions (delivery_id) on delete cascade,
     tenant text not null,
     room text,
     queue_id text not null,
     channel text not null,
     requested_at timestamptz,
     connected_at timestamptz,
     ended_at timestamptz,
     wait_seconds bigint not null,
     handle_seconds bigint not null,
     agent_id text,
     outcome text not null,
     disposition text,
     notes text,
     transfers jsonb not null,
     overflowed_from jsonb not null,
     callback boolean not null,
     delivered_at timestamptz not null default now()
   );
   create index if not exists gateway_contacts_queue on ${schema}.gateway_contacts (queue_id, requested_at)`,
];

/**
 * A customer PostgreSQL database: a row per session (delivery) and per artifact, with its bytes;
 * a contact-center contact's record also gets a typed row in `gateway_contacts`.
 */
export class PostgresDestination implements Destination {
  private pool: Promise<pg.Pool> | undefined;
  private migrated: Promise<void> | undefined;

  constructor(
    private readonly config: z.infer<typeof postgresConfigSchema>,
    private readonly secrets: z.infer<typeof postgresSecretsSchema>,
    private readonly network: DestinationNetwork = { allowPrivate: false },
    private readonly requestTimeoutMs = 60_000,
  ) {}

  /**
   * The pool connects to the address that was checked: the host is resolved once, here, and pg
   * is given that address, with the name kept for TLS (SNI and the certificate's check), so no
   * second resolution can send it elsewhere.
   */
  private connect(): Promise<pg.Pool> {
    this.pool ??= resolveDestination(this.config.host, this.network).then(
      ([first]) => {
        const { config } = this;
        const named = net.isIP(config.host.replace(/^\[(.*)\]$/, '$1')) === 0;
        const pool = new pg.Pool({
          host: first!.address,
          port: config.port,
          database: config.database,
          user: config.user,
          password: this.secrets.password,
          ssl: config.ssl === 'disable' ? false : { rejectUnauthorized: config.ssl === 'verify-full', ...(named ? { servername: config.host } : {}) },
          max: 4,
          connectionTimeoutMillis: Math.min(10_000, this.requestTimeoutMs),
          query_timeout: this.requestTimeoutMs,
        });
        // An idle client that loses its connection must not take the process down.
        pool.on('error', () => undefined);
        // Nor may any other client, at any moment: the pool takes its own 'error' listener off a
        // client before handing it out, and a server that ends the connection in the same packet
        // as its ReadyForQuery (pg_terminate_backend at start-up) emits 'error' before our code
        // runs. A listener for the client's whole life closes that gap; the query in flight
        // still fails on its own, and the pool still drops the dead client.
        pool.on('connect', (client) => client.on('error', () => undefined));
        return pool;
      },
      (error: unknown) => {
        this.pool = undefined;
        throw error;
      },
    );
    return this.pool;
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
    // Each artifact's record is read first (its size is known before a byte is read); the bytes
    // are decrypted and checked only as the statements below take them.
    const contents: ArtifactContent[] = [];
    for (const artifact of delivery.artifacts) contents.push(await artifact.open());
    const bytes = contents.reduce((sum, content) => sum + content.size, 0);
    if (bytes <= ONE_STATEMENT_MAX_BYTES) {
      await this.deliverInOneStatement(delivery, contents);
      return;
    }
    // One transaction per delivery, the artifacts streamed into it: a reader never sees a
    // session with part of its files, and a failure (or an artifact that fails its check) leaves
    // nothing behind.
    await this.run(async (client) => {
      await client.query('begin');
      try {
        // Idempotent: a redelivery after a crash inserts nothing twice.
        await client.query(`${this.sessionInsert(1)} on conflict (delivery_id) do nothing`, this.sessionValues(delivery));
        if (delivery.kind === 'contact') await client.query(`${this.contactInsert(1)} on conflict (contact_id) do nothing`, contactValues(delivery));
        for (const [index, artifact] of delivery.artifacts.entries()) await this.insertArtifact(client, delivery, artifact, contents[index]!);
        await client.query('commit');
      } catch (error) {
        await client.query('rollback').catch(() => undefined);
        throw error;
      }
    });
  }

  /**
   * A delivery with small artifacts, in one statement: the session's row, the contact's and
   * every artifact's, each idempotent (`on conflict do nothing`), written together or not at all
   * (one statement is one transaction, its foreign keys checked at its end), in one round trip
   * instead of four or more (begin, a statement per row, commit). The artifacts' bytes are
   * read, and checked, before the statement is sent: one that fails its check writes nothing.
   */
  private async deliverInOneStatement(delivery: Delivery, contents: ArtifactContent[]): Promise<void> {
    const values: unknown[] = this.sessionValues(delivery);
    const parts: string[] = [];
    if (delivery.kind === 'contact') {
      parts.push(`contact as (${this.contactInsert(values.length + 1)} on conflict (contact_id) do nothing)`);
      values.push(...contactValues(delivery));
    }
    if (delivery.artifacts.length > 0) {
      const rows: string[] = [];
      for (const [index, artifact] of delivery.artifacts.entries()) {
        const content = contents[index]!;
        const first = values.length + 1;
        rows.push(`(${Array.from({ length: ARTIFACT_COLUMNS }, (_, n) => `$${first + n}`).join(', ')})`);
        values.push(...artifactValues(delivery, artifact, content.size, await collect(content.chunks), 0, content.sha256));
      }
      parts.push(`artifacts as (${this.artifactInsert()} values ${rows.join(', ')} on conflict (artifact_id) do nothing)`);
    }
    const ctes = parts.length > 0 ? `with ${parts.join(', ')} ` : '';
    await this.run(async (client) => {
      await client.query(`${ctes}${this.sessionInsert(1)} on conflict (delivery_id) do nothing`, values);
    });
  }

  /** The session's row, its parameters numbered from `first` (8 of them, `sessionValues`). */
  private sessionInsert(first: number): string {
    const at = (n: number) => `to_timestamp($${first + n}::double precision / 1000)`;
    const p = (n: number) => `$${first + n}`;
    return `insert into ${this.config.schema}.gateway_sessions (delivery_id, kind, tenant, room, started_at, ended_at, contacts, metadata)
       values (${p(0)}, ${p(1)}, ${p(2)}, ${p(3)}, ${at(4)}, ${at(5)}, ${p(6)}, ${p(7)})`;
  }

  private sessionValues(delivery: Delivery): unknown[] {
    return [delivery.deliveryId, delivery.kind, delivery.tenant, delivery.room, delivery.startedAtMs, delivery.endedAtMs, JSON.stringify(delivery.contacts), JSON.stringify(delivery.metadata)];
  }

  /** A contact's typed row, its parameters numbered from `first` (18 of them, `contactValues`). */
  private contactInsert(first: number): string {
    const p = (n: number) => `$${first + n}`;
    const at = (n: number) => `to_timestamp($${first + n}::double precision / 1000)`;
    return `insert into ${this.config.schema}.gateway_contacts (contact_id, delivery_id, tenant, room, queue_id, channel, requested_at, connected_at, ended_at,
         wait_seconds, handle_seconds, agent_id, outcome, disposition, notes, transfers, overflowed_from, callback)
       values (${p(0)}, ${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${at(6)}, ${at(7)}, ${at(8)}, ${p(9)}, ${p(10)}, ${p(11)}, ${p(12)}, ${p(13)}, ${p(14)}, ${p(15)}, ${p(16)}, ${p(17)})`;
  }

  /** An artifact's row, without its values (`ARTIFACT_COLUMNS` of them, `artifactValues`). */
  private artifactInsert(): string {
    return `insert into ${this.config.schema}.gateway_artifacts (artifact_id, delivery_id, kind, content_type, size_bytes, part, content, chunk_count, sha256)`;
  }

  /**
   * One artifact: inline when small, else in chunk rows read from the stream one at a time.
   * Idempotent in one statement (a row already there is left as it is, and its chunks are not
   * written again), rather than asking first: a redelivery, rare, reads a small artifact for
   * nothing, and every first delivery saves a round trip.
   */
  private async insertArtifact(client: pg.PoolClient, delivery: Delivery, artifact: DeliveryArtifact, content: ArtifactContent): Promise<void> {
    const chunked = content.size > INLINE_MAX_BYTES;
    const chunkCount = chunked ? Math.ceil(content.size / CHUNK_ROW_BYTES) : 0;
    const inline = chunked ? Buffer.alloc(0) : await collect(content.chunks);
    const inserted = await client.query(
      `${this.artifactInsert()} values (${Array.from({ length: ARTIFACT_COLUMNS }, (_, n) => `$${n + 1}`).join(', ')}) on conflict (artifact_id) do nothing`,
      artifactValues(delivery, artifact, content.size, inline, chunkCount, content.sha256),
    );
    if (!chunked || (inserted.rowCount ?? 0) === 0) return;
    let seq = 0;
    for await (const piece of piecesOf(content.chunks, CHUNK_ROW_BYTES)) {
      await client.query(`insert into ${this.config.schema}.gateway_artifact_chunks (artifact_id, seq, data) values ($1, $2, $3)`, [artifact.artifactId, seq++, piece]);
    }
    if (seq !== chunkCount) throw new GatewayError(ErrorCode.INTERNAL, 'the artifact did not have the size it was stored with');
  }

  /** Runs with a pooled client; database errors become DESTINATION_FAILED without their details (they may quote data). */
  private async run<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    const pool = await this.connect();
    try {
      client = await pool.connect();
    } catch (error) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `cannot connect to the database: ${describe(error)}`, { cause: error });
    }
    let broken: Error | undefined;
    try {
      return await work(client);
    } catch (error) {
      broken = error as Error;
      // An artifact that failed its check is ours to report, not the database's.
      if (error instanceof GatewayError) throw error;
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the database refused the delivery: ${describe(error)}`, { cause: error });
    } finally {
      // After a failure the connection may be dead: destroy it rather than pool it.
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    const pool = await this.pool?.catch(() => undefined);
    this.pool = undefined;
    await pool?.end().catch(() => undefined);
  }
}

/** The columns of an artifact's row, in `artifactValues`' order. */
const ARTIFACT_COLUMNS = 9;

function artifactValues(delivery: Delivery, artifact: DeliveryArtifact, size: number, inline: Buffer, chunkCount: number, sha256: string): unknown[] {
  return [artifact.artifactId, delivery.deliveryId, artifact.kind, artifact.contentType, size, artifact.part, inline, chunkCount, sha256];
}

/** A contact's typed row (see migration 5). */
function contactValues(delivery: Delivery): unknown[] {
  const c = contactMetadataOf(delivery);
  return [
    c.contactId,
    delivery.deliveryId,
    delivery.tenant,
    delivery.room || null,
    c.queueId,
    c.channel,
    c.requestedAtMs || null,
    c.connectedAtMs ?? null,
    c.endedAtMs || null,
    c.waitSeconds,
    c.handleSeconds,
    c.agentId ?? null,
    c.outcome,
    c.disposition ?? null,
    c.notes ?? null,
    JSON.stringify(c.transfers),
    JSON.stringify(c.overflowedFrom),
    c.callback,
  ];
}

/** The error's class and SQLSTATE, never its message text (it can contain values). */
function describe(error: unknown): string {
  const code = (error as { code?: string }).code;
  return code ? `SQLSTATE ${code}` : error instanceof Error ? error.name : 'unknown error';
}
