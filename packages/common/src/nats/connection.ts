import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { connect, errors, nkeyAuthenticator, nkeys, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type Bucket, type KV, type KvEntry } from '@nats-io/kv';
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager, type JetStreamManager, type StreamInfo } from '@nats-io/jetstream';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { ErrorCode, GatewayError } from '../errors.js';
import { inboxPrefixOf, type NatsIdentity } from '../jetstream/access.js';

export type { NatsConnection, KV };

/**
 * How every service reaches NATS: over TLS only, as its own identity (an nkey), with replies
 * on an inbox prefix of its own. What each identity may do is in jetstream/access.ts.
 */
export const natsShape = {
  /** One or more servers, comma-separated, each tls://host:port. */
  NATS_URL: z
    .string()
    .default('tls://127.0.0.1:4222')
    .refine((urls) => urls.split(',').every((url) => /^tls:\/\/[^\s/@]+$/.test(url.trim())), 'must be tls://host:port, comma-separated: NATS is reached over TLS only'),
  /** The CA that issued the servers' certificate (the system's CAs when unset). */
  NATS_CA_FILE: z.string().min(1).optional(),
  /** This service's nkey seed (a Kubernetes Secret): who it is to NATS. */
  NATS_NKEY_SEED_FILE: z.string({ error: "must name the file holding this service's NATS nkey seed" }).min(1),
  /** This service's client certificate and key, for servers that verify clients (ours do). */
  NATS_TLS_CERT_FILE: z.string().min(1).optional(),
  NATS_TLS_KEY_FILE: z.string().min(1).optional(),
};

export interface NatsSettings {
  servers: string[];
  identity: NatsIdentity;
  seedFile: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

type NatsValues = z.infer<z.ZodObject<typeof natsShape>>;

/** A service's NATS settings from its configuration; the files are read when connecting. */
export function readNatsSettings(values: NatsValues, identity: NatsIdentity): NatsSettings {
  if (Boolean(values.NATS_TLS_CERT_FILE) !== Boolean(values.NATS_TLS_KEY_FILE)) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, 'invalid configuration:\n  NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE must be set together');
  }
  return {
    servers: values.NATS_URL.split(',').map((url) => url.trim()),
    identity,
    seedFile: values.NATS_NKEY_SEED_FILE,
    ...(values.NATS_CA_FILE ? { caFile: values.NATS_CA_FILE } : {}),
    ...(values.NATS_TLS_CERT_FILE ? { certFile: values.NATS_TLS_CERT_FILE, keyFile: values.NATS_TLS_KEY_FILE } : {}),
  };
}

function readSeed(seedFile: string): Uint8Array {
  try {
    const seed = new TextEncoder().encode(readFileSync(seedFile, 'utf8').trim());
    nkeys.fromSeed(seed);
    return seed;
  } catch (error) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, 'invalid configuration:\n  NATS_NKEY_SEED_FILE: the file holds no nkey seed or cannot be read', { cause: error });
  }
}

/** Why a connection failed, in words that point at the setting to check; never a value. */
function connectFailure(error: unknown): string {
  const text = error instanceof Error ? `${error.message} ${String((error.cause as Error | undefined)?.message ?? '')}` : String(error);
  if (error instanceof errors.AuthorizationError || /authorization/i.test(text)) return 'the server refused this identity (NATS_NKEY_SEED_FILE)';
  if (/certificate|self.signed|tls|ssl|handshake/i.test(text)) return 'TLS failed (NATS_CA_FILE, NATS_TLS_CERT_FILE, NATS_TLS_KEY_FILE)';
  return 'no server answered (NATS_URL)';
}

/**
 * `asyncTraces`: whether each request keeps its caller's stack for its errors (nats.js's default).
 * Capturing it costs an Error per request, with source maps a few per cent of the CPU of a service
 * that makes thousands of requests a second (crm-sync); errors still carry their code and cause.
 * `handshakeTimeoutMs`: how long one connection attempt may take to complete (nats.js's default,
 * 20 s, otherwise). An attempt the server never completes, as with a client certificate it
 * refuses, holds up the next attempt that long.
 */
export async function connectNats(settings: NatsSettings, name: string, log: Logger, options: { asyncTraces?: boolean; handshakeTimeoutMs?: number } = {}): Promise<NatsConnection> {
  // Read now so a bad file stops the service at start, and again at each (re)connection, so a
  // seed rotated in its Secret is used from the next connection on; an unreadable file then
  // keeps the seed in use.
  let seed = readSeed(settings.seedFile);
  const currentSeed = () => {
    try {
      seed = readSeed(settings.seedFile);
    } catch {
      log.error({ nats: 'seed' }, 'NATS_NKEY_SEED_FILE holds no nkey seed now: the seed in use stays');
    }
    return seed;
  };
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: settings.servers,
      name,
      authenticator: nkeyAuthenticator(currentSeed),
      // Replies (JetStream acknowledgements, API answers, consumers' deliveries) come here and
      // only this identity may subscribe to it.
      inboxPrefix: inboxPrefixOf(settings.identity),
      // The transport reads these files at each connection, not once: a renewed client
      // certificate or CA bundle is used from the next reconnection on.
      tls: {
        ...(settings.caFile ? { caFile: settings.caFile } : {}),
        ...(settings.certFile ? { certFile: settings.certFile, keyFile: settings.keyFile } : {}),
      },
      // Keep trying forever: a NATS restart must not take the service down.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      noAsyncTraces: options.asyncTraces === false,
      ...(options.handshakeTimeoutMs ? { timeout: options.handshakeTimeoutMs } : {}),
    });
  } catch (error) {
    throw new GatewayError(ErrorCode.UNAVAILABLE, `cannot connect to NATS: ${connectFailure(error)}`, { cause: error });
  }
  void (async () => {
    for await (const status of nc.status()) {
      const error = status.type === 'error' ? (status as { error?: unknown }).error : undefined;
      if (error instanceof errors.PermissionViolationError) {
        // A publish or subscription outside this identity's permissions: the request fails
        // (or a subscription gets nothing), and this line says why.
        log.error({ nats: 'permission', operation: error.operation, subject: error.subject }, 'NATS refused an operation this service has no permission for');
      } else if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
        log.warn({ nats: status.type }, 'nats connection status changed');
      }
    }
  })();
  return nc;
}

/** One JetStream manager per connection (creating one asks the server for the account's info). */
const managers = new WeakMap<NatsConnection, Promise<JetStreamManager>>();

function managerOf(nc: NatsConnection): Promise<JetStreamManager> {
  let jsm = managers.get(nc);
  if (!jsm) {
    jsm = jetstreamManager(nc);
    jsm.catch(() => managers.delete(nc));
    managers.set(nc, jsm);
  }
  return jsm;
}

const isPermissionError = (error: unknown): boolean => {
  for (let e = error; e instanceof Error; e = e.cause) if (e instanceof errors.PermissionViolationError || /Permissions Violation/.test(e.message)) return true;
  return false;
};

/**
 * The info of a stream the service needs, which provisioning made: a missing one fails the
 * service's start naming it, rather than creating it with settings of the service's own.
 */
async function requireStream(nc: NatsConnection, stream: string, what: string): Promise<{ jsm: JetStreamManager; info: StreamInfo }> {
  const jsm = await managerOf(nc);
  try {
    return { jsm, info: await jsm.streams.info(stream) };
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
      throw new GatewayError(
        ErrorCode.UNAVAILABLE,
        `${what} does not exist: JetStream is not provisioned (the provisioning step creates it with the admin identity: make up runs it, Kubernetes the nats-provision Job)`,
        { cause: error },
      );
    }
    if (isPermissionError(error)) throw new GatewayError(ErrorCode.PERMISSION_DENIED, `${what}: this service is not permitted to use it (jetstream/access.ts)`, { cause: error });
    throw error;
  }
}

/** Opens a KV bucket that provisioning made (catalog.ts); fails naming it when it is missing. */
export async function openBucket(nc: NatsConnection, bucket: string): Promise<KV> {
  const { info } = await requireStream(nc, `KV_${bucket}`, `KV bucket ${bucket}`);
  // Gets go by direct get with the key in the subject, which permissions can narrow to keys.
  return new Kvm(nc).open(bucket, { allow_direct: info.config.allow_direct === true });
}

/** A KV bucket's time to live (0: none), as provisioned. */
export async function bucketTtlMs(nc: NatsConnection, bucket: string): Promise<number> {
  const { info } = await requireStream(nc, `KV_${bucket}`, `KV bucket ${bucket}`);
  return Math.round((info.config.max_age ?? 0) / 1e6);
}

/**
 * Whether a KV entry holds a value. A deleted or purged key keeps a marker entry (operation DEL
 * or PURGE, no value) until the bucket forgets it; an empty value is never one we wrote.
 */
export function isLiveEntry(entry: KvEntry | null | undefined): entry is KvEntry {
  return entry !== null && entry !== undefined && entry.operation === 'PUT' && entry.length > 0;
}

/**
 * The live entries of a bucket matching `filter`, each read once. The keys come from the
 * bucket's stream (the subjects it holds) rather than from `kv.keys()`, which creates a consumer:
 * creating one is what a cluster that has just lost a server can fail to do for a long while,
 * and listings sit on the join path.
 */
export async function liveEntries(kv: KV, filter = '>'): Promise<KvEntry[]> {
  const bucket = kv as unknown as Bucket;
  const prefix = `${bucket.prefix}.`;
  const info = await bucket.jsm.streams.info(bucket.stream, { subjects_filter: `${prefix}${filter}` });
  const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
  const entries = await Promise.all(keys.map((key) => kv.get(key)));
  return entries.filter(isLiveEntry);
}

/** The keys of a bucket matching `filter` that hold a value. */
export async function liveKeys(kv: KV, filter = '>'): Promise<string[]> {
  return (await liveEntries(kv, filter)).map((entry) => entry.key);
}

/** The raw values of every live key matching `filter`. */
export async function listEntries(kv: KV, filter: string): Promise<Array<{ key: string; value: Uint8Array; revision: number }>> {
  return (await liveEntries(kv, filter)).map((entry) => ({ key: entry.key, value: entry.value, revision: entry.revision }));
}

/** Checks that a stream provisioning made exists; fails naming it when it does not. */
export async function ensureStream(nc: NatsConnection, stream: { name: string }): Promise<JetStreamManager> {
  return (await requireStream(nc, stream.name, `stream ${stream.name}`)).jsm;
}

/** Checks that an object store provisioning made exists. */
export async function requireObjectStore(nc: NatsConnection, bucket: string): Promise<void> {
  await requireStream(nc, `OBJ_${bucket}`, `object store ${bucket}`);
}

/**
 * The backlog of durable JetStream consumers, read from the server at each scrape:
 * `gateway_jetstream_consumer_pending_messages` (stored, not yet handed out) and
 * `gateway_jetstream_consumer_ack_pending_messages` (handed out, not yet acknowledged: in progress
 * or waiting for a retry). Every replica reports the same figures (the consumer is shared), so
 * dashboards take the max per consumer. A consumer that cannot be read is left out rather than
 * shown with a stale figure.
 */
export function observeConsumerLag(registry: Registry, jsm: JetStreamManager, consumers: ReadonlyArray<{ stream: string; durable: string }>, timeoutMs = 2_000): void {
  const labelNames = ['stream', 'consumer'] as const;
  let reading: { at: number; infos: Promise<Array<{ stream: string; consumer: string; pending?: number; ackPending?: number }>> } | undefined;
  // Both gauges are collected at each scrape: one round of requests serves both.
  const read = () => {
    if (!reading || Date.now() - reading.at > 1_000) {
      const infos = Promise.all(
        consumers.map(async ({ stream, durable }) => {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
          const info = await Promise.race([jsm.consumers.info(stream, durable).catch(() => undefined), timeout]);
          clearTimeout(timer);
          return { stream, consumer: durable, pending: info?.num_pending, ackPending: info?.num_ack_pending };
        }),
      );
      reading = { at: Date.now(), infos };
    }
    return reading.infos;
  };
  const gauge = (name: string, help: string, pick: (info: { pending?: number; ackPending?: number }) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        for (const info of await read()) {
          const value = pick(info);
          if (value === undefined) this.remove({ stream: info.stream, consumer: info.consumer });
          else this.set({ stream: info.stream, consumer: info.consumer }, value);
        }
      },
    });
  gauge('gateway_jetstream_consumer_pending_messages', 'Messages of the stream not yet handed to the durable consumer', (i) => i.pending);
  gauge('gateway_jetstream_consumer_ack_pending_messages', 'Messages handed to the durable consumer and not yet acknowledged (in progress or waiting for a retry)', (i) => i.ackPending);
}

/**
 * How full each stream, KV bucket and object store is, read from the server at each scrape:
 * `gateway_jetstream_stream_bytes` and `gateway_jetstream_stream_max_bytes` (its limit; an
 * alert fires at 80 %), and `gateway_jetstream_stream_messages`. Every replica of the exporter
 * reports the same figures: take the max. A stream that cannot be read is left out.
 */
export function observeStreamSizes(registry: Registry, jsm: JetStreamManager, streamNames: readonly string[], timeoutMs = 2_000): void {
  let reading: { at: number; infos: Promise<Array<{ stream: string; bytes?: number; maxBytes?: number; messages?: number }>> } | undefined;
  const read = () => {
    if (!reading || Date.now() - reading.at > 1_000) {
      const infos = Promise.all(
        streamNames.map(async (stream) => {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
          const info = await Promise.race([jsm.streams.info(stream).catch(() => undefined), timeout]);
          clearTimeout(timer);
          return { stream, bytes: info?.state.bytes, maxBytes: info?.config.max_bytes, messages: info?.state.messages };
        }),
      );
      reading = { at: Date.now(), infos };
    }
    return reading.infos;
  };
  const gauge = (name: string, help: string, pick: (info: { bytes?: number; maxBytes?: number; messages?: number }) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames: ['stream'] as const,
      registers: [registry],
      async collect() {
        for (const info of await read()) {
          const value = pick(info);
          if (value === undefined) this.remove({ stream: info.stream });
          else this.set({ stream: info.stream }, value);
        }
      },
    });
  gauge('gateway_jetstream_stream_bytes', 'Bytes a stream (or the stream of a KV bucket or object store) holds', (i) => i.bytes);
  // -1 (no limit) is left out: every entry of the catalog has one.
  gauge('gateway_jetstream_stream_max_bytes', 'The size limit of a stream (or of the stream of a KV bucket or object store)', (i) =>
    i.maxBytes !== undefined && i.maxBytes > 0 ? i.maxBytes : undefined,
  );
  gauge('gateway_jetstream_stream_messages', 'Messages a stream (or the stream of a KV bucket or object store) holds', (i) => i.messages);
}
