import { execFile } from 'node:child_process';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Artifact, RecordingJobRecord, Segment } from '@gateway/proto/gateway/recorder/v1/recorder';
import { newId, type ArtifactStore } from '@gateway/common';
import { concatList, remuxArgs, voiceArgs, type AssemblyInput } from './ffmpeg.js';

const run = promisify(execFile);

export interface AssemblyOptions {
  record: RecordingJobRecord;
  endedAtMs: number;
  /** The job's private working folder. */
  dir: string;
  store: ArtifactStore;
  ffmpeg: string;
  ffprobe: string;
  /** The plaintext copy of a segment still in the working folder, if any. */
  localFile: (segment: Segment) => string | undefined;
}

interface Output {
  file: string;
  kind: string;
  contentType: string;
  participantId: string;
}

/**
 * Turns a recording's segments into its files and stores them encrypted: the stereo voice (MP3
 * and Opus/WebM) and one file per camera or screen-share stream. Segments missing from the
 * working folder (a recording finished by another node) are decrypted from the store first.
 * Returns the artifacts and, when some output could not be made, why.
 */
export async function assembleRecording(options: AssemblyOptions): Promise<{ artifacts: Artifact[]; problem: string }> {
  const { record, dir, store } = options;
  const recording = record.recording!;
  const startS = recording.startedAtMs / 1000;
  const seconds = Math.max(0.1, (options.endedAtMs - recording.startedAtMs) / 1000);
  const problems: string[] = [];
  const inputs = new Map<string, AssemblyInput>();

  for (const stream of record.streams) {
    const segments = record.segments.filter((s) => s.streamId === stream.streamId).sort((a, b) => a.startS - b.startS);
    if (segments.length === 0) continue;
    const placed = [];
    for (const segment of segments) {
      let file = options.localFile(segment);
      if (!file) {
        file = `restored-${segment.objectId}.mkv`;
        await writeFile(path.join(dir, file), (await store.get(recording.tenant, segment.objectId)).data, { mode: 0o600 });
      }
      placed.push({ file, start: segment.startS - startS, end: segment.endS - startS });
    }
    const listFile = `${stream.streamId}.ffconcat`;
    await writeFile(path.join(dir, listFile), concatList(placed));
    inputs.set(stream.streamId, { listFile, offset: Math.max(0, placed[0]!.start) });
  }

  const outputs: Output[] = [];
  const voices = record.streams.filter((s) => s.kind === 'audio' && inputs.has(s.streamId));
  if (voices.length > 0) {
    const args = voiceArgs(voices.map((s) => ({ ...inputs.get(s.streamId)!, left: s.role === 'end_user' })), seconds, 'voice.mp3', 'voice.webm');
    try {
      await run(options.ffmpeg, args, { cwd: dir });
      outputs.push({ file: 'voice.mp3', kind: 'voice', contentType: 'audio/mpeg', participantId: '' });
      outputs.push({ file: 'voice.webm', kind: 'voice', contentType: 'audio/webm', participantId: '' });
    } catch (error) {
      problems.push(`voice: ${lastLine((error as { stderr?: string }).stderr ?? String(error))}`);
    }
  }
  let n = 0;
  for (const stream of record.streams.filter((s) => s.kind === 'video' && inputs.has(s.streamId))) {
    const kind = stream.source === 'screen' ? 'screen' : 'camera';
    const mp4 = stream.mimeType.toLowerCase() === 'video/h264';
    const file = `${kind}-${stream.participantId}-${++n}.${mp4 ? 'mp4' : 'webm'}`;
    try {
      await run(options.ffmpeg, remuxArgs(inputs.get(stream.streamId)!, file), { cwd: dir });
      outputs.push({ file, kind, contentType: mp4 ? 'video/mp4' : 'video/webm', participantId: stream.participantId });
    } catch (error) {
      problems.push(`${kind} of ${stream.participantId}: ${lastLine((error as { stderr?: string }).stderr ?? String(error))}`);
    }
  }

  const artifacts: Artifact[] = [];
  for (const output of outputs) {
    const file = path.join(dir, output.file);
    const size = await stat(file).then((s) => s.size, () => 0);
    if (size === 0) continue;
    const artifactId = newId('AR');
    await store.putFile(recording.tenant, artifactId, file, output.contentType);
    artifacts.push({ artifactId, kind: output.kind, contentType: output.contentType, participantId: output.participantId, sizeBytes: size, durationMs: await durationMs(options.ffprobe, file), part: 1 });
  }
  return { artifacts, problem: problems.join('; ') };
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

function lastLine(text: string): string {
  return text.trim().split('\n').pop()?.slice(0, 300) ?? '';
}
