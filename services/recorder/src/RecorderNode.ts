import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { jetstream } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { ParticipantRecord, RecordingReady, RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { RecordingJobRecord, RecordingState, type Recording, type RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ParticipantStore, RecorderDirectory, SfuDirectory, type RecorderNodeInfo, type RoomRecording } from '@gateway/cluster';
import {
  ArtifactStore,
  ErrorCode,
  GatewayError,
  createKeyring,
  assertSubjectToken,
  buckets,
  callUnary,
  connectNats,
  ensureStream,
  createMetricsRegistry,
  observeKeyring,
  decodeChecked,
  grpcServerCredentials,
  inMessageSpan,
  kvKeys,
  natsHeadersWithTrace,
  openBucket,
  roomEventAttributes,
  roomEventSchema,
  startGrpcServer,
  startOpsServer,
  stopGrpcServer,
  streams,
  subjects,
  type KV,
  type Logger,
  type NatsConnection,
  type StopMode,
  DrainWait,
  liveKeys,
  readDrainToken,
  readJobRecord,
} from '@gateway/common';
import type { RecorderConfig } from './config.js';
import { RecordingJob, type RecordingStatusName } from './RecordingJob.js';
import { assembleRecording } from './assemble.js';
import { deleteSegments } from './segments.js';
import { registerRecorderService } from './grpc/RecorderGrpcService.js';

/** How often a node refreshes the records of its jobs; a record three times older is orphaned. */
const REFRESH_MS = 5_000;
const ORPHANED_MS = 3 * REFRESH_MS;
const ACTIVE_STATES = new Set([RecordingState.RECORDING_STATE_RECORDING, RecordingState.RECORDING_STATE_PAUSED, RecordingState.RECORDING_STATE_STOPPING]);

/**
 * A recorder node: runs recording jobs (one capture process each) up to its capacity, keeps
 * their records in NATS KV so any node can answer for them and finish them when their node
 * dies, follows each room's events (new producers, the room ending), and announces finished
 * recordings on JetStream.
 */
export class RecorderNode {
  readonly jobs = new Map<string, RecordingJob>();
  readonly metrics: Registry = createMetricsRegistry('recorder');
  grpcPort = 0;
  grpcAddress = '';
  opsPort = 0;
  private stopGrpc: (() => Promise<void>) | undefined;
  private stopOps: (() => Promise<void>) | undefined;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly statusUpdates = new Map<string, Promise<void>>();
  /** Ended jobs until recording.ready is out, so StopRecording can answer after it. */
  private readonly announced = new Map<string, Promise<void>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private closing: Promise<void> | undefined;
  /** Draining: no new recordings; the running ones go on until their calls end. */
  private draining = false;
  /** Out of the registry for good: the node is stopping. */
  private deregistered = false;
  private readonly drainWait = new DrainWait(() => this.jobs.size === 0);
  private readonly ended: Counter<'state'>;
  private readonly storedBytes: Counter;
  private readonly jobCpu: Histogram;

  private constructor(
    readonly config: RecorderConfig,
    private readonly nc: NatsConnection,
    private readonly directory: SfuDirectory,
    private readonly recorders: RecorderDirectory,
    private readonly store: ArtifactStore,
    private readonly segments: ArtifactStore,
    private readonly records: KV,
    private readonly participants: ParticipantStore,
    private readonly log: Logger,
  ) {
    const jobs = this.jobs;
    new Gauge({
      name: 'gateway_recorder_jobs_active',
      help: 'recording jobs running on this node',
      registers: [this.metrics],
      collect() {
        this.set(jobs.size);
      },
    });
    this.ended = new Counter({ name: 'gateway_recorder_jobs_ended_total', help: 'recording jobs ended, by final state', labelNames: ['state'], registers: [this.metrics] });
    this.jobCpu = new Histogram({
      name: 'gateway_recorder_job_cpu_seconds',
      help: 'CPU seconds the capture of a recording used, per job',
      buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers: [this.metrics],
    });
    this.storedBytes = new Counter({ name: 'gateway_recorder_stored_bytes_total', help: 'bytes of recordings stored (before encryption)', registers: [this.metrics] });
  }

  static async start(config: RecorderConfig, log: Logger): Promise<RecorderNode> {
    // A bad drain token file stops the node before it starts anything.
    const drainToken = readDrainToken(config.drainTokenFile);
    if (!config.grpcTls) log.warn('gRPC is plaintext (no GRPC_TLS_*): callers are not identified; for one machine only');
    // Plaintext left by a previous run that crashed is removed before anything else.
    await rm(config.workDir, { recursive: true, force: true });
    await mkdir(config.workDir, { recursive: true, mode: 0o700 });
    const nc = await connectNats(config.nats, config.nodeId, log);
    const keyring = await createKeyring(config.keyring);
    await ensureStream(nc, streams.recordings);
    const node = new RecorderNode(
      config,
      nc,
      await SfuDirectory.open(nc, config.grpcTls, log),
      await RecorderDirectory.open(nc, config.grpcTls, log),
      await ArtifactStore.open(nc, keyring, 'recordings'),
      await ArtifactStore.open(nc, keyring, 'segments'),
      await openBucket(nc, buckets.recordings),
      await ParticipantStore.open(nc),
      log,
    );
    observeKeyring(node.metrics, keyring);
    const grpc = await startGrpcServer((server) => registerRecorderService(server, node, log), config.grpcHost, config.grpcPort, grpcServerCredentials(config.grpcTls));
    node.grpcPort = grpc.port;
    node.grpcAddress = config.grpcAdvertisedAddress ?? `127.0.0.1:${grpc.port}`;
    node.stopGrpc = () => stopGrpcServer(grpc.server);
    const ops = await startOpsServer({
      port: config.opsPort,
      registry: node.metrics,
      readiness: () => (node.draining ? 'draining' : node.closing ? 'stopping' : nc.isClosed() ? 'nats connection closed' : undefined),
      drain: () => node.startDrain(),
      drainToken,
    });
    node.opsPort = ops.port;
    node.stopOps = ops.close;
    await node.heartbeat();
    node.timers.push(setInterval(() => void node.heartbeat(), 2_000));
    node.timers.push(setInterval(() => void node.refreshRecords(), REFRESH_MS));
    node.timers.push(setInterval(() => void node.finishOrphans(), REFRESH_MS));
    void node.finishOrphans();
    return node;
  }

  async startRecording(tenant: string, room: string, requestedBy: string, options?: RecordingOptions): Promise<Recording> {
    assertSubjectToken('tenant', tenant);
    assertSubjectToken('room', room);
    if (this.closing || this.draining) throw new GatewayError(ErrorCode.DRAINING, 'this recorder is stopping');
    if (this.cpuInUse() + this.jobCost(options) > this.config.cpuBudget + 1e-9) {
      throw new GatewayError(ErrorCode.NO_CAPACITY, 'this recorder has no CPU left for another recording');
    }
    const nodeId = await this.directory.placementOf(tenant, room);
    const node = nodeId ? await this.directory.node(nodeId) : undefined;
    if (!node) throw new GatewayError(ErrorCode.NOT_FOUND, 'the room is not live');
    const current = await this.recorders.recordingOf(tenant, room);
    if (current) throw new GatewayError(ErrorCode.ALREADY_EXISTS, 'the room is already being recorded');
    const job = new RecordingJob(
      {
        sfu: this.directory.clientForNode(node),
        store: this.store,
        segments: this.segments,
        workDir: this.config.workDir,
        rtpIp: this.config.rtpIp,
        ffmpeg: this.config.ffmpeg,
        ffprobe: this.config.ffprobe,
        segmentSeconds: this.config.segmentSeconds,
        maxPartBytes: this.config.maxPartBytes,
        roles: async () => new Map((await this.roomParticipants(tenant, room)).map((p) => [p.info!.participantId, p.info!.role])),
        log: this.log,
      },
      this.config.nodeId,
      tenant,
      room,
      requestedBy,
      options,
    );
    const id = job.recording.recordingId;
    this.jobs.set(id, job);
    job.on('changed', (record) => void this.save(record));
    job.on('status', (state, by) => void this.announceStatus(job, state, by));
    job.once('ended', (recording) => {
      this.jobCpu.observe(job.cpuSeconds);
      const ended = this.onEnded(recording);
      this.announced.set(id, ended);
      void ended.finally(() => setTimeout(() => this.announced.delete(id), 60_000).unref());
    });
    try {
      await job.start();
    } catch (error) {
      this.jobs.delete(id);
      throw error;
    } finally {
      // Placement sees the new load at once rather than at the next beat.
      void this.heartbeat();
    }
    this.followRoom(job, node.nodeId);
    return job.recording;
  }

  /** Estimated CPU (cores) a job takes, by what it produces. */
  private jobCost(options: RecordingOptions | undefined): number {
    return options?.transcodeMp4 ? this.config.mp4JobCpuCost : this.config.jobCpuCost;
  }

  private cpuInUse(): number {
    return [...this.jobs.values()].reduce((sum, job) => sum + this.jobCost(job.recording.options), 0);
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
    const entry = await this.records.get(kvKeys.recording(assertSubjectToken('tenant', tenant), assertSubjectToken('recording id', recordingId)));
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) throw new GatewayError(ErrorCode.NOT_FOUND, 'recording not found');
    return readJobRecord(entry.value).recording!;
  }

  /** New or resumed producers join the recording; the room ending (or emptying) ends it. */
  /** `sfuNodeId`: the node the job taps (the room's home when it started). */
  private followRoom(job: RecordingJob, sfuNodeId: string): void {
    const { tenant, room, recordingId } = job.recording;
    const subscription = this.nc.subscribe(subjects.roomEvents(tenant, room));
    this.subscriptions.set(recordingId, subscription);
    let refresh: NodeJS.Timeout | undefined;
    void (async () => {
      for await (const message of subscription) {
        let event: RoomEvent;
        try {
          event = decodeChecked(RoomEvent, message.data, roomEventSchema, 'room event');
          if (event.tenant !== tenant || event.room !== room) continue;
        } catch (error) {
          this.log.warn({ err: error, recordingId }, 'invalid room event dropped');
          continue;
        }
        const kind = event.event?.$case;
        // The event's trace (a new track, a leave) goes on into what the recording does about it.
        await inMessageSpan(`room event ${kind ?? 'unknown'}`, message.headers, roomEventAttributes(tenant, room, kind ?? 'unknown'), async () => {
          if (kind === 'producerAdded' || kind === 'producerResumed') {
            // Several producers usually arrive together (camera and microphone): one new capture for all.
            clearTimeout(refresh);
            refresh = setTimeout(() => void job.refreshStreams(), 300);
          } else if (kind === 'roomClosed') {
            // Only the tapped node closing the room ends the recording: another node of the room
            // draining or dying does not end the call.
            const closedOn = event.event?.$case === 'roomClosed' ? event.event.value.nodeId : '';
            if (closedOn === '' || closedOn === sfuNodeId) void job.stop('', '');
          } else if (kind === 'participantLeft') {
            const left = await this.roomParticipants(tenant, room).catch(() => undefined);
            if (left?.length === 0) void job.stop('', '');
          }
        });
      }
    })();
  }

  /**
   * Tells the room (every participant, through signaling) and keeps the room's recording in KV.
   * A job's updates are applied in order, so a quick stop never lands before its start.
   */
  private announceStatus(job: RecordingJob, state: RecordingStatusName, by: string): Promise<void> {
    const id = job.recording.recordingId;
    const next = (this.statusUpdates.get(id) ?? Promise.resolve()).then(() => this.applyStatus(job, state, by));
    this.statusUpdates.set(id, next);
    if (state === 'stopped') void next.finally(() => this.statusUpdates.get(id) === next && this.statusUpdates.delete(id));
    return next;
  }

  private async applyStatus(job: RecordingJob, state: RecordingStatusName, by: string): Promise<void> {
    const { tenant, room, recordingId } = job.recording;
    const key = kvKeys.room(tenant, room);
    try {
      if (state === 'stopped') {
        const entry = await this.recorders.roomRecordings.get(key);
        if (entry && entry.operation === 'PUT' && entry.length > 0 && entry.json<RoomRecording>().recordingId === recordingId) {
          await this.recorders.roomRecordings.delete(key, { previousSeq: entry.revision });
        }
      } else {
        const value: RoomRecording = { recordingId, nodeId: this.config.nodeId, grpcAddress: this.grpcAddress, state };
        await this.recorders.roomRecordings.put(key, JSON.stringify(value));
      }
    } catch (error) {
      this.log.warn({ err: error, recordingId }, 'updating the room recording failed');
    }
    try {
      const event = RoomEvent.encode({ tenant, room, atMs: Date.now(), origin: this.config.nodeId, event: { $case: 'recording', value: { recordingId, state, by } } }).finish();
      this.nc.publish(subjects.roomEvents(tenant, room), event, { headers: natsHeadersWithTrace() });
    } catch (error) {
      this.log.warn({ err: error, recordingId }, 'telling the room the recording state failed');
    }
  }

  /**
   * Registers this node with its load and its RTP address; entries expire when the heartbeat
   * stops. A draining node stays registered, marked so: placement passes it by, and the SFU
   * nodes still send its running recordings' taps to it.
   */
  private async heartbeat(): Promise<void> {
    if (this.deregistered) return;
    const info: RecorderNodeInfo = {
      nodeId: this.config.nodeId,
      grpcAddress: this.grpcAddress,
      rtpIp: this.config.rtpIp,
      jobs: this.jobs.size,
      cpuInUse: this.cpuInUse(),
      cpuBudget: this.config.cpuBudget,
      draining: this.draining,
      updatedAtMs: Date.now(),
    };
    await this.recorders.nodes.put(this.config.nodeId, JSON.stringify(info)).catch((error) => this.log.warn({ err: error }, 'recorder heartbeat failed'));
  }

  private async onEnded(recording: Recording): Promise<void> {
    this.jobs.delete(recording.recordingId);
    this.drainWait.check();
    void this.heartbeat();
    this.subscriptions.get(recording.recordingId)?.unsubscribe();
    this.subscriptions.delete(recording.recordingId);
    this.ended.inc({ state: RecordingState[recording.state] });
    this.storedBytes.inc(recording.artifacts.reduce((sum, a) => sum + a.sizeBytes, 0));
    await this.announce(recording);
  }

  private async save(record: RecordingJobRecord): Promise<void> {
    const recording = record.recording!;
    await this.records.put(kvKeys.recording(recording.tenant, recording.recordingId), RecordingJobRecord.encode(record).finish()).catch((error) => {
      this.log.warn({ err: error, recordingId: recording.recordingId }, 'saving the recording record failed');
    });
  }

  private async refreshRecords(): Promise<void> {
    for (const job of this.jobs.values()) {
      job.record.refreshedAtMs = Date.now();
      await this.save(job.record);
    }
  }

  /**
   * Recordings whose node stopped refreshing them (it died): one node claims each (compare-and-
   * set on the record), assembles what its segments hold and ends it as partial.
   */
  private async finishOrphans(): Promise<void> {
    if (this.closing) return;
    try {
      for (const key of await liveKeys(this.records)) {
        const entry = await this.records.get(key);
        if (!entry || entry.operation !== 'PUT' || entry.length === 0) continue;
        let record: RecordingJobRecord;
        try {
          record = readJobRecord(entry.value);
        } catch (error) {
          this.log.warn({ err: error, key }, 'invalid recording job record left alone');
          continue;
        }
        const recording = record.recording;
        if (recording && !ACTIVE_STATES.has(recording.state) && !this.jobs.has(recording.recordingId)) {
          // Finished, announced, kept a while for GetRecording: its purpose has ended.
          if (Date.now() - entry.created.getTime() >= this.config.finishedRecordMs) await this.records.purge(key, { previousSeq: entry.revision }).catch(() => undefined);
          continue;
        }
        if (!recording || !ACTIVE_STATES.has(recording.state) || this.jobs.has(recording.recordingId)) continue;
        if (Date.now() - record.refreshedAtMs < ORPHANED_MS) continue;
        record.nodeId = this.config.nodeId;
        record.refreshedAtMs = Date.now();
        try {
          await this.records.update(key, RecordingJobRecord.encode(record).finish(), entry.revision);
        } catch {
          continue; // another node claimed it
        }
        await this.finishOrphan(record);
      }
    } catch (error) {
      this.log.warn({ err: error }, 'looking for orphaned recordings failed');
    }
  }

  private async finishOrphan(record: RecordingJobRecord): Promise<void> {
    const recording = record.recording!;
    this.log.warn({ recordingId: recording.recordingId, segments: record.segments.length }, 'finishing a recording whose recorder died');
    const nodeId = await this.directory.placementOf(recording.tenant, recording.room);
    const node = nodeId ? await this.directory.node(nodeId) : undefined;
    if (node && record.tapId) {
      const sfu = this.directory.clientForNode(node);
      await callUnary(sfu, sfu.closeTap, { room: { tenant: recording.tenant, room: recording.room }, tapId: record.tapId }).catch(() => undefined);
    }
    const dir = path.join(this.config.workDir, `${recording.recordingId}-recovered`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const endedAtMs = record.segments.reduce((end, s) => Math.max(end, Math.round(s.endS * 1000)), recording.startedAtMs);
    try {
      const { artifacts, problem } = await assembleRecording({ record, endedAtMs, dir, store: this.store, segments: this.segments, ffmpeg: this.config.ffmpeg, ffprobe: this.config.ffprobe, maxPartBytes: this.config.maxPartBytes });
      recording.artifacts = artifacts;
      recording.state = artifacts.length > 0 ? RecordingState.RECORDING_STATE_PARTIAL : RecordingState.RECORDING_STATE_FAILED;
      recording.failureReason = ['the recorder running it stopped unexpectedly', problem].filter(Boolean).join('; ');
      await deleteSegments(this.segments, recording.tenant, record.segments, this.log);
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
    this.ended.inc({ state: RecordingState[recording.state] });
    const key = kvKeys.room(recording.tenant, recording.room);
    if ((await this.recorders.recordingOf(recording.tenant, recording.room))?.recordingId === recording.recordingId) await this.recorders.roomRecordings.delete(key).catch(() => undefined);
    await this.announce(recording);
  }

  private roomParticipants(tenant: string, room: string): Promise<ParticipantRecord[]> {
    return this.participants.list(tenant, room);
  }

  /** recording.ready for crm-sync, with the participants' references and nothing else about them. */
  private async announce(recording: Recording): Promise<void> {
    if (recording.artifacts.length === 0) return;
    const people = await this.roomParticipants(recording.tenant, recording.room).catch(() => []);
    const contacts = people
      .filter((p) => recording.participantIds.includes(p.info!.participantId))
      .map((p) => ({ participantId: p.info!.participantId, role: p.info!.role, externalId: p.info!.identity, crmContactId: '' }));
    const payload = RecordingReady.encode({ recording, contacts }).finish();
    // The message id makes a retry after a lost acknowledgement land only once.
    for (let attempt = 1; ; attempt++) {
      try {
        await jetstream(this.nc).publish(subjects.recordingReady(recording.tenant), payload, { msgID: recording.recordingId, timeout: 10_000, headers: natsHeadersWithTrace() });
        return;
      } catch (error) {
        this.log.error({ err: error, recordingId: recording.recordingId, attempt }, 'announcing recording.ready failed');
        if (attempt >= 5 || this.nc.isClosed()) return;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
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
    await this.records.purge(kvKeys.recording(tenant, recordingId));
    return { recordingId, segments };
  }

  /** No new recordings from now on: the node leaves placement (marked draining); running recordings go on. */
  async startDrain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.log.info({ jobs: this.jobs.size }, 'draining');
    await this.heartbeat();
  }

  /**
   * graceful: with a drain grace, the node drains and waits for its recordings to end with
   * their calls (up to the grace); then every recording still running is finished here and
   * stored as it is (partial).
   * immediate: the captures are killed; their stored segments stay for another node (or this
   * one, restarted) to finish.
   */
  close(mode: StopMode = 'immediate'): Promise<void> {
    this.closing ??= (async () => {
      if (mode === 'graceful' && this.config.drainGraceMs > 0) {
        await this.startDrain();
        await this.drainWait.wait(this.config.drainGraceMs);
        // Ended recordings are announced before the node goes.
        await Promise.all([...this.announced.values()]);
      }
      for (const timer of this.timers) clearInterval(timer);
      this.deregistered = true;
      await this.recorders.nodes.delete(this.config.nodeId).catch(() => undefined);
      await Promise.all([...this.jobs.values()].map((job) => (mode === 'graceful' ? job.stop('', 'the recorder stopped') : job.abort()).catch(() => undefined)));
      await this.stopGrpc?.();
      await this.nc.drain().catch(() => undefined);
      await this.stopOps?.();
      this.directory.close();
      this.recorders.close();
    })();
    return this.closing;
  }
}
