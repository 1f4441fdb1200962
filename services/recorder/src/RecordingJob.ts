import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { execFile } from 'node:child_process';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { MediaKind, TrackSource, type SfuClient, type TapStream } from '@gateway/proto/gateway/sfu/v1/sfu';
import { RecordingState, type Artifact, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ErrorCode, GatewayError, TypedEmitter, callUnary, newId, type ArtifactStore, type Logger } from '@gateway/common';
import { buildFfmpegArgs, buildSdp, type OutputFile, type RtpStream } from './ffmpeg.js';

const execFileAsync = promisify(execFile);

const sources: Record<number, RtpStream['source'] | undefined> = {
  [TrackSource.TRACK_SOURCE_CAMERA]: 'camera',
  [TrackSource.TRACK_SOURCE_MICROPHONE]: 'microphone',
  [TrackSource.TRACK_SOURCE_SCREEN]: 'screen',
  [TrackSource.TRACK_SOURCE_SCREEN_AUDIO]: 'screen_audio',
};

export interface JobContext {
  sfu: SfuClient;
  store: ArtifactStore;
  /** Where this job may write plaintext while it runs; removed when it ends. */
  workDir: string;
  rtpIp: string;
  ffmpeg: string;
  ffprobe: string;
  /** Role of each participant of the room (`end_user` is the left channel). */
  roles: () => Promise<Map<string, string>>;
  log: Logger;
}

type JobEvents = {
  /** The recording's metadata changed (state, pauses, artifacts). */
  changed: [recording: Recording];
  ended: [recording: Recording];
};

/**
 * One recording: a tap of every live producer of the room on the SFU, one ffmpeg process that
 * receives the RTP and writes the session's files into the job's private folder, and at the
 * end the files encrypted into the artifact store. A PCI pause stops the tap at the SFU, so
 * nothing of the interval ever reaches this process.
 */
export class RecordingJob extends TypedEmitter<JobEvents> {
  readonly recording: Recording;
  private encoder: ChildProcess | undefined;
  private encoderExited: Promise<{ code: number | null; signal: string | null }> | undefined;
  private encoderLog = '';
  private outputs: OutputFile[] = [];
  private stopping: Promise<Recording> | undefined;
  private readonly startedAt = Date.now();

  constructor(
    private readonly ctx: JobContext,
    tenant: string,
    room: string,
    startedBy: string,
  ) {
    super();
    this.recording = {
      recordingId: newId('RC'),
      tenant,
      room,
      state: RecordingState.RECORDING_STATE_RECORDING,
      startedAtMs: this.startedAt,
      endedAtMs: 0,
      pauses: [],
      artifacts: [],
      failureReason: '',
      startedBy,
      participantIds: [],
    };
  }

  private get tap() {
    return { room: { tenant: this.recording.tenant, room: this.recording.room }, tapId: this.recording.recordingId };
  }

  private get dir(): string {
    return path.join(this.ctx.workDir, this.recording.recordingId);
  }

  /** Taps the room and starts the encoder; fails without leaving anything behind. */
  async start(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const streams = await this.tapRoom();
      if (streams.length === 0) throw new GatewayError(ErrorCode.INVALID_STATE, 'the room has no media to record');
      await this.startEncoder(streams);
      await callUnary(this.ctx.sfu, this.ctx.sfu.setTapPaused, { tap: this.tap, paused: false });
      this.ctx.log.info({ recordingId: this.recording.recordingId, streams: streams.length }, 'recording started');
    } catch (error) {
      await this.discard();
      throw error;
    }
  }

  /** Creates a paused tap stream for every live producer, each to its own pair of local ports. */
  private async tapRoom(): Promise<RtpStream[]> {
    const { producers } = await callUnary(this.ctx.sfu, this.ctx.sfu.listProducers, this.tap.room);
    const roles = await this.ctx.roles();
    const streams: RtpStream[] = [];
    for (const producer of producers.filter((p) => !p.paused)) {
      const port = await freePortPair();
      const tapped: TapStream = await callUnary(this.ctx.sfu, this.ctx.sfu.createTapStream, {
        tap: this.tap,
        producerId: producer.producerId,
        ip: this.ctx.rtpIp,
        port,
        rtcpPort: port + 1,
        paused: true,
      });
      const rtp = tapped.rtpParameters as { codecs: Array<{ mimeType: string; payloadType: number; clockRate: number; channels?: number; parameters?: Record<string, unknown> }> };
      const codec = rtp.codecs[0]!;
      const fmtp = Object.entries(codec.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(';');
      streams.push({
        producerId: producer.producerId,
        participantId: producer.participantId,
        role: roles.get(producer.participantId) ?? 'agent',
        source: sources[producer.source] ?? 'camera',
        kind: producer.kind === MediaKind.MEDIA_KIND_AUDIO ? 'audio' : 'video',
        port,
        payloadType: codec.payloadType,
        mimeType: codec.mimeType,
        clockRate: codec.clockRate,
        channels: codec.channels,
        fmtp: fmtp || undefined,
      });
    }
    this.recording.participantIds = [...new Set(streams.map((s) => s.participantId))];
    return streams;
  }

  private async startEncoder(streams: RtpStream[]): Promise<void> {
    const sdpPath = path.join(this.dir, 'tap.sdp');
    await writeFile(sdpPath, buildSdp(streams, this.ctx.rtpIp), { mode: 0o600 });
    const { args, outputs } = buildFfmpegArgs(streams, sdpPath);
    this.outputs = outputs;
    const child = spawn(this.ctx.ffmpeg, args, { cwd: this.dir, stdio: ['pipe', 'ignore', 'pipe'] });
    this.encoder = child;
    child.stderr!.on('data', (chunk: Buffer) => {
      this.encoderLog = (this.encoderLog + chunk.toString()).slice(-4000);
    });
    this.encoderExited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    void this.encoderExited.then(({ code, signal }) => {
      if (this.stopping) return;
      // The encoder died on its own: keep what it wrote and report why.
      const reason = `encoder exited (${signal ?? code}): ${lastLine(this.encoderLog)}`;
      this.ctx.log.error({ recordingId: this.recording.recordingId, reason }, 'recording encoder failed');
      void this.stop('', reason).catch(() => undefined);
    });
    await waitForBoundPorts(streams.map((s) => s.port), child);
  }

  async pause(by: string): Promise<Recording> {
    if (this.recording.state !== RecordingState.RECORDING_STATE_RECORDING) throw new GatewayError(ErrorCode.INVALID_STATE, 'the recording is not running');
    await callUnary(this.ctx.sfu, this.ctx.sfu.setTapPaused, { tap: this.tap, paused: true });
    this.recording.pauses.push({ startMs: Date.now() - this.startedAt, endMs: 0, pausedBy: by, resumedBy: '' });
    this.recording.state = RecordingState.RECORDING_STATE_PAUSED;
    this.safeEmit('changed', this.recording);
    return this.recording;
  }

  async resume(by: string): Promise<Recording> {
    if (this.recording.state !== RecordingState.RECORDING_STATE_PAUSED) throw new GatewayError(ErrorCode.INVALID_STATE, 'the recording is not paused');
    await callUnary(this.ctx.sfu, this.ctx.sfu.setTapPaused, { tap: this.tap, paused: false });
    const open = this.recording.pauses[this.recording.pauses.length - 1]!;
    open.endMs = Date.now() - this.startedAt;
    open.resumedBy = by;
    this.recording.state = RecordingState.RECORDING_STATE_RECORDING;
    this.safeEmit('changed', this.recording);
    return this.recording;
  }

  /** Stops the tap and the encoder, stores the files encrypted and ends the job; idempotent. */
  stop(by: string, failure = ''): Promise<Recording> {
    this.stopping ??= this.finish(by, failure);
    return this.stopping;
  }

  private async finish(by: string, failure: string): Promise<Recording> {
    const id = this.recording.recordingId;
    const open = this.recording.pauses[this.recording.pauses.length - 1];
    if (open && open.endMs === 0) {
      open.endMs = Date.now() - this.startedAt;
      open.resumedBy = by;
    }
    this.recording.state = RecordingState.RECORDING_STATE_STOPPING;
    this.safeEmit('changed', this.recording);
    await callUnary(this.ctx.sfu, this.ctx.sfu.closeTap, this.tap).catch(() => undefined);
    const encoderFailed = await this.stopEncoder();
    const reason = failure || encoderFailed;
    try {
      this.recording.artifacts = await this.storeOutputs();
      this.recording.state = reason ? RecordingState.RECORDING_STATE_PARTIAL : RecordingState.RECORDING_STATE_COMPLETE;
      if (reason && this.recording.artifacts.length === 0) this.recording.state = RecordingState.RECORDING_STATE_FAILED;
      this.recording.failureReason = reason;
    } catch (error) {
      this.recording.state = RecordingState.RECORDING_STATE_FAILED;
      this.recording.failureReason = `storing the recording failed: ${(error as Error).message}`;
    } finally {
      await this.discard();
    }
    this.recording.endedAtMs = Date.now();
    this.ctx.log.info({ recordingId: id, state: RecordingState[this.recording.state], artifacts: this.recording.artifacts.length }, 'recording ended');
    this.safeEmit('changed', this.recording);
    this.safeEmit('ended', this.recording);
    return this.recording;
  }

  /** Asks ffmpeg to finish its files ('q'), and kills it if it does not; returns a failure, if any. */
  private async stopEncoder(): Promise<string> {
    const child = this.encoder;
    if (!child || !this.encoderExited) return '';
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin?.end('q');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const { code, signal } = await this.encoderExited;
      clearTimeout(timer);
      if (signal === 'SIGKILL') return 'the encoder did not finish its files in time';
      if (code !== 0 && code !== 255) return `encoder exited (${code}): ${lastLine(this.encoderLog)}`;
      return '';
    }
    const { code, signal } = await this.encoderExited;
    return code === 0 ? '' : `encoder exited (${signal ?? code}): ${lastLine(this.encoderLog)}`;
  }

  private async storeOutputs(): Promise<Artifact[]> {
    const artifacts: Artifact[] = [];
    for (const output of this.outputs) {
      const file = path.join(this.dir, output.file);
      const size = await stat(file).then((s) => s.size, () => 0);
      if (size === 0) continue;
      const durationMs = await this.probeDurationMs(file);
      const artifactId = newId('AR');
      await this.ctx.store.putFile(this.recording.tenant, artifactId, file, output.contentType);
      artifacts.push({ artifactId, kind: output.kind, contentType: output.contentType, participantId: output.participantId, sizeBytes: size, durationMs, part: 1 });
    }
    return artifacts;
  }

  private async probeDurationMs(file: string): Promise<number> {
    try {
      const { stdout } = await execFileAsync(this.ctx.ffprobe, ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]);
      const seconds = Number(stdout.trim());
      return Number.isFinite(seconds) ? Math.round(seconds * 1000) : 0;
    } catch {
      return 0;
    }
  }

  /** Removes the job's plaintext working files. */
  private async discard(): Promise<void> {
    this.encoder?.kill('SIGKILL');
    await rm(this.dir, { recursive: true, force: true });
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop()?.slice(0, 300) ?? '';
}

/** An even port whose successor is free too (RTP and RTCP), picked by the kernel. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const probe = createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      probe.once('error', reject);
      probe.bind(0, '0.0.0.0', () => resolve(probe.address().port));
    });
    probe.close();
    const even = port % 2 === 0 ? port : port - 1;
    if (even < 1024) continue;
    if ((await portFree(even)) && (await portFree(even + 1))) return even;
  }
  throw new GatewayError(ErrorCode.UNAVAILABLE, 'no free UDP port pair for a recording stream');
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '0.0.0.0', () => socket.close(() => resolve(true)));
  });
}

/** The encoder has opened its inputs once their ports are taken. */
async function waitForBoundPorts(ports: number[], child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new GatewayError(ErrorCode.INTERNAL, 'the encoder exited while starting');
    const free = await Promise.all(ports.map(portFree));
    if (free.every((f) => !f)) return;
    if (Date.now() > deadline) throw new GatewayError(ErrorCode.TIMEOUT, 'the encoder did not open its inputs');
    await new Promise((r) => setTimeout(r, 50));
  }
}
