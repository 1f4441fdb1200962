import { z } from 'zod';
import type { StreamConfig } from '@nats-io/jetstream';
import { buckets, streams } from '../nats/subjects.js';

/**
 * Every stream, KV bucket and object store of the platform with its whole configuration, in one
 * place. The provisioning step (run with the admin identity) creates and updates them from here;
 * services only open what exists and cannot create, change, purge or delete any of it.
 *
 * A new stream or bucket is one entry here and one line in the permissions (access.ts).
 *
 * Sizes: every entry has a hard limit (`max_bytes`), its share of NATS_STORAGE_BUDGET unless
 * NATS_STORAGE_LIMITS sets it, and every KV bucket a largest value (`max_msg_size`). A full
 * entry refuses new writes (discard "new") rather than dropping what is stored: a dropped event
 * or key would be a recording lost undelivered. crm-sync exports the fill of each
 * (gateway_jetstream_stream_bytes / _max_bytes) and an alert fires at 80 % (k8s/base/alerts.yaml).
 *
 * The limits together stay within the budget (storageProblem; provisioning refuses a sum above
 * it), and the budget within the JetStream volume (test/k8s): a full object store of artifacts
 * (a CRM that does not take deliveries for days) then refuses its own writes only, and the hot
 * state of live calls (`hot`) keeps the room it was given.
 */

/**
 * Who owns what an entry holds and when it ends (docs/data-lifecycle.md is rendered from this,
 * and a test keeps the two equal). The backstop is the entry's TTL or age limit: what the
 * owner's deletes miss (a crash between writing and deleting) ends there at the latest, and the
 * residue scanner (packages/common/src/residue) reports and sweeps it before then.
 */
export interface Lifecycle {
  /** The service that writes it. */
  writer: string;
  /** Who deletes each entry, and when. */
  deletedBy: string;
}

interface Common {
  description: string;
  /** Share of NATS_STORAGE_BUDGET this entry may hold, when NATS_STORAGE_LIMITS names no size. */
  share: number;
  lifecycle: Lifecycle;
  /**
   * What live calls read and write (registries, placement, sessions, leases): a write refused
   * here fails a heartbeat or a join, so it must never wait for room that artifacts took.
   */
  hot?: boolean;
}

export interface StreamEntry extends Common {
  kind: 'stream';
  name: string;
  subjects: readonly string[];
  /** Largest message. */
  maxMessageBytes: number;
  /** Messages older than this are dropped (0: kept until deleted). */
  maxAgeMs?: number;
  /** How long a message id is remembered to drop a duplicate publish. */
  duplicateWindowMs?: number;
  /** Nobody, not even the admin identity without changing the stream first, deletes or purges it. */
  keep?: boolean;
}

export interface BucketEntry extends Common {
  kind: 'kv';
  bucket: string;
  /** Largest value of a key. */
  maxValueBytes: number;
  /** Values kept per key. */
  history?: number;
  /** Keys not written within this time disappear. */
  ttlMs?: number;
}

export interface ObjectStoreEntry extends Common {
  kind: 'objects';
  bucket: string;
  /** Objects older than this are dropped (0: kept until deleted). */
  maxAgeMs?: number;
}

export type CatalogEntry = StreamEntry | BucketEntry | ObjectStoreEntry;

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const minute = 60_000;
const day = 24 * 60 * minute;

/** How long an SFU or recorder node stays in its registry after its last heartbeat. */
export const NODE_REGISTRY_TTL_MS = 10_000;
/**
 * How long a signaling replica's liveness key stays after its last heartbeat. The replicas sweep
 * the participants of one whose key is gone; signaling refuses a heartbeat above a third of it
 * (SIGNALING_HEARTBEAT_SECONDS).
 */
export const SIGNALING_REPLICA_TTL_MS = 15_000;
/** A routing replica refreshes its leases every third of this (services/routing); a dead one's tenants move after it. */
export const ROUTING_LEASE_TTL_MS = 10_000;

/**
 * Backstop of what lives as long as a room: a record of a live room is rewritten at least when
 * someone joins, and no call lasts two days. Longer-lived rooms would lose their placement or
 * session record to it, and the rooms of a crashed platform end with it.
 */
export const ROOM_BACKSTOP_MS = 2 * day;
/**
 * Backstop of the events waiting for delivery: longer than the longest retention a tenant may
 * set (retentionDays, at most 365), after which crm-sync deletes them undelivered anyway. It
 * only matters when crm-sync is not running.
 */
export const DELIVERY_BACKSTOP_MS = 400 * day;

const kv = (bucket: string, description: string, lifecycle: Lifecycle, options: Partial<Omit<BucketEntry, 'kind' | 'bucket' | 'description' | 'lifecycle'>> = {}): BucketEntry => ({
  kind: 'kv',
  bucket,
  description,
  lifecycle,
  share: 0.005,
  maxValueBytes: 64 * KiB,
  ...options,
});

const stream = (
  definition: { name: string; subjects: readonly string[]; duplicateWindowMs?: number },
  description: string,
  lifecycle: Lifecycle,
  options: Partial<Omit<StreamEntry, 'kind' | 'name' | 'subjects' | 'description' | 'lifecycle'>> = {},
): StreamEntry => ({
  kind: 'stream',
  name: definition.name,
  subjects: definition.subjects,
  description,
  lifecycle,
  share: 0.01,
  maxMessageBytes: 1 * MiB,
  ...(definition.duplicateWindowMs ? { duplicateWindowMs: definition.duplicateWindowMs } : {}),
  ...options,
});

const delivered = 'crm-sync, once every destination of the tenant confirmed it (or when the retention ends undelivered, or on erasure)';
const roomEnd = 'at room end (the last participant gone and the session finished)';

export const catalog: readonly CatalogEntry[] = [
  stream(streams.recordings, 'recording.ready for crm-sync, until delivered', { writer: 'recorder', deletedBy: delivered }, { maxAgeMs: DELIVERY_BACKSTOP_MS }),
  stream(streams.transcripts, 'transcript.ready and attachment.ready for crm-sync, until delivered', { writer: 'signaling', deletedBy: delivered }, { maxAgeMs: DELIVERY_BACKSTOP_MS }),
  stream(streams.sessions, 'session.ended for crm-sync, until delivered', { writer: 'signaling', deletedBy: delivered }, { maxAgeMs: DELIVERY_BACKSTOP_MS }),
  // A client's retry of a message within this window is stored once.
  stream(
    streams.chat,
    "rooms' chat, sealed, until the transcript is stored",
    { writer: 'signaling', deletedBy: `signaling ${roomEnd}, once the transcript is stored; a redacted message at once` },
    { share: 0.03, duplicateWindowMs: 2 * minute, maxAgeMs: 7 * day, maxMessageBytes: 256 * KiB },
  ),
  // Retried for WEBHOOK_RETRY_HORIZON at most; the age limit only catches what a crash left.
  stream(
    streams.webhooks,
    'webhook events and their deliveries to each endpoint, until posted',
    { writer: 'signaling, recorder, crm-sync', deletedBy: 'crm-sync once posted to every endpoint (or given up on)' },
    { share: 0.01, maxAgeMs: 4 * day, maxMessageBytes: 64 * KiB },
  ),
  stream(streams.alerts, 'alerts for the operators', { writer: 'crm-sync', deletedBy: 'nobody: ages out' }, { share: 0.005, maxAgeMs: 30 * day, keep: true, maxMessageBytes: 64 * KiB }),
  stream(streams.audit, 'audit records (counts only), kept', { writer: 'crm-sync', deletedBy: 'nobody: kept (counts only, no personal data)' }, { keep: true, maxMessageBytes: 64 * KiB }),
  kv(buckets.sfuNodes, 'SFU node registry', { writer: 'sfu', deletedBy: 'the node when it stops; expires without heartbeat' }, { hot: true, ttlMs: NODE_REGISTRY_TTL_MS, maxValueBytes: 16 * KiB }),
  kv(
    buckets.recorderNodes,
    'recorder node registry',
    { writer: 'recorder', deletedBy: 'the node when it stops; expires without heartbeat' },
    { hot: true, ttlMs: NODE_REGISTRY_TTL_MS, maxValueBytes: 16 * KiB },
  ),
  kv(
    buckets.roomPlacement,
    'room placement on SFU nodes',
    { writer: 'signaling', deletedBy: `signaling ${roomEnd}, or when its node is gone` },
    { hot: true, ttlMs: ROOM_BACKSTOP_MS, maxValueBytes: 1 * KiB },
  ),
  kv(buckets.signalingReplicas, 'signaling replicas alive', { writer: 'signaling', deletedBy: 'expires without heartbeat' }, { hot: true, ttlMs: SIGNALING_REPLICA_TTL_MS, maxValueBytes: 64 * KiB }),
  // A participant record grows with the participant's consumers. Records are written when their
  // session changes, not refreshed: the room backstop removes one that every sweep missed (a
  // replica that died while no other ran).
  kv(
    buckets.participants,
    'live participants',
    { writer: 'signaling', deletedBy: "signaling when the participant leaves (the record's message erased: no delete marker); another replica's sweep when its replica's liveness key expired" },
    { hot: true, ttlMs: ROOM_BACKSTOP_MS, maxValueBytes: 256 * KiB, share: 0.01 },
  ),
  kv(
    buckets.roomSessions,
    'sessions of live rooms, participants sealed',
    { writer: 'signaling', deletedBy: `signaling ${roomEnd}, once session.ended is out; any replica's sweep finishes the rooms of a stopped one` },
    { hot: true, ttlMs: ROOM_BACKSTOP_MS, maxValueBytes: 512 * KiB, share: 0.01 },
  ),
  // Refreshed every 5 s while the recording runs.
  kv(
    buckets.recordings,
    'recording jobs with their stored segments',
    { writer: 'recorder', deletedBy: 'recorder once the recording is assembled and recording.ready is out (an orphan once recovered)' },
    { ttlMs: 7 * day, maxValueBytes: 1 * MiB },
  ),
  kv(buckets.roomRecordings, 'the recording of each room', { writer: 'recorder', deletedBy: 'recorder when the recording stops' }, { ttlMs: ROOM_BACKSTOP_MS, maxValueBytes: 4 * KiB }),
  kv(buckets.chatKeys, 'wrapped data keys of conversations', { writer: 'signaling', deletedBy: `signaling ${roomEnd}, once the transcript is stored` }, { ttlMs: 7 * day, maxValueBytes: 4 * KiB }),
  kv(buckets.smartActions, 'Smart Actions of live rooms', { writer: 'signaling', deletedBy: `signaling ${roomEnd}, once their attachments are announced` }, { ttlMs: ROOM_BACKSTOP_MS }),
  kv(buckets.webauthnChallenges, 'device key registrations in progress', { writer: 'signaling', deletedBy: `signaling when answered, and ${roomEnd}` }, { ttlMs: 5 * minute, maxValueBytes: 4 * KiB }),
  // A slot per live session of a join token; a minted token lives at most a week.
  kv(
    buckets.tokenSessions,
    'live sessions of each join token; tokens revoked and rooms closed by the room API',
    { writer: 'signaling', deletedBy: 'signaling when the session ends; a revocation or closed room when read after its end' },
    { hot: true, ttlMs: 8 * day, maxValueBytes: 1 * KiB },
  ),
  kv(buckets.uploadLeases, 'Smart Action uploads in progress', { writer: 'signaling', deletedBy: 'signaling when the upload ends' }, { ttlMs: 5 * minute, maxValueBytes: 1 * KiB }),
  kv(buckets.deviceKeys, "end users' device keys", { writer: 'signaling', deletedBy: 'crm-sync on erasure of the end user (kept until then: a device key outlives calls by design)' }),
  kv(
    buckets.webhooks,
    "tenants' webhook endpoints, signing secrets sealed",
    { writer: 'crm-sync (admin API)', deletedBy: 'crm-sync when the tenant removes it (kept until then)' },
    { maxValueBytes: 8 * KiB },
  ),
  // A lease not refreshed for its age limit ends: the tenant's decisions move to another replica.
  kv(
    buckets.routingLeases,
    'which routing replica decides for each tenant',
    { writer: 'routing', deletedBy: 'the replica when it stops; expires without refresh' },
    { hot: true, ttlMs: ROUTING_LEASE_TTL_MS, maxValueBytes: 1 * KiB },
  ),
  kv(
    buckets.routingState,
    "agents' states and waiting contacts, contact details sealed",
    { writer: 'routing', deletedBy: 'routing when the contact ends (its record goes to crm-sync); an agent removed from the directory' },
    { hot: true, ttlMs: 2 * day, maxValueBytes: 16 * KiB, share: 0.01 },
  ),
  kv(
    buckets.apiKeys,
    "tenants' API keys: secrets hashed, and sealed for join tokens",
    { writer: 'crm-sync (admin API)', deletedBy: 'crm-sync 30 days after the tenant revokes it (kept until then, without its secrets)' },
    { maxValueBytes: 4 * KiB },
  ),
  kv(buckets.connectors, "tenants' destinations, secrets sealed", { writer: 'crm-sync (admin API)', deletedBy: 'crm-sync when the tenant removes it (kept until then)' }),
  kv(
    buckets.routingDirectory,
    "tenants' routing directories: people (names, roles, skills), teams, queues, routing profiles",
    { writer: 'routing (admin API)', deletedBy: "routing when the tenant's admin removes it (kept until then); all of a tenant's when it is offboarded" },
    { maxValueBytes: 16 * KiB },
  ),
  kv(
    buckets.crmContacts,
    'CRM contact ids by hashed external id',
    { writer: 'crm-sync', deletedBy: "crm-sync on erasure of the person (kept until then: a cache of the CRM's ids)" },
    { maxValueBytes: 4 * KiB },
  ),
  // Deleted once the delivery's event is settled; the TTL only catches what a crash left.
  kv(
    buckets.crmConfirmations,
    "destinations' confirmations of deliveries in progress",
    { writer: 'crm-sync', deletedBy: 'crm-sync once the delivery is settled' },
    { ttlMs: 30 * day, maxValueBytes: 1 * KiB },
  ),
  kv(
    buckets.dataKeys,
    'wrapped data keys of the artifacts',
    { writer: 'recorder, signaling', deletedBy: `with their artifact: ${delivered}; segments' by the recorder after assembly` },
    { ttlMs: DELIVERY_BACKSTOP_MS, maxValueBytes: 8 * KiB, share: 0.01 },
  ),
  {
    kind: 'objects',
    bucket: buckets.artifacts,
    description: 'encrypted recordings until delivered',
    share: 0.45,
    maxAgeMs: DELIVERY_BACKSTOP_MS,
    lifecycle: { writer: 'recorder', deletedBy: delivered },
  },
  {
    kind: 'objects',
    bucket: buckets.conversationArtifacts,
    description: 'encrypted transcripts and attachments until delivered',
    share: 0.1,
    maxAgeMs: DELIVERY_BACKSTOP_MS,
    lifecycle: { writer: 'signaling', deletedBy: delivered },
  },
  {
    kind: 'objects',
    bucket: buckets.recordingSegments,
    description: 'encrypted segments of recordings in progress',
    share: 0.15,
    maxAgeMs: 7 * day,
    lifecycle: { writer: 'recorder', deletedBy: 'recorder once the recording is assembled (a failed delete is retried, then left to the residue sweep)' },
  },
];

/** The JetStream stream behind an entry. */
export function streamNameOf(entry: CatalogEntry): string {
  return entry.kind === 'stream' ? entry.name : entry.kind === 'kv' ? `KV_${entry.bucket}` : `OBJ_${entry.bucket}`;
}

/** The name an entry goes by in NATS_STORAGE_LIMITS and in messages: a stream's or a bucket's. */
export function entryName(entry: CatalogEntry): string {
  return entry.kind === 'stream' ? entry.name : entry.bucket;
}

export function catalogEntry(name: string): CatalogEntry | undefined {
  return catalog.find((entry) => entryName(entry) === name || streamNameOf(entry) === name);
}

/** Sizes written with a unit: 512MiB, 40GiB, 64KiB, or plain bytes. */
const units: Record<string, number> = { '': 1, B: 1, KB: 1000, MB: 1000 ** 2, GB: 1000 ** 3, TB: 1000 ** 4, KIB: KiB, MIB: MiB, GIB: GiB, TIB: 1024 * GiB };

export const byteSize = () =>
  z.union([z.number(), z.string()]).transform((value, ctx) => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(String(value));
    const factor = match ? units[(match[2] ?? '').toUpperCase()] : undefined;
    if (!match || factor === undefined) {
      ctx.addIssue({ code: 'custom', message: 'must be a size such as 512MiB, 40GiB or a number of bytes' });
      return z.NEVER;
    }
    return Math.floor(Number(match[1]) * factor);
  });

export interface StorageLimits {
  maxBytes?: number;
  /** Largest value of a KV bucket, largest message of a stream. */
  maxValueBytes?: number;
}

export interface CatalogSettings {
  /** Copies of each (NATS_REPLICAS). */
  replicas: number;
  /** Bytes shared out among the entries that NATS_STORAGE_LIMITS leaves unsized. */
  budgetBytes: number;
  /** Sizes by stream or bucket name (NATS_STORAGE_LIMITS). */
  limits: Record<string, StorageLimits>;
}

/** The provisioning step's settings, read from the environment like any configuration. */
export const catalogShape = {
  /** Copies JetStream keeps of each stream, bucket and the object stores (3 on a 3-server cluster). */
  NATS_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  /** Storage shared out among every stream, bucket and object store by its share (catalog.ts). */
  NATS_STORAGE_BUDGET: byteSize().default(40 * GiB),
  /** JSON: sizes of particular entries, {"gateway_artifacts": {"maxBytes": "16GiB"}, "gateway_participants": {"maxValueBytes": "128KiB"}}. */
  NATS_STORAGE_LIMITS: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined) return {};
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of stream or bucket name -> {"maxBytes", "maxValueBytes"}' });
        return z.NEVER;
      }
      const result = z.record(z.string(), z.strictObject({ maxBytes: byteSize().optional(), maxValueBytes: byteSize().optional() })).safeParse(parsed);
      if (!result.success) {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of stream or bucket name -> {"maxBytes", "maxValueBytes"} with sizes such as 512MiB' });
        return z.NEVER;
      }
      const unknown = Object.keys(result.data).filter((name) => !catalogEntry(name));
      if (unknown.length > 0) {
        ctx.addIssue({ code: 'custom', message: `names no stream or bucket of the catalog: ${unknown.join(', ')}` });
        return z.NEVER;
      }
      return result.data as Record<string, StorageLimits>;
    }),
};

export function catalogSettings(values: { NATS_REPLICAS: number; NATS_STORAGE_BUDGET: number; NATS_STORAGE_LIMITS: Record<string, StorageLimits> }): CatalogSettings {
  return { replicas: values.NATS_REPLICAS, budgetBytes: values.NATS_STORAGE_BUDGET, limits: values.NATS_STORAGE_LIMITS };
}

/**
 * Part of the budget no entry's share gives out: JetStream's own files (indexes, a KV key's
 * delete markers, blocks not yet compacted) take room beyond the bytes a stream counts.
 */
export const STORAGE_HEADROOM_SHARE = 0.05;

/** The bytes the limits of the catalog add up to: the hot state of live calls, the artifacts (object stores) and the rest. */
export function storagePlan(settings: CatalogSettings, entries: readonly CatalogEntry[] = catalog): { hotBytes: number; artifactBytes: number; otherBytes: number; totalBytes: number } {
  const sum = (selected: readonly CatalogEntry[]) => selected.reduce((total, entry) => total + maxBytesOf(entry, settings), 0);
  const hotBytes = sum(entries.filter((entry) => entry.hot === true));
  const artifactBytes = sum(entries.filter((entry) => entry.kind === 'objects'));
  const otherBytes = sum(entries.filter((entry) => entry.hot !== true && entry.kind !== 'objects'));
  return { hotBytes, artifactBytes, otherBytes, totalBytes: hotBytes + artifactBytes + otherBytes };
}

/**
 * Why the limits do not fit the budget, or undefined when they do. Limits above it would let
 * full artifacts take the room of the hot state on a volume sized for the budget: a full volume
 * refuses every write, heartbeats included, and every call ends.
 */
export function storageProblem(settings: CatalogSettings, entries: readonly CatalogEntry[] = catalog): string | undefined {
  const plan = storagePlan(settings, entries);
  const usable = Math.floor(settings.budgetBytes * (1 - STORAGE_HEADROOM_SHARE));
  if (plan.totalBytes <= usable) return undefined;
  return `the size limits add up to ${plan.totalBytes} bytes (artifacts ${plan.artifactBytes}, hot state ${plan.hotBytes}, the rest ${plan.otherBytes}), more than ${usable} of NATS_STORAGE_BUDGET (${settings.budgetBytes} less ${STORAGE_HEADROOM_SHARE * 100} % for JetStream's own files): lower NATS_STORAGE_LIMITS or raise the budget`;
}

/** An entry's size limit: set by name, or its share of the budget. */
export function maxBytesOf(entry: CatalogEntry, settings: CatalogSettings): number {
  const limits = settings.limits[entryName(entry)] ?? settings.limits[streamNameOf(entry)];
  return limits?.maxBytes ?? Math.max(1 * MiB, Math.floor(settings.budgetBytes * entry.share));
}

const nanos = (ms: number) => ms * 1_000_000;

/** The stream configuration an entry stands for (what the KV and object store clients would create, with our limits). */
export function streamConfigOf(entry: CatalogEntry, settings: CatalogSettings): Partial<StreamConfig> & { name: string } {
  const limits = settings.limits[entryName(entry)] ?? settings.limits[streamNameOf(entry)] ?? {};
  const common = {
    name: streamNameOf(entry),
    description: entry.description,
    retention: 'limits',
    storage: 'file',
    // Full means no new writes, never dropping what waits for delivery.
    discard: 'new',
    num_replicas: settings.replicas,
    max_bytes: maxBytesOf(entry, settings),
  } as const;
  if (entry.kind === 'stream') {
    return {
      ...common,
      subjects: [...entry.subjects],
      max_msg_size: limits.maxValueBytes ?? entry.maxMessageBytes,
      max_age: nanos(entry.maxAgeMs ?? 0),
      duplicate_window: nanos(entry.duplicateWindowMs ?? 2 * minute),
      deny_delete: entry.keep === true,
      deny_purge: entry.keep === true,
      allow_rollup_hdrs: false,
      allow_direct: false,
    } as Partial<StreamConfig> & { name: string };
  }
  if (entry.kind === 'kv') {
    const ttl = entry.ttlMs ?? 0;
    return {
      ...common,
      subjects: [`$KV.${entry.bucket}.>`],
      max_msgs_per_subject: entry.history ?? 1,
      max_msg_size: limits.maxValueBytes ?? entry.maxValueBytes,
      max_age: nanos(ttl),
      duplicate_window: nanos(ttl > 0 ? Math.min(ttl, 2 * minute) : 2 * minute),
      allow_rollup_hdrs: true,
      deny_delete: true,
      deny_purge: false,
      allow_direct: true,
    } as Partial<StreamConfig> & { name: string };
  }
  return {
    ...common,
    subjects: [`$O.${entry.bucket}.C.>`, `$O.${entry.bucket}.M.>`],
    max_age: nanos(entry.maxAgeMs ?? 0),
    allow_rollup_hdrs: true,
    allow_direct: true,
  } as Partial<StreamConfig> & { name: string };
}
