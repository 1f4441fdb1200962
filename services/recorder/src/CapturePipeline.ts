import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MediaKind, type ProducerInfo, type SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { Recording, RecordingJobRecord, Segment, TappedStream } from '@gateway/proto/gateway/recorder/v1/recorder';
import { z } from 'zod';
import { ErrorCode, GatewayError, callUnary, childProcessEnv, newId, parseWith, rtpParametersSchema, schemas, type ArtifactStore, type Logger, mediaKindName, trackSourceName } from '@gateway/common';
import { buildSdp, captureArgs, lastLogLine, parseCaptureStart, parseSegmentList, segmentNames, type CaptureStream } from './ffmpeg.js';
import { freePortPair, waitForBoundPorts } from './udpPorts.js';

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

export const NO_SPACE = /no space left on device|ENOSPC/i;
export const DISK_FULL = 'the recorder ran out of disk space in its work folder';

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

/** One run of ffmpeg receiving the tapped streams of the moment. */
export interface Capture {
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

/** What a job's capture pipeline asks of its job. */
export interface CaptureHooks {
  /** Whether the recording is paused: a new capture's tap then stays paused. */
  paused(): boolean;
  /** Whether the job is ending: a capture that exits then is not restarted. */
  ending(): boolean;
  /** Streams or segments changed: persist the record. */
  changed(): void;
  /** A capture started (the first, or one replacing another). */
  captureStarted(): void;
  /** The capture died on its own: capture anew on the same timeline. */
  restart(): void;
  /** The capture cannot go on: the recording ends with this reason. */
  fail(reason: string): void;
}

/**
 * The media side of one recording: the SFU taps the room's live producers to this node, one
 * ffmpeg (a "capture") copies the streams into wall-clock-stamped segments, and each segment is
 * encrypted into the artifact store as soon as it is complete. A capture that dies is replaced
 * on the same timeline unless it keeps dying; taps the SFU does not confirm closed are asked for
 * again every second.
 */
export class CapturePipeline {
  private capture: Capture | undefined;
  private captures = 0;
  private readonly restarts: number[] = [];
  /** CPU seconds of the captures that have ended. */
  private endedCapturesCpu = 0;
  /**
   * Taps the SFU has not confirmed closed. Until it does, it may go on sending the room's media
   * toward this node (during a PCI pause too), so each is asked for again every second.
   */
  private readonly unclosedTaps = new Set<string>();
  private closingTaps = false;

  constructor(
    private readonly ctx: JobContext,
    private readonly record: RecordingJobRecord,
    /** The job's work folder. */
    private readonly dir: string,
    private readonly hooks: CaptureHooks,
  ) {}

  private get recording(): Recording {
    return this.record.recording!;
  }

  private get roomRef() {
    return { tenant: this.recording.tenant, room: this.recording.room };
  }

  /** The capture running now, if any. */
  get current(): Capture | undefined {
    return this.capture;
  }

  /** Takes the running capture away (to be closed): none runs until the next start. */
  detach(): Capture | undefined {
    const capture = this.capture;
    this.capture = undefined;
    return capture;
  }

  /** The room's producers that send now (a paused one has nothing to record). */
  private async liveProducers(): Promise<ProducerInfo[]> {
    const listed = await callUnary(this.ctx.sfu, this.ctx.sfu.listProducers, this.roomRef);
    const producers: ProducerInfo[] = parseWith(producerListSchema, listed.producers, "the SFU's producer list", ErrorCode.UNAVAILABLE);
    return producers.filter((p) => !p.paused);
  }

  /**
   * Whether the running capture already carries exactly the room's live producers. A room event
   * often arrives after a capture that includes its producer has started (a resume, or several
   * producers in a row): restarting then would only cut the recording and its taps for nothing.
   */
  async capturesEveryLiveProducer(): Promise<boolean> {
    const capture = this.capture;
    // A capture that died on its own is restarted whatever it carried.
    if (!capture || capture.stopping || capture.child.exitCode !== null || capture.child.signalCode !== null) return false;
    const live = new Set((await this.liveProducers()).map((p) => p.producerId));
    return live.size === capture.streams.length && capture.streams.every((s) => live.has(s.streamId));
  }

  /** Taps every live producer of the room and starts a capture of them; none when nothing is live. */
  async start(): Promise<void> {
    const live = await this.liveProducers();
    if (live.length === 0) {
      this.capture = undefined;
      return;
    }
    const number = ++this.captures;
    const tapId = `${this.recording.recordingId}-c${number}`;
    const roles = await this.ctx.roles();
    const streams: CaptureStream[] = [];
    for (const producer of live) streams.push(await this.tapStream(tapId, producer, roles, new Set(streams.map((s) => s.port))));
    await writeFile(path.join(this.dir, `capture-${number}.sdp`), buildSdp(streams, this.ctx.rtpIp), { mode: 0o600 });
    const child = spawn(this.ctx.ffmpeg, captureArgs(streams, `capture-${number}.sdp`, number, this.ctx.segmentSeconds), {
      cwd: this.dir,
      env: childProcessEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const capture: Capture = {
      number,
      tapId,
      streams,
      child,
      log: '',
      start: undefined,
      taken: new Map(),
      cpuSeconds: 0,
      stopping: false,
      collecting: Promise.resolve(),
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    child.stderr!.on('data', (chunk: Buffer) => {
      capture.log = (capture.log + chunk.toString()).slice(-20_000);
      capture.start ??= parseCaptureStart(capture.log);
    });
    void capture.exited.then(() => this.onCaptureExit(capture));
    this.capture = capture;
    this.record.tapId = tapId;
    this.recording.participantIds = [...new Set([...this.recording.participantIds, ...live.map((p) => p.participantId)])];
    await waitForBoundPorts(
      streams.map((s) => s.port),
      child,
    );
    if (!this.hooks.paused()) await callUnary(this.ctx.sfu, this.ctx.sfu.setTapPaused, { tap: { room: this.roomRef, tapId }, paused: false });
    this.hooks.changed();
    this.hooks.captureStarted();
  }

  /** A paused tap stream of one producer to a fresh pair of local ports. */
  private async tapStream(tapId: string, producer: ProducerInfo, roles: Map<string, string>, takenPorts: ReadonlySet<number>): Promise<CaptureStream> {
    const port = await freePortPair(takenPorts);
    const tapped = await callUnary(this.ctx.sfu, this.ctx.sfu.createTapStream, {
      tap: { room: this.roomRef, tapId },
      producerId: producer.producerId,
      ip: this.ctx.rtpIp,
      port,
      rtcpPort: port + 1,
      paused: true,
    });
    const codec = parseWith(tapAnswerSchema, tapped, "the SFU's tap", ErrorCode.UNAVAILABLE).rtpParameters.codecs[0]!;
    const kind = mediaKindName(producer.kind) ?? 'video';
    // A producer is one stream for the whole recording, whichever captures carry it.
    const streamId = producer.producerId;
    if (!this.record.streams.some((s) => s.streamId === streamId)) {
      const stream: TappedStream = {
        streamId,
        participantId: producer.participantId,
        role: roles.get(producer.participantId) ?? 'agent',
        source: trackSourceName(producer.source) ?? 'camera',
        kind,
        mimeType: codec.mimeType,
      };
      this.record.streams.push(stream);
    }
    const fmtp = Object.entries(codec.parameters ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(';');
    return { streamId, kind, port, payloadType: codec.payloadType, mimeType: codec.mimeType, clockRate: codec.clockRate, channels: codec.channels, fmtp: fmtp || undefined };
  }

  /** CPU seconds the job's captures have used so far. */
  get cpuSeconds(): number {
    return this.endedCapturesCpu + (this.capture?.cpuSeconds ?? 0);
  }

  /** Encrypts every newly completed segment of a capture into the artifact store. */
  collect(capture: Capture | undefined = this.capture): Promise<void> {
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
        // A capture stopped before it wrote anything (still waiting for a key frame when a pause
        // came) leaves a file with no media, listed from 0 to 0: nothing to keep, and a file the
        // assembly could not read.
        if (!(entry.end > entry.start)) {
          await rm(path.join(this.dir, entry.file), { force: true });
          continue;
        }
        const objectId = newId('SG');
        await this.ctx.segments.putFile(this.recording.tenant, objectId, path.join(this.dir, entry.file), 'video/x-matroska');
        const segment: Segment = { streamId: stream.streamId, objectId, startS: capture.start + entry.start, endS: capture.start + entry.end };
        this.record.segments.push(segment);
        // Stored encrypted: the plaintext goes at once, so the work folder holds only segments in progress.
        await rm(path.join(this.dir, entry.file), { force: true });
      }
      capture.taken.set(stream.streamId, Math.max(from, entries.length));
      if (entries.length > from) this.hooks.changed();
    }
  }

  private onCaptureExit(capture: Capture): void {
    this.endedCapturesCpu += capture.cpuSeconds;
    if (capture.stopping || this.hooks.ending() || this.capture !== capture) return;
    // ffmpeg died on its own: restart it on the same timeline, unless it keeps dying.
    const now = Date.now();
    this.restarts.push(now);
    while (this.restarts.length && now - this.restarts[0]! > 60_000) this.restarts.shift();
    const reason = NO_SPACE.test(capture.log) ? DISK_FULL : `capture exited (${capture.child.exitCode ?? capture.child.signalCode}): ${lastLogLine(capture.log)}`;
    this.ctx.log.warn({ recordingId: this.recording.recordingId, reason }, 'capture failed');
    // A full disk stays full: restarting would only fail again.
    if (reason === DISK_FULL || this.restarts.length > MAX_RESTARTS_PER_MINUTE) {
      this.hooks.fail(reason);
      return;
    }
    void this.collect(capture)
      .catch((error) => this.ctx.log.warn({ err: error, recordingId: this.recording.recordingId }, 'collecting segments failed'))
      .finally(() => this.hooks.restart());
  }

  /**
   * Ends a capture: 'finish' lets ffmpeg close its files, 'kill' does not wait. SIGINT stops
   * ffmpeg at the next packet, and it writes its files' trailers; the tap is closed only then,
   * so packets are still arriving. Without any packet ffmpeg waits on: a second SIGINT
   * interrupts the wait, at the cost of the segment in progress.
   */
  async close(capture: Capture | undefined, how: 'finish' | 'kill'): Promise<void> {
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
    if (how === 'finish') await this.collect(capture);
    // ffmpeg's own account (which streams it found, what it wrote): debug level, no media content in it.
    this.ctx.log.debug({ recordingId: this.recording.recordingId, capture: capture.number, ffmpeg: capture.log.slice(-4000) }, 'capture closed');
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

  async closeUnclosedTaps(): Promise<void> {
    if (this.closingTaps) return;
    this.closingTaps = true;
    try {
      for (const tapId of [...this.unclosedTaps]) await this.closeTap(tapId);
    } finally {
      this.closingTaps = false;
    }
  }
}

/** User and system CPU seconds of a running process, from /proc (Linux); undefined when unknown. */
async function processCpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const fields = stat?.split(') ')[1]?.split(' ');
  // utime and stime, in clock ticks of 1/100 s.
  return fields ? (Number(fields[11]) + Number(fields[12])) / 100 : undefined;
}
