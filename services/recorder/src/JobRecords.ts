import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { RecordingJobRecord, RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { SfuDirectory } from '@gateway/cluster';
import { isLiveEntry, ErrorCode, GatewayError, assertSubjectToken, callUnary, kvKeys, liveKeys, readJobRecord, type ArtifactStore, type KV, type Logger } from '@gateway/common';
import type { RecorderConfig } from './config.js';
import { assembleRecording } from './assemble.js';
import { deleteSegments } from './segments.js';
import type { RecordingAnnouncer } from './RecordingAnnouncer.js';
import type { RecorderObserver } from './observer.js';

/** How often a node refreshes the records of its jobs; a record three times older is orphaned. */
export const REFRESH_MS = 5_000;
const ORPHANED_MS = 3 * REFRESH_MS;
const ACTIVE_STATES = new Set([RecordingState.RECORDING_STATE_RECORDING, RecordingState.RECORDING_STATE_PAUSED, RecordingState.RECORDING_STATE_STOPPING]);

export interface JobRecordsDeps {
  config: Pick<RecorderConfig, 'nodeId' | 'finishedRecordMs' | 'workDir' | 'ffmpeg' | 'ffprobe' | 'maxPartBytes'>;
  /** The recordings bucket: one record per recording, kept by the node running it. */
  records: KV;
  directory: SfuDirectory;
  store: ArtifactStore;
  segments: ArtifactStore;
  announcer: RecordingAnnouncer;
  observer: RecorderObserver;
  /** Whether the recording runs on this node. */
  isRunning(recordingId: string): boolean;
  log: Logger;
}

/**
 * The records of the recordings in NATS KV, so any node can answer for them and finish them when
 * their node dies: written at each change of a job and refreshed while it runs; recordings whose
 * node stopped refreshing them are claimed and finished here; finished ones are purged after a
 * while.
 */
export class JobRecords {
  private stopped = false;

  constructor(private readonly deps: JobRecordsDeps) {}

  async save(record: RecordingJobRecord): Promise<void> {
    const recording = record.recording!;
    await this.deps.records.put(kvKeys.recording(recording.tenant, recording.recordingId), RecordingJobRecord.encode(record).finish()).catch((error) => {
      this.deps.log.warn({ err: error, recordingId: recording.recordingId }, 'saving the recording record failed');
    });
  }

  /** Marks the records of the running jobs fresh: their node is alive. */
  async refresh(records: Iterable<RecordingJobRecord>): Promise<void> {
    for (const record of records) {
      record.refreshedAtMs = Date.now();
      await this.save(record);
    }
  }

  /** A recording of the tenant as its record has it (running on any node, or finished a while ago). */
  async recording(tenant: string, recordingId: string): Promise<Recording> {
    const entry = await this.deps.records.get(kvKeys.recording(assertSubjectToken('tenant', tenant), assertSubjectToken('recording id', recordingId)));
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.NOT_FOUND, 'recording not found');
    return readJobRecord(entry.value).recording!;
  }

  /** The record goes for good (a data-subject erasure). */
  async purge(tenant: string, recordingId: string): Promise<void> {
    await this.deps.records.purge(kvKeys.recording(tenant, recordingId));
  }

  /** The node is stopping: it takes no orphans any more. */
  stop(): void {
    this.stopped = true;
  }

  /**
   * Recordings whose node stopped refreshing them (it died): one node claims each (compare-and-
   * set on the record), assembles what its segments hold and ends it as partial.
   */
  async finishOrphans(): Promise<void> {
    if (this.stopped) return;
    const { records, config, log } = this.deps;
    try {
      for (const key of await liveKeys(records)) {
        const entry = await records.get(key);
        if (!isLiveEntry(entry)) continue;
        let record: RecordingJobRecord;
        try {
          record = readJobRecord(entry.value);
        } catch (error) {
          log.warn({ err: error, key }, 'invalid recording job record left alone');
          continue;
        }
        const recording = record.recording;
        if (recording && !ACTIVE_STATES.has(recording.state) && !this.deps.isRunning(recording.recordingId)) {
          // Finished, announced, kept a while for GetRecording: its purpose has ended.
          if (Date.now() - entry.created.getTime() >= config.finishedRecordMs) await records.purge(key, { previousSeq: entry.revision }).catch(() => undefined);
          continue;
        }
        if (!recording || !ACTIVE_STATES.has(recording.state) || this.deps.isRunning(recording.recordingId)) continue;
        if (Date.now() - record.refreshedAtMs < ORPHANED_MS) continue;
        record.nodeId = config.nodeId;
        record.refreshedAtMs = Date.now();
        try {
          await records.update(key, RecordingJobRecord.encode(record).finish(), entry.revision);
        } catch {
          continue; // another node claimed it
        }
        await this.finishOrphan(record);
      }
    } catch (error) {
      log.warn({ err: error }, 'looking for orphaned recordings failed');
    }
  }

  private async finishOrphan(record: RecordingJobRecord): Promise<void> {
    const { config, directory, log } = this.deps;
    const recording = record.recording!;
    log.warn({ recordingId: recording.recordingId, segments: record.segments.length }, 'finishing a recording whose recorder died');
    const nodeId = await directory.placementOf(recording.tenant, recording.room);
    const node = nodeId ? await directory.node(nodeId) : undefined;
    if (node && record.tapId) {
      const sfu = directory.clientForNode(node);
      await callUnary(sfu, sfu.closeTap, { room: { tenant: recording.tenant, room: recording.room }, tapId: record.tapId }).catch(() => undefined);
    }
    const dir = path.join(config.workDir, `${recording.recordingId}-recovered`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const endedAtMs = record.segments.reduce((end, s) => Math.max(end, Math.round(s.endS * 1000)), recording.startedAtMs);
    try {
      const { artifacts, problem } = await assembleRecording({
        record,
        endedAtMs,
        dir,
        store: this.deps.store,
        segments: this.deps.segments,
        ffmpeg: config.ffmpeg,
        ffprobe: config.ffprobe,
        maxPartBytes: config.maxPartBytes,
      });
      recording.artifacts = artifacts;
      recording.state = artifacts.length > 0 ? RecordingState.RECORDING_STATE_PARTIAL : RecordingState.RECORDING_STATE_FAILED;
      recording.failureReason = ['the recorder running it stopped unexpectedly', problem].filter(Boolean).join('; ');
      await deleteSegments(this.deps.segments, recording.tenant, record.segments, log);
      record.segments = [];
    } catch (error) {
      recording.state = RecordingState.RECORDING_STATE_FAILED;
      recording.failureReason = `the recorder running it stopped unexpectedly; assembling failed: ${(error as Error).message}`;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const open = recording.pauses[recording.pauses.length - 1];
    if (open && open.endMs === 0) open.endMs = endedAtMs - recording.startedAtMs;
    recording.endedAtMs = endedAtMs;
    await this.save(record);
    this.deps.observer.safeEmit('orphanfinished', recording);
    await this.deps.announcer.orphanEnded(recording);
    await this.deps.announcer.ready(recording);
  }
}
