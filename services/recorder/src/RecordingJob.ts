import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MediaKind, TrackSource, type ProducerInfo, type SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { RecordingState, type Recording, type RecordingJobRecord, type RecordingOptions, type Segment, type TappedStream } from '@gateway/proto/gateway/recorder/v1/recorder';
import { z } from 'zod';
import { ErrorCode, GatewayError, TypedEmitter, callUnary, newId, parseWith, rtpParametersSchema, schemas, type ArtifactStore, type Logger } from '@gateway/common';
import { buildSdp, captureArgs, lastLogLine, parseCaptureStart, parseSegmentList, segmentNames, type CaptureStream } from './ffmpeg.js';
import { assembleRecording } from './assemble.js';
import { deleteSegments } from './segments.js';

const sourceNames: Record<number, string> = {
  [TrackSource.TRACK_SOURCE_CAMERA]: 'camera',
  [TrackSource.TRACK_SOURCE_MICROPHONE]: 'microphone',
  [TrackSource.TRACK_SOURCE_SCREEN]: 'screen',
  [TrackSource.TRACK_SOURCE_SCREEN_AUDIO]: 'screen_audio',
};

/**
 * What the SFU answers is checked like any input: its producer ids become file names and
 * ffmpeg segment patterns, its codec parameters lines of the SDP ffmpeg reads.
 */
const producerListSchema = z
  .array(
    z.object({
      producerId: schemas.id(),
      participantId: schemas.id(),
      kind: z.union([z.literal(MediaKind.MEDIA_KIND_AUDIO), z.literal(MediaKind.MEDIA_KIND_VIDEO)]),
      source: z.number().int().min(0).max(4),
      paused: z.boolean(),
    }),
  )
  .max(256);
const tapAnswerSchema = z.object({ rtpParameters: rtpParametersSchema });

const NO_SPACE = /no space left on device|ENOSPC/i;
const DISK_FULL = 'the recorder ran out of disk space in its work folder';

/** A capture that fails this many times within a minute ends the recording. */
const MAX_RESTARTS_PER_MINUTE = 3;

export interface JobContext {
  sfu: SfuClient;
  /** Where the recording's files go until delivered. */
  store: ArtifactStore;
  /** Where its segments wait while it runs (the recorder's own space: read back, then deleted). */
  segments: ArtifactStore;
  /** Where this job may write plaintext while it runs; removed when it ends. */
  workDir: string;
  rtpIp: string;
  ffmpeg: string;
  ffprobe: string;
  segmentSeconds: number;
  maxPartBytes: number;
  /** Role of each participant of the room (`end_user` is the left channel). */
  roles: () => Promise<Map<string, string>>;
  log: Logger;
}

export type RecordingStatusName = 'started' | 'paused' | 'resumed' | 'stopped';

type JobEvents = {
  /** What participants are told: the recording started, paused, resumed or stopped. */
  status: [state: RecordingStatusName, by: string];
  /** State, pauses, segments or artifacts changed: persist the record. */
  changed: [record: RecordingJobRecord];
  ended: [recording: Recording];
};

/** One run of ffmpeg receiving the tapped streams of the moment. */
interface Capture {
  number: number;
  tapId: string;
  streams: CaptureStream[];
  child: ChildProcess;
  exited: Promise<void>;
  log: string;
  /** Wall-clock start of the capture's timeline, read from ffmpeg once it has probed. */
  start: number | undefined;
  /** Segments of each stream already taken from the list. */
  taken: Map<string, number>;
  /** CPU seconds ffmpeg had used at the last look (it cannot be read once the process is gone). */
  cpuSeconds: number;
  stopping: boolean;
  /** Collections of this capture's segments run one at a time (each segment is stored once). */
  collecting: Promise<void>;
}

/**
 * One recording. The SFU taps every live producer of the room to this node; one ffmpeg per job
 * (a "capture") copies the streams into wall-clock-stamped segments, each encrypted into the
 * artifact store as soon as it is complete. When producers come or go, or ffmpeg dies, a new
 * capture replaces the old one on the same timeline. A PCI pause stops the tap at the SFU, so
 * nothing of the interval ever reaches this process. At the end the segments are assembled into
 * the session's files, which are stored encrypted; the segments are then deleted.
 */
export class RecordingJob extends TypedEmitter<JobEvents> {
  readonly record: RecordingJobRecord;
  private capture: Capture | undefined;
  private captures = 0;
  private readonly restarts: number[] = [];
  private poller: NodeJS.Timeout | undefined;
  /** CPU seconds of the captures that have ended. */
  private endedCapturesCpu = 0;
  private recapture: Promise<void> = Promise.resolve();
  private stopping: Promise<Recording> | undefined;
  /**
   * Taps the SFU has not confirmed closed. Until it does, it may go on sending the room's media
   * toward this node (during a PCI pause too), so each is asked for again every second.
   */
  private readonly unclosedTaps = new Set<string>();
  private closingTaps = false;

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
  }

  get recording(): Recording {
    return this.record.recording!;
  }

  private get roomRef() {
    return { tenant: this.recording.tenant, room: this.recording.room };
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
      await this.startCapture();
      if (!this.capture) throw new GatewayError(ErrorCode.INVALID_STATE, 'the room has no media to record');
      this.poller = setInterval(() => {
        void this.collectSegments(this.capture).catch((error) => this.ctx.log.warn({ err: error }, 'collecting segments failed'));
        void this.closeUnclosedTaps();
      }, 1_000);
      this.ctx.log.info({ recordingId: this.recording.recordingId, streams: this.capture.streams.length }, 'recording started');
      this.safeEmit('status', 'started', this.recording.startedBy);
    } catch (error) {
      await this.closeCapture(this.capture, 'kill');
      await rm(this.dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** Producers came or went: capture the new set (serialised; the old capture ends first). */
  refreshStreams(): Promise<void> {
    this.recapture = this.recapture.then(async () => {
      // Nothing is captured during a pause; resuming starts a capture of whatever is live then.
      if (this.stopping || this.paused) return;
      await this.closeCapture(this.capture, 'finish');
      await this.startCapture();
    }).catch((error) => {
      this.ctx.log.error({ err: error, recordingId: this.recording.recordingId }, 'restarting the capture failed');
      void this.stop('', `capture could not be restarted: ${(error as Error).message}`);
    });
    return this.recapture;
  }

  private async startCapture(): Promise<void> {
    const listed = await callUnary(this.ctx.sfu, this.ctx.sfu.listProducers, this.roomRef);
    const producers: ProducerInfo[] = parseWith(producerListSchema, listed.producers, 'the SFU\'s producer list', ErrorCode.UNAVAILABLE);
    const live = producers.filter((p) => !p.paused);
    if (live.length === 0) {
      this.capture = undefined;
      return;
    }
    const number = ++this.captures;
    const tapId = `${this.recording.recordingId}-c${number}`;
    const roles = await this.ctx.roles();
    const streams: CaptureStream[] = [];
    for (const producer of live) streams.push(await this.tapStream(tapId, producer, roles));
    await writeFile(path.join(this.dir, `capture-${number}.sdp`), buildSdp(streams, this.ctx.rtpIp), { mode: 0o600 });
    const child = spawn(this.ctx.ffmpeg, captureArgs(streams, `capture-${number}.sdp`, number, this.ctx.segmentSeconds), { cwd: this.dir, stdio: ['ignore', 'ignore', 'pipe'] });
    const capture: Capture = { number, tapId, streams, child, log: '', start: undefined, taken: new Map(), cpuSeconds: 0, stopping: false, collecting: Promise.resolve(), exited: new Promise((resolve) => child.once('exit', () => resolve())) };
    child.stderr!.on('data', (chunk: Buffer) => {
      capture.log = (capture.log + chunk.toString()).slice(-20_000);
      capture.start ??= parseCaptureStart(capture.log);
    });
    void capture.exited.then(() => this.onCaptureExit(capture));
    this.capture = capture;
    this.record.tapId = tapId;
    this.recording.participantIds = [...new Set([...this.recording.participantIds, ...live.map((p) => p.participantId)])];
    await waitForBoundPorts(streams.map((s) => s.port), child);
    if (!this.paused) await callUnary(this.ctx.sfu, this.ctx.sfu.setTapPaused, { tap: { room: this.roomRef, tapId }, paused: false });
    this.changed();
  }

  /** A paused tap stream of one producer to a fresh pair of local ports. */
  private async tapStream(tapId: string, producer: ProducerInfo, roles: Map<string, string>): Promise<CaptureStream> {
    const port = await freePortPair();
    const tapped = await callUnary(this.ctx.sfu, this.ctx.sfu.createTapStream, {
      tap: { room: this.roomRef, tapId },
      producerId: producer.producerId,
      ip: this.ctx.rtpIp,
      port,
      rtcpPort: port + 1,
      paused: true,
    });
    const codec = parseWith(tapAnswerSchema, tapped, 'the SFU\'s tap', ErrorCode.UNAVAILABLE).rtpParameters.codecs[0]!;
    const kind = producer.kind === MediaKind.MEDIA_KIND_AUDIO ? 'audio' : 'video';
    // A producer is one stream for the whole recording, whichever captures carry it.
    const streamId = producer.producerId;
    if (!this.record.streams.some((s) => s.streamId === streamId)) {
      const stream: TappedStream = {
        streamId,
        participantId: producer.participantId,
        role: roles.get(producer.participantId) ?? 'agent',
        source: sourceNames[producer.source] ?? 'camera',
        kind,
        mimeType: codec.mimeType,
      };
      this.record.streams.push(stream);
    }
    const fmtp = Object.entries(codec.parameters ?? {}).map(([k, v]) => `${k}=${v}`).join(';');
    return { streamId, kind, port, payloadType: codec.payloadType, mimeType: codec.mimeType, clockRate: codec.clockRate, channels: codec.channels, fmtp: fmtp || undefined };
  }

  /** CPU seconds the job's captures have used so far. */
  get cpuSeconds(): number {
    return this.endedCapturesCpu + (this.capture?.cpuSeconds ?? 0);
  }

  /** Encrypts every newly completed segment of a capture into the artifact store. */
  private collectSegments(capture: Capture | undefined): Promise<void> {
    if (!capture) return Promise.resolve();
    const run = capture.collecting.catch(() => undefined).then(() => this.collectNewSegments(capture));
    capture.collecting = run;
    return run;
  }

  private async collectNewSegments(capture: Capture): Promise<void> {
    capture.cpuSeconds = (await processCpuSeconds(capture.child.pid)) ?? capture.cpuSeconds;
    if (capture.start === undefined) return;
    for (const stream of capture.streams) {
      const { list } = segmentNames(stream.streamId, capture.number);
      const entries = parseSegmentList(await readFile(path.join(this.dir, list), 'utf8').catch(() => ''));
      const from = capture.taken.get(stream.streamId) ?? 0;
      for (const entry of entries.slice(from)) {
        const objectId = newId('SG');
        await this.ctx.segments.putFile(this.recording.tenant, objectId, path.join(this.dir, entry.file), 'video/x-matroska');
        const segment: Segment = { streamId: stream.streamId, objectId, startS: capture.start + entry.start, endS: capture.start + entry.end };
        this.record.segments.push(segment);
        // Stored encrypted: the plaintext goes at once, so the work folder holds only segments in progress.
        await rm(path.join(this.dir, entry.file), { force: true });
      }
      capture.taken.set(stream.streamId, Math.max(from, entries.length));
      if (entries.length > from) this.changed();
    }
  }

  private onCaptureExit(capture: Capture): void {
    this.endedCapturesCpu += capture.cpuSeconds;
    if (capture.stopping || this.stopping || this.capture !== capture) return;
    // ffmpeg died on its own: restart it on the same timeline, unless it keeps dying.
    const now = Date.now();
    this.restarts.push(now);
    while (this.restarts.length && now - this.restarts[0]! > 60_000) this.restarts.shift();
    const reason = NO_SPACE.test(capture.log) ? DISK_FULL : `capture exited (${capture.child.exitCode ?? capture.child.signalCode}): ${lastLogLine(capture.log)}`;
    this.ctx.log.warn({ recordingId: this.recording.recordingId, reason }, 'capture failed');
    // A full disk stays full: restarting would only fail again.
    if (reason === DISK_FULL || this.restarts.length > MAX_RESTARTS_PER_MINUTE) {
      void this.stop('', reason);
      return;
    }
    void this.collectSegments(capture)
      .catch((error) => this.ctx.log.warn({ err: error, recordingId: this.recording.recordingId }, 'collecting segments failed'))
      .finally(() => this.refreshStreams());
  }

  /**
   * Ends a capture: 'finish' lets ffmpeg close its files, 'kill' does not wait. SIGINT stops
   * ffmpeg at the next packet, and it writes its files' trailers; the tap is closed only then,
   * so packets are still arriving. Without any packet ffmpeg waits on: a second SIGINT
   * interrupts the wait, at the cost of the segment in progress.
   */
  private async closeCapture(capture: Capture | undefined, how: 'finish' | 'kill'): Promise<void> {
    if (!capture) return;
    capture.stopping = true;
    const { child } = capture;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(how === 'kill' ? 'SIGKILL' : 'SIGINT');
      if (how === 'finish') setTimeout(() => child.kill('SIGINT'), 2_000).unref();
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await capture.exited;
      clearTimeout(timer);
    }
    await this.closeTap(capture.tapId);
    if (how === 'finish') await this.collectSegments(capture);
  }

  /** Asks the SFU to close a tap; one it does not confirm closed is asked for again (see unclosedTaps). */
  private async closeTap(tapId: string): Promise<void> {
    try {
      await callUnary(this.ctx.sfu, this.ctx.sfu.closeTap, { room: this.roomRef, tapId });
    } catch (error) {
      // The room is gone from the SFU, and its taps with it.
      if (GatewayError.from(error).code !== ErrorCode.NOT_FOUND) {
        if (!this.unclosedTaps.has(tapId)) this.ctx.log.error({ err: error, recordingId: this.recording.recordingId, tapId }, 'the SFU did not close a tap; asking again every second');
        this.unclosedTaps.add(tapId);
        return;
      }
    }
    this.unclosedTaps.delete(tapId);
  }

  private async closeUnclosedTaps(): Promise<void> {
    if (this.closingTaps) return;
    this.closingTaps = true;
    try {
      for (const tapId of [...this.unclosedTaps]) await this.closeTap(tapId);
    } finally {
      this.closingTaps = false;
    }
  }

  async pause(by: string): Promise<Recording> {
    if (this.recording.state !== RecordingState.RECORDING_STATE_RECORDING) throw new GatewayError(ErrorCode.INVALID_STATE, 'the recording is not running');
    await this.recapture;
    this.recording.pauses.push({ startMs: Date.now() - this.recording.startedAtMs, endMs: 0, pausedBy: by, resumedBy: '' });
    this.recording.state = RecordingState.RECORDING_STATE_PAUSED;
    // The capture ends while media still flows (ffmpeg stops cleanly at the next packet) and its
    // tap is closed, so nothing leaves the SFU for this recording during the pause. The few
    // milliseconds that arrive after the pause began are cut at assembly.
    const capture = this.capture;
    this.capture = undefined;
    await this.closeCapture(capture, 'finish');
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
    await this.closeCapture(this.capture, 'kill');
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
      await this.closeCapture(this.capture, 'kill').catch((error) => this.ctx.log.warn({ err: error }, 'closing the capture failed'));
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
    await this.closeCapture(this.capture, 'finish').catch((error) => this.ctx.log.warn({ err: error }, 'closing the capture failed'));
    await this.closeUnclosedTaps();
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

/** User and system CPU seconds of a running process, from /proc (Linux); undefined when unknown. */
async function processCpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const fields = stat?.split(') ')[1]?.split(' ');
  // utime and stime, in clock ticks of 1/100 s.
  return fields ? (Number(fields[11]) + Number(fields[12])) / 100 : undefined;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    socket.once('error', () => resolve(false));
    socket.bind(port, '0.0.0.0', () => socket.close(() => resolve(true)));
  });
}

/** ffmpeg has opened its inputs once their ports are taken. */
async function waitForBoundPorts(ports: number[], child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new GatewayError(ErrorCode.INTERNAL, 'ffmpeg exited while starting');
    const free = await Promise.all(ports.map(portFree));
    if (free.every((f) => !f)) return;
    if (Date.now() > deadline) throw new GatewayError(ErrorCode.TIMEOUT, 'ffmpeg did not open its inputs');
    await new Promise((r) => setTimeout(r, 50));
  }
}
