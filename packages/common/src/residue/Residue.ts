import { z } from 'zod';
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { AttachmentReady, RecordingReady, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SmartAction as SmartActionCodec } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '../errors.js';
import { artifactSpaces, residueSweeps, type ArtifactSpace } from '../jetstream/access.js';
import { FINISHED_RECORDING_KEPT_MS, readJobRecord } from '../schemas/recordingRecords.js';
import { SUBJECT_TOKEN, buckets, kvKeys, streams } from '../nats/subjects.js';
import { decodeChecked, schemas } from '../schemas/validation.js';

/**
 * The residue scanner: what NATS still holds after its purpose ended (docs/data-lifecycle.md).
 * It reads every store it knows the lifecycle of and reports, per store and kind, how many
 * entries are residue and how old the oldest is; `sweep` removes exactly those.
 *
 * Everything is judged from what is stored, never from what a service remembers, so a scan from
 * a CronJob and one from crm-sync's ops port agree. Young entries are never residue (`graceMs`):
 * a write in progress (an object stored before its data key, a placement before its participant)
 * looks like an orphan for a moment.
 */

export type ResidueKind =
  /** Older than its store's lifetime. */
  | 'outlived'
  /** An event whose artifacts are all gone: its communication was delivered (or erased), the event still names the contact. */
  | 'delivered'
  /** Encrypted bytes without their data key: unreadable, nothing can deliver them. */
  | 'artifact-without-key'
  /** A data key without its artifact. */
  | 'key-without-artifact'
  /** An artifact that no pending event, Smart Action or running recording names. */
  | 'artifact-without-event'
  /** A record of a room that has ended (no session, no participant). */
  | 'room-ended'
  /**
   * A room session whose room has no participant left, or whose finish stopped half-way:
   * signaling's sweep should have finished it. Reported, never swept: sweeping it would drop its
   * session.ended undelivered; once it outlived a day it is swept as `outlived`.
   */
  | 'unfinished'
  /** A recording record (and its segments) whose recorder stopped refreshing it and that no other recorder recovered. */
  | 'dead-recorder'
  /** A finished recording's record: recording.ready is out, nothing needs it. */
  | 'finished'
  /** Anything else that refers to something gone (a segment of no recording, a room's recording that ended, chat without its key). */
  | 'orphan';

export interface ResidueItem {
  store: string;
  kind: ResidueKind;
  /** The KV key, object name or stream sequence. */
  key: string;
  ageMs: number;
  /** A KV entry's revision when scanned: the sweep removes that revision only. */
  revision?: number;
}

export interface ResidueSummary {
  store: string;
  kind: ResidueKind;
  count: number;
  oldestAgeMs: number;
}

export interface ResidueReport {
  scannedAtMs: number;
  durationMs: number;
  /** Entries read (KV keys, objects, messages). */
  entries: number;
  summary: ResidueSummary[];
  /** Every item found; keys and names only (tenants, rooms, ids), never a value. */
  items: ResidueItem[];
}

export interface ResidueOptions {
  /** Nothing younger than this is residue. */
  graceMs?: number;
  /** A recording record not refreshed for this long has no recorder left (DEAD_RECORDER_MS). */
  deadRecorderMs?: number;
  /** How long recorders keep a finished recording's record (RECORDER_FINISHED_RECORD_SECONDS). */
  finishedRecordingMs?: number;
  /** How long a tenant's events may wait for delivery (crm-sync's retention); older ones outlived it. */
  retentionMs?: (tenant: string) => number;
  /** How long after its retention crm-sync may take to delete an expired event. */
  retentionSlackMs?: number;
  now?: () => number;
}

const minute = 60_000;
const day = 24 * 60 * minute;
/** The longest a tenant may keep communications waiting (retentionDays is at most 365). */
export const LONGEST_RETENTION_MS = 365 * day;
/** A room session nobody finished this long after its room emptied is residue (signaling's sweep runs every few seconds). */
const ROOM_FINISH_MS = 10 * minute;
/**
 * A running recording's record not refreshed for this long has no recorder left: any running
 * recorder recovers another's within 15 s, so this is a recorder outage. Its sweep loses the
 * recording, so it waits long enough for the outage to be noticed and mended.
 */
export const DEAD_RECORDER_MS = 60 * minute;
/** A room's records older than this outlived any call. */
const ROOM_LIFETIME_MS = 1 * day;

const ACTIVE = new Set([RecordingState.RECORDING_STATE_RECORDING, RecordingState.RECORDING_STATE_PAUSED, RecordingState.RECORDING_STATE_STOPPING]);

interface Entry {
  subject: string;
  seq: number;
  timeMs: number;
  data: Uint8Array;
}

/** What the scanner takes from stored values: only the references it needs, checked. */
const artifactRefs = z.object({ artifacts: z.array(z.object({ artifactId: schemas.id() })).max(10_000) });
const recordingReadyRefs = z.object({ recording: z.object({ tenant: z.string().regex(SUBJECT_TOKEN) }).and(artifactRefs) });
const transcriptReadyRefs = z.object({ tenant: z.string().regex(SUBJECT_TOKEN) }).and(artifactRefs);
const attachmentReadyRefs = z.object({ tenant: z.string().regex(SUBJECT_TOKEN), artifact: z.object({ artifactId: schemas.id() }) });
const objectMeta = z.object({ name: z.string().max(1_024), mtime: z.string().max(64), deleted: z.boolean().optional() });
const smartActionRefs = z.object({ artifactId: z.string().max(128).optional() });
const roomRecordingRefs = z.object({ recordingId: z.string().max(128) });

export class Residue {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  static async open(nc: NatsConnection): Promise<Residue> {
    return new Residue(nc, jetstream(nc), await jetstreamManager(nc));
  }

  /**
   * The last value of every key (or object) of a KV bucket's (or object store's) stream, or every
   * message of a stream. `headersOnly`: where only keys and times matter, the values stay on the
   * server (an empty value then shows in the size header).
   */
  private async read(stream: string, filter: string, lastPerSubject: boolean, headersOnly = false): Promise<Entry[]> {
    const info = await this.jsm.streams.info(stream);
    if (info.state.messages === 0) return [];
    // An ordered consumer, which the server removes by itself once it is idle.
    const consumer = await this.js.consumers.get(stream, { filter_subjects: filter, deliver_policy: lastPerSubject ? DeliverPolicy.LastPerSubject : DeliverPolicy.All, headers_only: headersOnly });
    const out: Entry[] = [];
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 2_000, expires: 1_000 });
      let received = 0;
      let done = false;
      for await (const message of batch) {
        received++;
        const operation = message.headers?.get('KV-Operation');
        // Deleted and purged keys keep a marker: they are gone; so is a key whose value is empty.
        const empty = headersOnly ? message.headers?.get('Nats-Msg-Size') === '0' : message.data.length === 0;
        if (!operation && !(lastPerSubject && empty)) out.push({ subject: message.subject, seq: message.seq, timeMs: Math.floor(message.info.timestampNanos / 1e6), data: message.data });
        if (message.info.pending === 0) {
          done = true;
          batch.stop();
          break;
        }
      }
      if (done || received === 0) break;
    }
    return out;
  }

  private async readKv(bucket: string, headersOnly: boolean): Promise<Map<string, Entry>> {
    const prefix = `$KV.${bucket}.`;
    const entries = await this.read(`KV_${bucket}`, `${prefix}>`, true, headersOnly);
    return new Map(entries.map((e) => [e.subject.slice(prefix.length), e]));
  }

  /** Live objects of a store by name, with their last change. */
  private async readObjects(store: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const entry of await this.read(`OBJ_${store}`, `$O.${store}.M.>`, true)) {
      const parsed = objectMeta.safeParse(parseJson(entry.data));
      if (!parsed.success || parsed.data.deleted) continue;
      const mtime = Date.parse(parsed.data.mtime);
      out.set(parsed.data.name, Number.isFinite(mtime) ? mtime : entry.timeMs);
    }
    return out;
  }

  async scan(options: ResidueOptions = {}): Promise<ResidueReport> {
    const now = options.now?.() ?? Date.now();
    const started = performance.now();
    const grace = options.graceMs ?? 2 * minute;
    const deadRecorderMs = options.deadRecorderMs ?? DEAD_RECORDER_MS;
    const finishedMs = (options.finishedRecordingMs ?? FINISHED_RECORDING_KEPT_MS) + grace;
    const retentionMs = options.retentionMs ?? (() => LONGEST_RETENTION_MS);
    const slack = options.retentionSlackMs ?? day;
    const items: ResidueItem[] = [];
    let entries = 0;
    const add = (store: string, kind: ResidueKind, key: string, timeMs: number, revision?: number) =>
      items.push({ store, kind, key, ageMs: Math.max(0, now - timeMs), ...(revision ? { revision } : {}) });
    const old = (timeMs: number, limit = grace) => now - timeMs >= limit;

    // Only recording jobs, room recordings and Smart Actions are read for what they hold.
    const withValues = new Set<string>([buckets.recordings, buckets.roomRecordings, buckets.smartActions]);
    const kv = async (bucket: string) => {
      const read = await this.readKv(bucket, !withValues.has(bucket));
      entries += read.size;
      return read;
    };
    const [placement, participants, sessions, recordings, roomRecordings, chatKeys, smartActions, challenges, dataKeys] = await Promise.all(
      [
        buckets.roomPlacement,
        buckets.participants,
        buckets.roomSessions,
        buckets.recordings,
        buckets.roomRecordings,
        buckets.chatKeys,
        buckets.smartActions,
        buckets.webauthnChallenges,
        buckets.dataKeys,
      ].map(kv),
    );
    const objects = new Map<ArtifactSpace, Map<string, number>>();
    for (const space of Object.keys(artifactSpaces) as ArtifactSpace[]) {
      const read = await this.readObjects(artifactSpaces[space]);
      entries += read.size;
      objects.set(space, read);
    }

    // Rooms: those with a participant, and those with a session (live or being finished).
    const roomOf = (key: string) => key.split('.').slice(0, 2).join('.');
    const roomsWithParticipants = new Set([...participants!.keys()].map(roomOf));
    const roomsWithSession = new Set([...sessions!.keys()].map(roomOf));
    const roomLive = (room: string) => roomsWithParticipants.has(room) || roomsWithSession.has(room);

    for (const [key, entry] of sessions!) {
      const ending = key.split('.')[2] === 'ending';
      if (old(entry.timeMs, ROOM_LIFETIME_MS)) add(buckets.roomSessions, 'outlived', key, entry.timeMs, entry.seq);
      else if ((ending || !roomsWithParticipants.has(roomOf(key))) && old(entry.timeMs, ROOM_FINISH_MS)) add(buckets.roomSessions, 'unfinished', key, entry.timeMs, entry.seq);
    }
    for (const [bucket, read] of [
      [buckets.roomPlacement, placement!],
      [buckets.chatKeys, chatKeys!],
      [buckets.smartActions, smartActions!],
      [buckets.webauthnChallenges, challenges!],
    ] as const) {
      for (const [key, entry] of read) if (!roomLive(roomOf(key)) && old(entry.timeMs)) add(bucket, 'room-ended', key, entry.timeMs, entry.seq);
    }

    // Recordings: active records keep their segments; finished ones and those of dead recorders are residue.
    const activeRecordings = new Set<string>();
    const liveSegments = new Set<string>();
    for (const [key, entry] of recordings!) {
      let record;
      try {
        record = readJobRecord(entry.data);
      } catch {
        if (old(entry.timeMs)) add(buckets.recordings, 'orphan', key, entry.timeMs, entry.seq);
        continue;
      }
      const recording = record.recording!;
      const segmentNames = record.segments.map((s) => `${recording.tenant}.${s.objectId}`);
      if (!ACTIVE.has(recording.state)) {
        if (old(entry.timeMs, finishedMs)) add(buckets.recordings, 'finished', key, entry.timeMs, entry.seq);
        for (const name of segmentNames) liveSegments.add(name);
        continue;
      }
      if (now - record.refreshedAtMs >= deadRecorderMs) {
        add(buckets.recordings, 'dead-recorder', key, record.refreshedAtMs, entry.seq);
        continue;
      }
      activeRecordings.add(key);
      for (const name of segmentNames) liveSegments.add(name);
    }
    for (const [key, entry] of roomRecordings!) {
      const parsed = roomRecordingRefs.safeParse(parseJson(entry.data));
      const tenant = key.split('.')[0]!;
      if ((!parsed.success || !activeRecordings.has(kvKeys.recording(tenant, parsed.data.recordingId))) && old(entry.timeMs)) add(buckets.roomRecordings, 'orphan', key, entry.timeMs, entry.seq);
    }

    // Events: what they name is pending; an event naming nothing left was delivered.
    const named = new Set<string>();
    const eventArtifacts = async (stream: string) => {
      const read = await this.read(stream, '>', false);
      entries += read.length;
      return read;
    };
    for (const [stream, messages] of [
      [streams.recordings.name, await eventArtifacts(streams.recordings.name)],
      [streams.transcripts.name, await eventArtifacts(streams.transcripts.name)],
    ] as const) {
      for (const message of messages) {
        const refs = eventRefs(message);
        if (!refs) {
          if (old(message.timeMs)) add(stream, 'orphan', String(message.seq), message.timeMs);
          continue;
        }
        for (const name of refs.names) named.add(name);
        if (old(message.timeMs, retentionMs(refs.tenant) + slack)) add(stream, 'outlived', String(message.seq), message.timeMs);
        else if (old(message.timeMs) && refs.names.every((name) => !objects.get('recordings')!.has(name) && !objects.get('conversations')!.has(name)))
          add(stream, 'delivered', String(message.seq), message.timeMs);
      }
    }
    const sessionEvents = await this.read(streams.sessions.name, '>', false, true);
    entries += sessionEvents.length;
    for (const message of sessionEvents) {
      const tenant = message.subject.split('.')[1] ?? '';
      if (old(message.timeMs, retentionMs(tenant) + slack)) add(streams.sessions.name, 'outlived', String(message.seq), message.timeMs);
    }
    // Attachments of live rooms wait for their room's end in a Smart Action.
    for (const [key, entry] of smartActions!) {
      const parsed = smartActionRefs.safeParse(decodeSmartAction(entry.data));
      if (parsed.success && parsed.data.artifactId) named.add(`${key.split('.')[0]}.${parsed.data.artifactId}`);
    }

    // Artifacts and their data keys (`<tenant>.<space>.<artifact>` for the object `<tenant>.<artifact>`).
    for (const [space, stored] of objects) {
      const store = artifactSpaces[space];
      for (const [name, timeMs] of stored) {
        const [tenant, ...rest] = name.split('.');
        const keyName = `${tenant}.${space}.${rest.join('.')}`;
        if (!old(timeMs)) continue;
        if (!dataKeys!.has(keyName)) add(store, 'artifact-without-key', name, timeMs);
        else if (space === 'segments' ? !liveSegments.has(name) : !named.has(name)) {
          // A dead recorder's segments are named by its record, reported with it.
          add(store, space === 'segments' ? 'orphan' : 'artifact-without-event', name, timeMs);
        }
      }
    }
    for (const [key, entry] of dataKeys!) {
      const [tenant, space, ...rest] = key.split('.');
      const stored = objects.get(space as ArtifactSpace);
      if (stored && !stored.has(`${tenant}.${rest.join('.')}`) && old(entry.timeMs)) add(buckets.dataKeys, 'key-without-artifact', key, entry.timeMs, entry.seq);
    }

    // Chat: a room's messages without the room's conversation key can never be read.
    const chat = await this.read(streams.chat.name, '>', false, true);
    entries += chat.length;
    for (const message of chat) {
      const [, tenant, , room] = message.subject.split('.');
      if (!chatKeys!.has(`${tenant}.${room}`) && old(message.timeMs)) add(streams.chat.name, 'orphan', String(message.seq), message.timeMs);
    }

    return { scannedAtMs: now, durationMs: Math.round(performance.now() - started), entries, summary: summarize(items), items };
  }

  /**
   * Removes what a scan found. Each item is looked at again just before (compare-and-set on the
   * revision it had, or re-read), so what was written meanwhile stays. Returns what was removed.
   */
  async sweep(report: ResidueReport): Promise<ResidueSummary[]> {
    const removed: ResidueItem[] = [];
    const kvm = new Kvm(this.nc);
    const objm = new Objm(this.nc);
    const sweepable = {
      kv: new Set<string>(residueSweeps.kv),
      objects: new Set<string>(residueSweeps.objects),
      streams: new Set<string>(residueSweeps.streams.map((s) => s.name)),
    };
    const kvs = new Map<string, Awaited<ReturnType<Kvm['open']>>>();
    const openKv = async (bucket: string) => kvs.get(bucket) ?? kvs.set(bucket, await kvm.open(bucket)).get(bucket)!;
    const dataKeys = await openKv(buckets.dataKeys);
    const deleteObject = async (store: string, name: string) => {
      const space = (Object.keys(artifactSpaces) as ArtifactSpace[]).find((s) => artifactSpaces[s] === store)!;
      const [tenant, ...rest] = name.split('.');
      // The key first: without it the bytes are unreadable whatever happens next.
      await dataKeys.purge(`${tenant}.${space}.${rest.join('.')}`);
      const objects = await objm.open(store);
      const info = await objects.info(name);
      if (info && !info.deleted) await objects.delete(name);
    };
    for (const item of report.items) {
      if (!sweeps(item.kind)) continue;
      try {
        if (sweepable.kv.has(item.store)) {
          const bucket = await openKv(item.store);
          // Deleted unless rewritten since the scan (then it is live again).
          const entry = await bucket.get(item.key);
          if (entry?.operation !== 'PUT' || entry.revision !== item.revision) continue;
          if (item.store === buckets.recordings && item.kind === 'dead-recorder') {
            // The recording is lost: its segments go with its record.
            const record = readJobRecord(entry.value);
            for (const segment of record.segments) await deleteObject(buckets.recordingSegments, `${record.recording!.tenant}.${segment.objectId}`);
          }
          await bucket.purge(item.key, { previousSeq: entry.revision });
        } else if (sweepable.objects.has(item.store)) {
          await deleteObject(item.store, item.key);
        } else if (sweepable.streams.has(item.store)) {
          await this.jsm.streams.deleteMessage(item.store, Number(item.key), false).catch((error: unknown) => {
            // Already gone (delivered meanwhile): nothing to remove.
            if (!String((error as Error)?.message ?? error).includes('no message found')) throw error;
          });
        } else {
          continue;
        }
        removed.push(item);
      } catch (error) {
        throw new GatewayError(ErrorCode.UNAVAILABLE, `sweeping ${item.store} failed`, { cause: error });
      }
    }
    return summarize(removed);
  }
}

/** Whether the sweep removes a kind (the others are for a service to finish). */
export function sweeps(kind: ResidueKind): boolean {
  return kind !== 'unfinished';
}

function summarize(items: ResidueItem[]): ResidueSummary[] {
  const byKey = new Map<string, ResidueSummary>();
  for (const item of items) {
    const id = `${item.store}/${item.kind}`;
    const found = byKey.get(id) ?? byKey.set(id, { store: item.store, kind: item.kind, count: 0, oldestAgeMs: 0 }).get(id)!;
    found.count++;
    found.oldestAgeMs = Math.max(found.oldestAgeMs, item.ageMs);
  }
  return [...byKey.values()].sort((a, b) => a.store.localeCompare(b.store) || a.kind.localeCompare(b.kind));
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

/** The artifacts an event names (`<tenant>.<artifactId>`), or undefined when it cannot be read. */
function eventRefs(message: Entry): { tenant: string; names: string[] } | undefined {
  const kind = message.subject.split('.')[2];
  try {
    if (kind === 'recording') {
      const ready = decodeChecked(RecordingReady, message.data, recordingReadyRefs, 'recording.ready');
      const tenant = ready.recording!.tenant;
      return { tenant, names: ready.recording!.artifacts.map((a) => `${tenant}.${a.artifactId}`) };
    }
    if (kind === 'transcript') {
      const ready = decodeChecked(TranscriptReady, message.data, transcriptReadyRefs, 'transcript.ready');
      return { tenant: ready.tenant, names: ready.artifacts.map((a) => `${ready.tenant}.${a.artifactId}`) };
    }
    if (kind === 'attachment') {
      const ready = decodeChecked(AttachmentReady, message.data, attachmentReadyRefs, 'attachment.ready');
      return { tenant: ready.tenant, names: [`${ready.tenant}.${ready.artifact!.artifactId}`] };
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** A Smart Action record's artifact id (protobuf); undefined when unreadable. */
function decodeSmartAction(data: Uint8Array): unknown {
  try {
    return SmartActionCodec.decode(data);
  } catch {
    return undefined;
  }
}
