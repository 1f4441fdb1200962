import type { Recording, RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { ParticipantStore, RecorderDirectory, SfuDirectory } from '@gateway/cluster';
import { DrainWait, ErrorCode, GatewayError, assertSubjectToken, type ArtifactStore, type Logger, type StopMode } from '@gateway/common';
import type { RecorderConfig } from './config.js';
import { RecordingJob } from './RecordingJob.js';
import type { RecordingControl } from './grpc/RecorderGrpcService.js';
import type { JobRecords } from './JobRecords.js';
import type { RecordingAnnouncer } from './RecordingAnnouncer.js';
import type { RoomFollower } from './RoomFollower.js';
import type { RecorderObserver } from './observer.js';

/** How long an ended job's announcement is kept for StopRecording and DiscardRecording to wait on. */
const ANNOUNCED_KEPT_MS = 60_000;

export interface RecordingJobsDeps {
  config: RecorderConfig;
  directory: SfuDirectory;
  recorders: RecorderDirectory;
  store: ArtifactStore;
  segments: ArtifactStore;
  participants: ParticipantStore;
  records: JobRecords;
  announcer: RecordingAnnouncer;
  follower: RoomFollower;
  observer: RecorderObserver;
  /** The node's load changed (a job came or went): placement should see it at once. */
  loadChanged(): void;
  log: Logger;
}

/** What the node's registry record says of its jobs. */
export interface JobsLoad {
  jobs: number;
  cpuInUse: number;
  draining: boolean;
}

/**
 * The recordings running on this node: which it admits (up to its CPU budget, none while it
 * drains or stops), their control (pause, resume, stop, discard), and their ends.
 */
export class RecordingJobs implements RecordingControl {
  readonly jobs = new Map<string, RecordingJob>();
  /** Ended jobs until recording.ready is out, so StopRecording can answer after it. */
  private readonly announced = new Map<string, Promise<void>>();
  /** Draining: no new recordings; the running ones go on until their calls end. */
  private draining = false;
  private stopping = false;
  private readonly drainWait = new DrainWait(() => this.jobs.size === 0);

  constructor(private readonly deps: RecordingJobsDeps) {}

  get load(): JobsLoad {
    return { jobs: this.jobs.size, cpuInUse: this.cpuInUse(), draining: this.draining };
  }

  get isDraining(): boolean {
    return this.draining;
  }

  async startRecording(tenant: string, room: string, requestedBy: string, options?: RecordingOptions): Promise<Recording> {
    const { config, directory, recorders, log } = this.deps;
    assertSubjectToken('tenant', tenant);
    assertSubjectToken('room', room);
    if (this.stopping || this.draining) throw new GatewayError(ErrorCode.DRAINING, 'this recorder is stopping');
    if (this.cpuInUse() + this.jobCost(options) > config.cpuBudget + 1e-9) {
      throw new GatewayError(ErrorCode.NO_CAPACITY, 'this recorder has no CPU left for another recording');
    }
    const nodeId = await directory.placementOf(tenant, room);
    const node = nodeId ? await directory.node(nodeId) : undefined;
    if (!node) throw new GatewayError(ErrorCode.NOT_FOUND, 'the room is not live');
    const current = await recorders.recordingOf(tenant, room);
    if (current) throw new GatewayError(ErrorCode.ALREADY_EXISTS, 'the room is already being recorded');
    const job = new RecordingJob(
      {
        sfu: directory.clientForNode(node),
        store: this.deps.store,
        segments: this.deps.segments,
        workDir: config.workDir,
        rtpIp: config.rtpIp,
        ffmpeg: config.ffmpeg,
        ffprobe: config.ffprobe,
        segmentSeconds: config.segmentSeconds,
        maxPartBytes: config.maxPartBytes,
        roles: async () => new Map((await this.deps.participants.list(tenant, room)).map((p) => [p.info!.participantId, p.info!.role])),
        log,
      },
      config.nodeId,
      tenant,
      room,
      requestedBy,
      options,
    );
    const id = job.recording.recordingId;
    this.add(job);
    job.on('changed', (record) => void this.deps.records.save(record));
    job.on('capture', () => this.deps.observer.safeEmit('capturestarted'));
    job.on('status', (state, by) => void this.deps.announcer.status(job.recording, state, by));
    job.once('ended', (recording) => {
      const ended = this.onEnded(recording, job.cpuSeconds);
      this.announced.set(id, ended);
      void ended.finally(() => setTimeout(() => this.announced.delete(id), ANNOUNCED_KEPT_MS).unref());
    });
    try {
      await job.start();
    } catch (error) {
      this.remove(id);
      throw error;
    } finally {
      // Placement sees the new load at once rather than at the next beat.
      this.deps.loadChanged();
    }
    this.deps.follower.follow(job, node.nodeId);
    return job.recording;
  }

  /** Estimated CPU (cores) a job takes, by what it produces. */
  private jobCost(options: RecordingOptions | undefined): number {
    return options?.transcodeMp4 ? this.deps.config.mp4JobCpuCost : this.deps.config.jobCpuCost;
  }

  private cpuInUse(): number {
    return [...this.jobs.values()].reduce((sum, job) => sum + this.jobCost(job.recording.options), 0);
  }

  private add(job: RecordingJob): void {
    this.jobs.set(job.recording.recordingId, job);
    this.deps.observer.safeEmit('jobadded', job.recording.recordingId);
  }

  private remove(recordingId: string): void {
    if (!this.jobs.delete(recordingId)) return;
    this.deps.observer.safeEmit('jobremoved', recordingId);
  }

  /** The job of a recording of this tenant running on this node. */
  job(tenant: string, recordingId: string): RecordingJob {
    const job = this.jobs.get(recordingId);
    if (!job || job.recording.tenant !== tenant) throw new GatewayError(ErrorCode.NOT_FOUND, 'recording not found (or not running on this node)');
    return job;
  }

  async getRecording(tenant: string, recordingId: string): Promise<Recording> {
    const running = this.jobs.get(recordingId);
    if (running && running.recording.tenant === tenant) return running.recording;
    return this.deps.records.recording(tenant, recordingId);
  }

  /** Stops a recording and resolves once it is stored and announced. */
  async stopRecording(tenant: string, recordingId: string, by: string): Promise<Recording> {
    const job = this.job(tenant, recordingId);
    const recording = await job.stop(by);
    await this.announced.get(recordingId);
    return recording;
  }

  /** Discards a running recording (a data-subject erasure): segments, record and all. */
  async discardRecording(tenant: string, recordingId: string, by: string): Promise<{ recordingId: string; segments: number }> {
    const job = this.job(tenant, recordingId);
    const segments = await job.discard(by);
    await this.announced.get(recordingId);
    await this.deps.records.purge(tenant, recordingId);
    return { recordingId, segments };
  }

  private async onEnded(recording: Recording, cpuSeconds: number): Promise<void> {
    this.remove(recording.recordingId);
    this.drainWait.check();
    this.deps.loadChanged();
    this.deps.follower.unfollow(recording.recordingId);
    this.deps.observer.safeEmit('jobended', recording, cpuSeconds);
    await this.deps.announcer.ready(recording);
  }

  /** No new recordings from now on; false when the node drains already. */
  startDrain(): boolean {
    if (this.draining) return false;
    this.draining = true;
    this.deps.log.info({ jobs: this.jobs.size }, 'draining');
    return true;
  }

  /** No new recordings, for good: the node is stopping. */
  refuseNew(): void {
    this.stopping = true;
  }

  /** Resolves once every job has ended, or after `graceMs`; then once the ended ones are announced. */
  async waitForEnd(graceMs: number): Promise<void> {
    await this.drainWait.wait(graceMs);
    await Promise.all([...this.announced.values()]);
  }

  /**
   * graceful: every recording still running is finished here and stored as it is (partial).
   * immediate: the captures are killed; their stored segments stay for another node (or this
   * one, restarted) to finish.
   */
  async stopAll(mode: StopMode): Promise<void> {
    await Promise.all([...this.jobs.values()].map((job) => (mode === 'graceful' ? job.stop('', 'the recorder stopped') : job.abort()).catch(() => undefined)));
  }
}
