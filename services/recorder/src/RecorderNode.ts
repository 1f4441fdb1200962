import { mkdir, rm } from 'node:fs/promises';
import { Counter, Gauge } from 'prom-client';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { ParticipantRecord, RecordingReady } from '@gateway/proto/gateway/events/v1/events';
import { Recording, RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SfuDirectory } from '@gateway/cluster';
import {
  ArtifactStore,
  ErrorCode,
  GatewayError,
  StaticKeyring,
  assertSubjectToken,
  buckets,
  connectNats,
  createMetricsRegistry,
  grpcServerCredentials,
  kvKeys,
  openBucket,
  startGrpcServer,
  startOpsServer,
  stopGrpcServer,
  streams,
  subjects,
  type KV,
  type Logger,
  type NatsConnection,
  type StopMode,
} from '@gateway/common';
import type { Registry } from 'prom-client';
import type { RecorderConfig } from './config.js';
import { RecordingJob } from './RecordingJob.js';
import { registerRecorderService } from './grpc/RecorderGrpcService.js';

/**
 * A recorder node: runs recording jobs (one encoder process each) up to its capacity, keeps
 * their metadata in NATS KV so any node can answer for them, and announces finished
 * recordings on JetStream.
 */
export class RecorderNode {
  readonly jobs = new Map<string, RecordingJob>();
  readonly metrics: Registry = createMetricsRegistry('recorder');
  grpcPort = 0;
  opsPort = 0;
  private stopGrpc: (() => Promise<void>) | undefined;
  private stopOps: (() => Promise<void>) | undefined;
  private closing: Promise<void> | undefined;
  private readonly ended = new Counter({ name: 'gateway_recorder_jobs_ended_total', help: 'recording jobs ended, by final state', labelNames: ['state'] as const, registers: [this.metrics] });
  private readonly storedBytes = new Counter({ name: 'gateway_recorder_stored_bytes_total', help: 'bytes of recordings stored (before encryption)', registers: [this.metrics] });

  private constructor(
    readonly config: RecorderConfig,
    private readonly nc: NatsConnection,
    private readonly directory: SfuDirectory,
    private readonly store: ArtifactStore,
    private readonly recordings: KV,
    private readonly participants: KV,
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
  }

  static async start(config: RecorderConfig, log: Logger): Promise<RecorderNode> {
    // Plaintext left by a previous run that crashed is removed before anything else.
    await rm(config.workDir, { recursive: true, force: true });
    await mkdir(config.workDir, { recursive: true, mode: 0o700 });
    let nc: NatsConnection;
    try {
      nc = await connectNats(config.natsUrl, config.nodeId, log);
    } catch (error) {
      throw new GatewayError(ErrorCode.UNAVAILABLE, `cannot reach NATS at ${config.natsUrl}`, { cause: error });
    }
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: streams.recordings.name, subjects: [...streams.recordings.subjects] }).catch(async (error) => {
      // Exists already (another node created it): fine when its subjects are ours.
      const info = await jsm.streams.info(streams.recordings.name).catch(() => undefined);
      if (!info) throw error;
    });
    const node = new RecorderNode(
      config,
      nc,
      await SfuDirectory.open(nc, config.grpcTls, log),
      await ArtifactStore.open(nc, new StaticKeyring(config.tenantKeys)),
      await openBucket(nc, buckets.recordings),
      await openBucket(nc, buckets.participants),
      log,
    );
    const grpc = await startGrpcServer((server) => registerRecorderService(server, node, log), config.grpcHost, config.grpcPort, grpcServerCredentials(config.grpcTls));
    node.grpcPort = grpc.port;
    node.stopGrpc = () => stopGrpcServer(grpc.server);
    const ops = await startOpsServer({
      port: config.opsPort,
      registry: node.metrics,
      readiness: () => (node.closing ? 'stopping' : nc.isClosed() ? 'nats connection closed' : undefined),
    });
    node.opsPort = ops.port;
    node.stopOps = ops.close;
    return node;
  }

  async startRecording(tenant: string, room: string, requestedBy: string): Promise<Recording> {
    assertSubjectToken('tenant', tenant);
    assertSubjectToken('room', room);
    if (this.closing) throw new GatewayError(ErrorCode.DRAINING, 'this recorder is stopping');
    if (this.jobs.size >= this.config.maxJobs) throw new GatewayError(ErrorCode.NO_CAPACITY, 'this recorder has no capacity for another recording');
    const nodeId = await this.directory.placementOf(tenant, room);
    const node = nodeId ? await this.directory.node(nodeId) : undefined;
    if (!node) throw new GatewayError(ErrorCode.NOT_FOUND, 'the room is not live');
    const job = new RecordingJob(
      {
        sfu: this.directory.clientForNode(node),
        store: this.store,
        workDir: this.config.workDir,
        rtpIp: this.config.rtpIp,
        ffmpeg: this.config.ffmpeg,
        ffprobe: this.config.ffprobe,
        roles: async () => new Map((await this.roomParticipants(tenant, room)).map((p) => [p.info!.participantId, p.info!.role])),
        log: this.log,
      },
      tenant,
      room,
      requestedBy,
    );
    const id = job.recording.recordingId;
    this.jobs.set(id, job);
    job.on('changed', (recording) => void this.save(recording));
    job.once('ended', (recording) => {
      this.jobs.delete(id);
      this.ended.inc({ state: RecordingState[recording.state] });
      this.storedBytes.inc(recording.artifacts.reduce((sum, a) => sum + a.sizeBytes, 0));
      void this.announce(recording);
    });
    try {
      await job.start();
    } catch (error) {
      this.jobs.delete(id);
      // A room that closed under us reads as not found, as for any other room that is not live.
      throw GatewayError.from(error, ErrorCode.INTERNAL);
    }
    await this.save(job.recording);
    return job.recording;
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
    const entry = await this.recordings.get(kvKeys.recording(assertSubjectToken('tenant', tenant), assertSubjectToken('recording id', recordingId)));
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) throw new GatewayError(ErrorCode.NOT_FOUND, 'recording not found');
    return Recording.decode(entry.value);
  }

  private async save(recording: Recording): Promise<void> {
    await this.recordings.put(kvKeys.recording(recording.tenant, recording.recordingId), Recording.encode(recording).finish()).catch((error) => {
      this.log.warn({ err: error, recordingId: recording.recordingId }, 'saving recording metadata failed');
    });
  }

  private async roomParticipants(tenant: string, room: string): Promise<ParticipantRecord[]> {
    const keys: string[] = [];
    for await (const key of await this.participants.keys(kvKeys.participantsOfRoom(tenant, room))) keys.push(key);
    const entries = await Promise.all(keys.map((key) => this.participants.get(key)));
    return entries.filter((e) => e && e.operation === 'PUT' && e.length > 0).map((e) => ParticipantRecord.decode(e!.value)).filter((r) => r.info);
  }

  /** recording.ready for crm-sync, with the participants' references and nothing else about them. */
  private async announce(recording: Recording): Promise<void> {
    if (recording.artifacts.length === 0) return;
    const people = await this.roomParticipants(recording.tenant, recording.room).catch(() => []);
    const contacts = people
      .filter((p) => recording.participantIds.includes(p.info!.participantId))
      .map((p) => ({ participantId: p.info!.participantId, role: p.info!.role, externalId: p.info!.identity, crmContactId: '' }));
    const ready = RecordingReady.encode({ recording, contacts }).finish();
    try {
      await jetstream(this.nc).publish(subjects.recordingReady(recording.tenant), ready, { msgID: recording.recordingId });
    } catch (error) {
      this.log.error({ err: error, recordingId: recording.recordingId }, 'announcing recording.ready failed');
    }
  }

  /** graceful: finish every recording and store it; immediate: the same, without waiting for new work. */
  close(_mode: StopMode = 'immediate'): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.jobs.values()].map((job) => job.stop('', 'the recorder stopped').catch(() => undefined)));
      await this.stopGrpc?.();
      await this.nc.drain().catch(() => undefined);
      await this.stopOps?.();
      this.directory.close();
    })();
    return this.closing;
  }
}
