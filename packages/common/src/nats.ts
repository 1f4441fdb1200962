import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type Bucket, type KV } from '@nats-io/kv';
import { jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';

export type { NatsConnection, KV };

/** The replica count each connection's streams and buckets are created with. */
const replicasByConnection = new WeakMap<NatsConnection, number>();

/** Copies JetStream keeps of what this connection creates (NATS_REPLICAS; 1 unless told). */
export function replicasOf(nc: NatsConnection): number {
  return replicasByConnection.get(nc) ?? 1;
}

export async function connectNats(url: string, name: string, log: Logger, options: { replicas?: number } = {}): Promise<NatsConnection> {
  const nc = await connect({
    servers: url.split(','),
    name,
    // Keep trying forever: a NATS restart must not take the service down.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error') {
        log.warn({ nats: status.type }, 'nats connection status changed');
      }
    }
  })();
  replicasByConnection.set(nc, options.replicas ?? 1);
  return nc;
}

export interface BucketOptions {
  /** Entries not updated within this time disappear. */
  ttlMs?: number;
  history?: number;
}

/** Opens a KV bucket, creating it when missing (idempotent across replicas). */
export async function openBucket(nc: NatsConnection, bucket: string, options: BucketOptions = {}): Promise<KV> {
  const kvm = new Kvm(nc);
  const kv = await kvm.create(bucket, {
    history: options.history ?? 1,
    replicas: replicasOf(nc),
    ...(options.ttlMs ? { ttl: options.ttlMs } : {}),
  });
  await raiseReplicas(nc, `KV_${bucket}`);
  return kv;
}

/**
 * A stream (or the stream behind a bucket or object store) made with fewer copies than
 * NATS_REPLICAS asks, by an earlier version or a one-server set-up, is given the copies: creating
 * it again leaves an existing stream as it was.
 */
export async function raiseReplicas(nc: NatsConnection, streamName: string): Promise<void> {
  const wanted = replicasOf(nc);
  if (wanted <= 1) return;
  const jsm = await jetstreamManager(nc);
  const { config } = await jsm.streams.info(streamName);
  if ((config.num_replicas ?? 1) < wanted) await jsm.streams.update(streamName, { num_replicas: wanted });
}

/**
 * The keys of a bucket matching `filter` that hold a value, as `kv.keys()` gives them but
 * without a consumer: JetStream lists the subjects the bucket's stream holds. Creating a
 * consumer is what a cluster that has just lost a server can fail to do for a long while, and
 * listings sit on the join path.
 */
export async function liveKeys(kv: KV, filter = '>'): Promise<string[]> {
  const bucket = kv as unknown as Bucket;
  const prefix = `${bucket.prefix}.`;
  const info = await bucket.jsm.streams.info(bucket.stream, { subjects_filter: `${prefix}${filter}` });
  const keys = Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length));
  // A deleted or purged key keeps a marker message: only those whose last entry is a value count.
  const entries = await Promise.all(keys.map((key) => kv.get(key)));
  return keys.filter((_, i) => {
    const entry = entries[i];
    return entry !== null && entry !== undefined && entry.operation === 'PUT' && entry.length > 0;
  });
}

/** Lists the raw values of every live key matching `filter`. */
export async function listEntries(kv: KV, filter: string): Promise<Array<{ key: string; value: Uint8Array; revision: number }>> {
  const keys = await liveKeys(kv, filter);
  const entries = await Promise.all(keys.map((key) => kv.get(key)));
  const out: Array<{ key: string; value: Uint8Array; revision: number }> = [];
  for (const entry of entries) {
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) continue;
    out.push({ key: entry.key, value: entry.value, revision: entry.revision });
  }
  return out;
}

/** Lists the decoded JSON values of every key matching `filter`. */
export async function listJson<T>(kv: KV, filter: string): Promise<Array<{ key: string; value: T; revision: number }>> {
  const decoder = new TextDecoder();
  return (await listEntries(kv, filter)).map((e) => ({ ...e, value: JSON.parse(decoder.decode(e.value)) as T }));
}

/**
 * Creates a JetStream stream when missing (idempotent across replicas): another process may
 * have created it first, which is fine.
 */
export async function ensureStream(nc: NatsConnection, stream: { name: string; subjects: readonly string[]; duplicateWindowMs?: number }, options: Partial<StreamConfig> = {}): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  const window = stream.duplicateWindowMs ? { duplicate_window: stream.duplicateWindowMs * 1e6 } : {};
  await jsm.streams.add({ num_replicas: replicasOf(nc), ...window, ...options, name: stream.name, subjects: [...stream.subjects] }).catch(async (error) => {
    if (!(await jsm.streams.info(stream.name).catch(() => undefined))) throw error;
  });
  await raiseReplicas(nc, stream.name);
  return jsm;
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
