import { z } from 'zod';
import { AttachmentReady, RecordingReady, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SmartAction as SmartActionCodec } from '@gateway/proto/gateway/signaling/v1/signaling';
import { artifactSpaces, type ArtifactSpace } from '../jetstream/access.js';
import { FINISHED_RECORDING_KEPT_MS, readJobRecord } from '../schemas/recordingRecords.js';
import { SUBJECT_TOKEN, buckets, kvKeys, streams } from '../nats/subjects.js';
import { decodeChecked, schemas } from '../schemas/validation.js';
import { summarize, type ResidueItem, type ResidueKind, type ResidueReport } from './report.js';
import { parseJson, type StoredEntry, type StoreReader } from './storeReader.js';

/**
 * The residue scan: what is residue, store by store and kind by kind. Everything is judged from
 * what is stored, never from what a service remembers, so a scan from a CronJob and one from
 * crm-sync's ops port agree. Young entries are never residue (`graceMs`): a write in progress
 * (an object stored before its data key, a placement before its participant) looks like an
 * orphan for a moment.
 */

export interface ResidueOptions {
  /** Nothing younger than this is residue. */
  graceMs?: number;
  /** A recording record not refreshed for this long has no recorder left (DEAD_RECORDER_MS). */
  deadRecorderMs?: number;
  /** How long recorders keep a finished recording's record (RECORDER_FINISHED_RECORD_SECONDS). */
  finishedRecordingMs?: number;
  /**
   * The longest an object write may go without storing a chunk (OBJECT_WRITE_MS): chunks no live
   * object names whose newest is older than this are a write's leftovers, never a write in progress.
   */
  objectWriteMs?: number;
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
/**
 * A write stores its object's chunks one after the other, then the object's meta record that
 * names them (by nuid). Chunks no live meta record names, none stored for this long, are what a
 * refused or interrupted write left: the writer cannot purge them (the recorder may not) and the
 * client's clean-up did not. A write in progress stores a chunk every few milliseconds (128 KiB
 * of a local file or of a sealed stream), so minutes of silence mean no writer is left.
 */
export const OBJECT_WRITE_MS = 10 * minute;
/** A room's records older than this outlived any call. */
const ROOM_LIFETIME_MS = 1 * day;

const ACTIVE = new Set([RecordingState.RECORDING_STATE_RECORDING, RecordingState.RECORDING_STATE_PAUSED, RecordingState.RECORDING_STATE_STOPPING]);

/** What the scanner takes from stored values: only the references it needs, checked. */
const artifactRefs = z.object({ artifacts: z.array(z.object({ artifactId: schemas.id() })).max(10_000) });
const recordingReadyRefs = z.object({ recording: z.object({ tenant: z.string().regex(SUBJECT_TOKEN) }).and(artifactRefs) });
const transcriptReadyRefs = z.object({ tenant: z.string().regex(SUBJECT_TOKEN) }).and(artifactRefs);
const attachmentReadyRefs = z.object({ tenant: z.string().regex(SUBJECT_TOKEN), artifact: z.object({ artifactId: schemas.id() }) });
const smartActionRefs = z.object({ artifactId: z.string().max(128).optional() });
const roomRecordingRefs = z.object({ recordingId: z.string().max(128) });

/** Reads every store whose lifecycle it knows and reports, per store and kind, what is residue. */
export async function scanResidue(reader: StoreReader, options: ResidueOptions = {}): Promise<Omit<ResidueReport, 'markers' | 'deleteMarkers'>> {
  const now = options.now?.() ?? Date.now();
  const started = performance.now();
  const grace = options.graceMs ?? 2 * minute;
  const deadRecorderMs = options.deadRecorderMs ?? DEAD_RECORDER_MS;
  const finishedMs = (options.finishedRecordingMs ?? FINISHED_RECORDING_KEPT_MS) + grace;
  const retentionMs = options.retentionMs ?? (() => LONGEST_RETENTION_MS);
  const slack = options.retentionSlackMs ?? day;
  const objectWriteMs = options.objectWriteMs ?? OBJECT_WRITE_MS;
  const items: ResidueItem[] = [];
  let entries = 0;
  const add = (store: string, kind: ResidueKind, key: string, timeMs: number, revision?: number) =>
    items.push({ store, kind, key, ageMs: Math.max(0, now - timeMs), ...(revision ? { revision } : {}) });
  const old = (timeMs: number, limit = grace) => now - timeMs >= limit;

  // Only recording jobs, room recordings and Smart Actions are read for what they hold.
  const withValues = new Set<string>([buckets.recordings, buckets.roomRecordings, buckets.smartActions]);
  const kv = async (bucket: string) => {
    const read = await reader.readKv(bucket, !withValues.has(bucket));
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
    const store = artifactSpaces[space];
    // Chunks listed before the meta records: a write that finishes in between has its meta read.
    const nuids = await reader.chunkNuids(store);
    const { objects: read, liveNuids } = await reader.readObjects(store);
    entries += read.size;
    objects.set(space, read);
    for (const nuid of nuids) {
      if (liveNuids.has(nuid)) continue;
      const last = await reader.lastChunk(store, nuid);
      if (last && old(last.timeMs, objectWriteMs)) add(store, 'abandoned-chunks', nuid, last.timeMs, last.seq);
    }
  }

  // Rooms: those with a participant, and those with a session (live or being finished).
  const roomOf = (key: string) => key.split('.').slice(0, 2).join('.');
  // A participant's key has three tokens; a room's members' record (two) names who may be there, and proves nothing.
  const roomsWithParticipants = new Set([...participants!.keys()].filter((key) => key.split('.').length === 3).map(roomOf));
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
    const read = await reader.read(stream, '>', false);
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
  const sessionEvents = await reader.read(streams.sessions.name, '>', false, true);
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
  const chat = await reader.read(streams.chat.name, '>', false, true);
  entries += chat.length;
  for (const message of chat) {
    const [, tenant, , room] = message.subject.split('.');
    if (!chatKeys!.has(`${tenant}.${room}`) && old(message.timeMs)) add(streams.chat.name, 'orphan', String(message.seq), message.timeMs);
  }

  return { scannedAtMs: now, durationMs: Math.round(performance.now() - started), entries, summary: summarize(items), items };
}

/** The artifacts an event names (`<tenant>.<artifactId>`), or undefined when it cannot be read. */
function eventRefs(message: StoredEntry): { tenant: string; names: string[] } | undefined {
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
