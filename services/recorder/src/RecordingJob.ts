import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { RecordingState, type Recording, type RecordingJobRecord, type RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ErrorCode, GatewayError, TypedEmitter, newId } from '@gateway/common';
import { assembleRecording } from './assemble.js';
import { deleteSegments } from './segments.js';
import { CapturePipeline, DISK_FULL, NO_SPACE, type JobContext } from './CapturePipeline.js';

export type { JobContext } from './CapturePipeline.js';

export type RecordingStatusName = 'started' | 'paused' | 'resumed' | 'stopped';

type JobEvents = {
  /** What participants are told: the recording started, paused, resumed or stopped. */
  status: [state: RecordingStatusName, by: string];
  /** State, pauses, segments or artifacts changed: persist the record. */
  changed: [record: RecordingJobRecord];
  /** A capture started: the first, or one replacing another (producers changed, a resume, ffmpeg died). */
  capture: [];
  ended: [recording: Recording];
};

/**
 * One recording's lifecycle: started, paused, resumed, stopped or discarded. The media side (taps,
 * one ffmpeg "capture" at a time, encrypted segments) is its CapturePipeline's. When producers
 * come or go, or ffmpeg dies, a new capture replaces the old one on the same timeline. A PCI
 * pause stops the tap at the SFU, so nothing of the interval ever reaches this process. At the
 * end the segments are assembled into the session's files, which are stored encrypted; the
 * segments are then deleted.
 */
export class RecordingJob extends TypedEmitter<JobEvents> {
  readonly record: RecordingJobRecord;
  /** The taps, captures and segments (CapturePipeline.ts). */
  private readonly pipeline: CapturePipeline;
  private poller: NodeJS.Timeout | undefined;
  private recapture: Promise<void> = Promise.resolve();
  private stopping: Promise<Recording> | undefined;

  constructor(
    private readonly ctx: JobContext,
    nodeId: string,
    tenant: string,
    room: string,
    startedBy: string,
    options: RecordingOptions = { transcodeMp4: false, skipPausedAudio: false },
  ) {
    super();
    const now = Date.now();
    this.record = {
      recording: {
        recordingId: newId('RC'),
        tenant,
        room,
        state: RecordingState.RECORDING_STATE_RECORDING,
        startedAtMs: now,
        endedAtMs: 0,
        pauses: [],
        artifacts: [],
        failureReason: '',
        startedBy,
        participantIds: [],
        options,
      },
      nodeId,
      refreshedAtMs: now,
      streams: [],
      segments: [],
      tapId: '',
    };
    this.pipeline = new CapturePipeline(ctx, this.record, this.dir, {
      paused: () => this.paused,
      ending: () => this.stopping !== undefined,
      changed: () => this.changed(),
      captureStarted: () => this.safeEmit('capture'),
      restart: () => void this.refreshStreams(),
      fail: (reason) => void this.stop('', reason),
    });
  }

  get recording(): Recording {
    return this.record.recording!;
  }

  private get dir(): string {
    return path.join(this.ctx.workDir, this.recording.recordingId);
  }

  private get paused(): boolean {
    return this.recording.state === RecordingState.RECORDING_STATE_PAUSED;
  }

  /** Taps the room and starts capturing; fails without leaving anything behind. */
  async start(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await this.pipeline.start();
      const capture = this.pipeline.current;
      if (!capture) throw new GatewayError(ErrorCode.INVALID_STATE, 'the room has no media to record');
      this.poller = setInterval(() => {
        void this.pipeline.collect().catch((error) => this.ctx.log.warn({ err: error }, 'collecting segments failed'));
        void this.pipeline.closeUnclosedTaps();
      }, 1_000);
      this.ctx.log.info({ recordingId: this.recording.recordingId, streams: capture.streams.length }, 'recording started');
      this.safeEmit('status', 'started', this.recording.startedBy);
    } catch (error) {
      await this.pipeline.close(this.pipeline.current, 'kill');
      await rm(this.dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Producers came or went: capture the new set (serialised; the old capture ends first). */
  refreshStreams(): Promise<void> {
    this.recapture = this.recapture
      .then(async () => {
        // Nothing is captured during a pause; resuming starts a capture of whatever is live then.
        if (this.stopping || this.paused) return;
        if (await this.pipeline.capturesEveryLiveProducer()) return;
        await this.pipeline.close(this.pipeline.current, 'finish');
        await this.pipeline.start();
      })
      .catch((error) => {
        this.ctx.log.error({ err: error, recordingId: this.recording.recordingId }, 'restarting the capture failed');
        void this.stop('', `capture could not be restarted: ${(error as Error).message}`);
      });
    return this.recapture;
  }

  /** CPU seconds the job's captures have used so far. */
  get cpuSeconds(): number {
    return this.pipeline.cpuSeconds;
  }

  async pause(by: string): Promise<Recording> {
    if (this.recording.state !== RecordingState.RECORDING_STATE_RECORDING) throw new GatewayError(ErrorCode.INVALID_STATE, 'the recording is not running');
    await this.recapture;
    this.recording.pauses.push({ startMs: Date.now() - this.recording.startedAtMs, endMs: 0, pausedBy: by, resumedBy: '' });
    this.recording.state = RecordingState.RECORDING_STATE_PAUSED;
    // The capture ends while media still flows (ffmpeg stops cleanly at the next packet) and its
    // tap is closed, so nothing leaves the SFU for this recording during the pause. The few
    // milliseconds that arrive after the pause began are cut at assembly.
    await this.pipeline.close(this.pipeline.detach(), 'finish');
    this.changed();
    this.safeEmit('status', 'paused', by);
    return this.recording;
  }

  async resume(by: string): Promise<Recording> {
    if (this.recording.state !== RecordingState.RECORDING_STATE_PAUSED) throw new GatewayError(ErrorCode.INVALID_STATE, 'the recording is not paused');
    await this.recapture;
    this.recording.state = RecordingState.RECORDING_STATE_RECORDING;
    const open = this.recording.pauses[this.recording.pauses.length - 1]!;
    open.endMs = Date.now() - this.recording.startedAtMs;
    open.resumedBy = by;
    // A new capture of whatever is live now; its tap asks for key frames, so video restarts at once.
    await this.refreshStreams();
    this.changed();
    this.safeEmit('status', 'resumed', by);
    return this.recording;
  }

  /** Kills the capture and removes the plaintext; the stored segments and the record stay for recovery. */
  async abort(): Promise<void> {
    clearInterval(this.poller);
    this.stopping ??= Promise.resolve(this.recording);
    await this.pipeline.close(this.pipeline.current, 'kill');
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * A data-subject erasure: the capture is killed and nothing of the recording is kept (the
   * voice of everyone is mixed into one file, so it cannot be kept without one of them). The
   * plaintext and the stored segments are deleted, nothing is assembled, and the job ends
   * without artifacts (so nothing is announced). Returns the segments deleted; 0 when the job
   * was already stopping (its recording.ready then names the end user, and crm-sync erases it).
   */
  async discard(by: string): Promise<number> {
    if (this.stopping) {
      await this.stopping;
      return 0;
    }
    let deleted = 0;
    this.stopping = (async () => {
      clearInterval(this.poller);
      this.recording.state = RecordingState.RECORDING_STATE_FAILED;
      this.recording.failureReason = 'discarded: a participant asked for erasure';
      this.safeEmit('status', 'stopped', by);
      await this.recapture.catch(() => undefined);
      await this.pipeline.close(this.pipeline.current, 'kill').catch((error) => this.ctx.log.warn({ err: error }, 'closing the capture failed'));
      await rm(this.dir, { recursive: true, force: true });
      for (const segment of this.record.segments) {
        await this.ctx.segments.delete(this.recording.tenant, segment.objectId);
        deleted++;
      }
      this.record.segments = [];
      this.recording.artifacts = [];
      this.recording.endedAtMs = Date.now();
      this.ctx.log.info({ recordingId: this.recording.recordingId, segments: deleted }, 'recording discarded');
      // No 'changed': the node deletes the job's record rather than saving it.
      this.safeEmit('ended', this.recording);
      return this.recording;
    })();
    await this.stopping;
    return deleted;
  }

  /** Stops capturing, assembles and stores the files, and ends the job; idempotent. */
  stop(by: string, failure = ''): Promise<Recording> {
    this.stopping ??= this.finish(by, failure);
    return this.stopping;
  }

  private async finish(by: string, failure: string): Promise<Recording> {
    clearInterval(this.poller);
    const open = this.recording.pauses[this.recording.pauses.length - 1];
    if (open && open.endMs === 0) {
      open.endMs = Date.now() - this.recording.startedAtMs;
      open.resumedBy = by;
    }
    this.recording.state = RecordingState.RECORDING_STATE_STOPPING;
    this.changed();
    // Participants learn at once that nothing more is recorded; storing the files takes a while.
    this.safeEmit('status', 'stopped', by);
    await this.recapture.catch(() => undefined);
    await this.pipeline.close(this.pipeline.current, 'finish').catch((error) => this.ctx.log.warn({ err: error }, 'closing the capture failed'));
    await this.pipeline.closeUnclosedTaps();
    const endedAtMs = Date.now();
    try {
      const { artifacts, problem } = await assembleRecording({
        record: this.record,
        endedAtMs,
        dir: this.dir,
        store: this.ctx.store,
        segments: this.ctx.segments,
        ffmpeg: this.ctx.ffmpeg,
        ffprobe: this.ctx.ffprobe,
        maxPartBytes: this.ctx.maxPartBytes,
      });
      this.recording.artifacts = artifacts;
      const reason = failure || (NO_SPACE.test(problem) ? DISK_FULL : problem);
      this.recording.failureReason = reason;
      this.recording.state = artifacts.length === 0 ? RecordingState.RECORDING_STATE_FAILED : reason ? RecordingState.RECORDING_STATE_PARTIAL : RecordingState.RECORDING_STATE_COMPLETE;
      // The segments were only there in case this node died; the files replace them.
      await deleteSegments(this.ctx.segments, this.recording.tenant, this.record.segments, this.ctx.log);
      this.record.segments = [];
    } catch (error) {
      this.recording.state = RecordingState.RECORDING_STATE_FAILED;
      const message = (error as Error).message;
      this.recording.failureReason = failure || (NO_SPACE.test(message) || (error as { code?: string }).code === 'ENOSPC' ? DISK_FULL : `assembling the recording failed: ${message}`);
      // Nothing will be made of the segments now: shred them rather than leave them behind.
      await deleteSegments(this.ctx.segments, this.recording.tenant, this.record.segments, this.ctx.log);
      this.record.segments = [];
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
    this.recording.endedAtMs = endedAtMs;
    this.ctx.log.info({ recordingId: this.recording.recordingId, state: RecordingState[this.recording.state], artifacts: this.recording.artifacts.length }, 'recording ended');
    this.changed();
    this.safeEmit('ended', this.recording);
    return this.recording;
  }

  private changed(): void {
    this.record.refreshedAtMs = Date.now();
    this.safeEmit('changed', this.record);
  }
}
