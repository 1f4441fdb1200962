import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Artifact, RecordingJobRecord } from '@gateway/proto/gateway/recorder/v1/recorder';
import { type Backoff, childProcessEnv, isArtifactStoreFull, newId, sleepBackoff, type ArtifactStore } from '@gateway/common';
import { concatList, lastLogLine, mp4Args, remuxArgs, voiceEncodeArgs, voiceMixArgs, type AssemblyInput } from './ffmpeg.js';

/** Runs ffmpeg or ffprobe with a child's minimal environment; rejects with its stderr on failure. */
function run(file: string, args: string[], options: { cwd?: string } = {}): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { ...options, env: childProcessEnv() }, (error, stdout, stderr) => (error ? reject(Object.assign(error, { stderr: String(stderr) })) : resolve({ stdout: String(stdout) })));
  });
}

export interface AssemblyOptions {
  record: RecordingJobRecord;
  endedAtMs: number;
  /** The job's private working folder. */
  dir: string;
  store: ArtifactStore;
  /** Where the segments are. */
  segments: ArtifactStore;
  ffmpeg: string;
  ffprobe: string;
  /** Files above this are stored as ordered parts. */
  maxPartBytes: number;
}

interface Output {
  file: string;
  kind: string;
  contentType: string;
  participantId: string;
}

/**
 * Turns a recording's segments into its files and stores them encrypted: the stereo voice (MP3
 * and Opus/WebM) and one file per camera or screen-share stream, from the segments decrypted
 * out of the artifact store (the same whether this node captured them or another one did).
 * Returns the artifacts and, when some output could not be made, why.
 */
export async function assembleRecording(options: AssemblyOptions): Promise<{ artifacts: Artifact[]; problem: string }> {
  const { record, dir, store } = options;
  const recording = record.recording!;
  const startS = recording.startedAtMs / 1000;
  const seconds = Math.max(0.1, (options.endedAtMs - recording.startedAtMs) / 1000);
  const problems: string[] = [];
  const inputs = new Map<string, AssemblyInput>();
  // Paused intervals, in seconds from the start (a pause still open ends with the recording).
  const pauses: Array<[number, number]> = recording.pauses.map((p) => [p.startMs / 1000, (p.endMs || options.endedAtMs - recording.startedAtMs) / 1000]);

  for (const stream of record.streams) {
    // A segment without media (stored before those were left out at collection) is skipped.
    const segments = record.segments.filter((s) => s.streamId === stream.streamId && s.endS > s.startS).sort((a, b) => a.startS - b.startS);
    if (segments.length === 0) continue;
    const placed = [];
    for (const segment of segments) {
      // Segments are kept only encrypted: decrypt them into the private folder for the assembly.
      const file = `${segment.objectId}.mkv`;
      await writeFile(path.join(dir, file), (await options.segments.get(recording.tenant, segment.objectId)).data, { mode: 0o600 });
      const start = segment.startS - startS;
      const end = segment.endS - startS;
      // A capture ends just after its pause began: keep nothing from the pause on.
      const pausedAt = pauses.find(([from]) => from > start && from < end)?.[0];
      placed.push({ file, start, end, outpoint: pausedAt === undefined ? undefined : pausedAt - start });
    }
    const listFile = `${stream.streamId}.ffconcat`;
    await writeFile(path.join(dir, listFile), concatList(placed));
    inputs.set(stream.streamId, { listFile, offset: Math.max(0, placed[0]!.start) });
  }

  const outputs: Output[] = [];
  const failed = (what: string, error: unknown) => problems.push(`${what}: ${lastLogLine((error as { stderr?: string }).stderr ?? String(error))}`);
  const timeline = 'voice-timeline.mka';
  let haveTimeline = false;
  const voices = record.streams.filter((s) => s.kind === 'audio' && inputs.has(s.streamId));
  if (voices.length > 0) {
    try {
      await run(
        options.ffmpeg,
        voiceMixArgs(
          voices.map((s) => ({ ...inputs.get(s.streamId)!, left: s.role === 'end_user' })),
          seconds,
          timeline,
          pauses,
        ),
        { cwd: dir },
      );
      haveTimeline = true;
      const cuts = recording.options?.skipPausedAudio ? pauses : [];
      await run(options.ffmpeg, voiceEncodeArgs(timeline, cuts, 'voice.mp3', 'voice.webm'), { cwd: dir });
      outputs.push({ file: 'voice.mp3', kind: 'voice', contentType: 'audio/mpeg', participantId: '' });
      outputs.push({ file: 'voice.webm', kind: 'voice', contentType: 'audio/webm', participantId: '' });
    } catch (error) {
      failed('voice', error);
    }
  }
  let n = 0;
  for (const stream of record.streams.filter((s) => s.kind === 'video' && inputs.has(s.streamId))) {
    const kind = stream.source === 'screen' ? 'screen' : 'camera';
    const h264 = stream.mimeType.toLowerCase() === 'video/h264';
    const base = `${kind}-${stream.participantId}-${++n}`;
    // H.264 cannot go in WebM: it is kept in Matroska, still without re-encoding.
    const file = `${base}.${h264 ? 'mkv' : 'webm'}`;
    try {
      await run(options.ffmpeg, remuxArgs(inputs.get(stream.streamId)!, file), { cwd: dir });
      outputs.push({ file, kind, contentType: h264 ? 'video/x-matroska' : 'video/webm', participantId: stream.participantId });
    } catch (error) {
      failed(`${kind} of ${stream.participantId}`, error);
      continue;
    }
    if (recording.options?.transcodeMp4 && haveTimeline) {
      try {
        await run(options.ffmpeg, mp4Args(file, timeline, `${base}.mp4`), { cwd: dir });
        outputs.push({ file: `${base}.mp4`, kind, contentType: 'video/mp4', participantId: stream.participantId });
      } catch (error) {
        failed(`MP4 of the ${kind} of ${stream.participantId}`, error);
      }
    }
  }

  const artifacts: Artifact[] = [];
  for (const output of outputs) {
    const file = path.join(dir, output.file);
    const size = await stat(file).then(
      (s) => s.size,
      () => 0,
    );
    if (size === 0) continue;
    const duration = await durationMs(options.ffprobe, file);
    // CRMs limit uploads (Zendesk: 50 MB): a larger file is stored as ordered parts that
    // concatenate back into it.
    const parts = Math.ceil(size / options.maxPartBytes);
    for (let part = 1; part <= parts; part++) {
      const artifactId = newId('AR');
      const start = (part - 1) * options.maxPartBytes;
      const end = Math.min(size, start + options.maxPartBytes) - 1;
      await storeWhenRoom(() => store.put(recording.tenant, artifactId, createReadStream(file, { start, end }), output.contentType, { sizeBytes: end - start + 1 }));
      artifacts.push({
        artifactId,
        kind: output.kind,
        contentType: output.contentType,
        participantId: output.participantId,
        sizeBytes: end - start + 1,
        durationMs: duration,
        part: parts > 1 ? part : 0,
      });
    }
  }
  return { artifacts, problem: problems.join('; ') };
}

/**
 * How long a recording's files wait for room in a full artifact store before the recording
 * fails. The store fills when crm-sync cannot deliver (a CRM down), and frees room as it
 * delivers again; meanwhile the files stay in the job's folder and the storage alert is firing.
 */
export const STORE_FULL_WAIT_MS = 15 * 60_000;
const STORE_FULL_BACKOFF: Backoff = { initialMs: 1_000, maxMs: 30_000 };

/** Stores with `put`, written again with a backoff while the store is full, up to `waitMs`. */
export async function storeWhenRoom<T>(put: () => Promise<T>, waitMs = STORE_FULL_WAIT_MS, backoff = STORE_FULL_BACKOFF): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await put();
    } catch (error) {
      if (!isArtifactStoreFull(error) || Date.now() >= deadline) throw error;
      await sleepBackoff(attempt, backoff);
    }
  }
}

async function durationMs(ffprobe: string, file: string): Promise<number> {
  try {
    const { stdout } = await run(ffprobe, ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]);
    const seconds = Number(stdout.trim());
    return Number.isFinite(seconds) ? Math.round(seconds * 1000) : 0;
  } catch {
    return 0;
  }
}
