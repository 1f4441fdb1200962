import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { jetstreamManager, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { Logger } from 'pino';

export type { NatsConnection, KV };

export async function connectNats(url: string, name: string, log: Logger): Promise<NatsConnection> {
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
  return kvm.create(bucket, {
    history: options.history ?? 1,
    ...(options.ttlMs ? { ttl: options.ttlMs } : {}),
  });
}

/** Lists the raw values of every live key matching `filter`. */
export async function listEntries(kv: KV, filter: string): Promise<Array<{ key: string; value: Uint8Array; revision: number }>> {
  const keys: string[] = [];
  for await (const key of await kv.keys(filter)) keys.push(key);
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
export async function ensureStream(nc: NatsConnection, stream: { name: string; subjects: readonly string[] }, options: Partial<StreamConfig> = {}): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ ...options, name: stream.name, subjects: [...stream.subjects] }).catch(async (error) => {
    if (!(await jsm.streams.info(stream.name).catch(() => undefined))) throw error;
  });
  return jsm;
}
