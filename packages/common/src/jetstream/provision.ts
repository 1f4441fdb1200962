import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager, jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, GatewayError } from '../errors.js';
import { catalog, storageProblem, streamConfigOf, type CatalogEntry, type CatalogSettings } from './catalog.js';

/**
 * Creates or updates every stream, KV bucket and object store of the catalog, with the admin
 * identity (the only one allowed to). Safe to run again at any time and from several places at
 * once: what exists is compared field by field and only a difference is applied. Copies are
 * only ever raised (a lower NATS_REPLICAS never takes copies away from a cluster). A size limit
 * is never lowered below what an entry holds: JetStream would make room by dropping the oldest
 * messages (undelivered recordings among them) whatever the discard policy says; the result
 * says so, and the lower limit applies once the entry has drained below it.
 */

export interface ProvisionResult {
  stream: string;
  action: 'created' | 'updated' | 'unchanged';
  /** The fields that changed, by name. */
  changed: string[];
  /** What was left as it was, and why. */
  kept?: string[];
}

/** The fields provisioning owns; anything else of an existing stream is left as it is. */
const managedFields = [
  'subjects',
  'description',
  'discard',
  'num_replicas',
  'max_bytes',
  'max_msg_size',
  'max_age',
  'duplicate_window',
  'max_msgs_per_subject',
  'allow_rollup_hdrs',
  'allow_direct',
  'deny_delete',
  'deny_purge',
] as const;

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * Entries provisioned at once. Each is independent of the others; on a cluster each creation or
 * change of copies waits for its own group to elect a leader (about half a second for three
 * copies), so one after another the catalog takes a quarter of a minute.
 */
const PROVISION_CONCURRENCY = 8;

export async function provisionJetStream(nc: NatsConnection, settings: CatalogSettings, entries: readonly CatalogEntry[] = catalog): Promise<ProvisionResult[]> {
  const problem = storageProblem(settings, entries);
  if (problem) throw new GatewayError(ErrorCode.CONFIG_INVALID, problem);
  const jsm = await jetstreamManager(nc);
  // Results in the catalog's order, whatever order the entries finish in.
  const results: ProvisionResult[] = new Array(entries.length);
  let nextIndex = 0;
  const worker = async () => {
    for (let index = nextIndex++; index < entries.length; index = nextIndex++) results[index] = await provisionEntry(jsm, streamConfigOf(entries[index]!, settings));
  };
  await Promise.all(Array.from({ length: Math.min(PROVISION_CONCURRENCY, entries.length) }, worker));
  return results;
}

async function provisionEntry(jsm: JetStreamManager, desired: ReturnType<typeof streamConfigOf>): Promise<ProvisionResult> {
  const existing = await jsm.streams.info(desired.name).catch((error: unknown) => {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw error;
  });
  if (!existing) {
    await jsm.streams.add(desired);
    return { stream: desired.name, action: 'created', changed: [] };
  }
  const current = existing.config as StreamConfig & Record<string, unknown>;
  const next: Record<string, unknown> = { ...current };
  const changed: string[] = [];
  const kept: string[] = [];
  for (const field of managedFields) {
    let wanted: unknown = (desired as Record<string, unknown>)[field];
    if (wanted === undefined) continue;
    if (field === 'num_replicas') wanted = Math.max(Number(current.num_replicas ?? 1), Number(wanted));
    if (field === 'max_bytes' && Number(wanted) < existing.state.bytes) {
      if (!same(current.max_bytes, wanted)) kept.push(`max_bytes: it holds ${existing.state.bytes} bytes, more than the new limit of ${String(wanted)}`);
      continue;
    }
    if (field === 'subjects') wanted = [...(wanted as string[])].sort();
    const have = field === 'subjects' ? [...((current.subjects as string[] | undefined) ?? [])].sort() : current[field];
    if (!same(have, wanted)) {
      next[field] = wanted;
      changed.push(field);
    }
  }
  const notes = kept.length > 0 ? { kept } : {};
  if (changed.length === 0) return { stream: desired.name, action: 'unchanged', changed, ...notes };
  await jsm.streams.update(desired.name, next as Partial<StreamConfig>);
  return { stream: desired.name, action: 'updated', changed, ...notes };
}
