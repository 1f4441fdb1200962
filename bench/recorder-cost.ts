/**
 * Recorder cost, with the recorder's own ffmpeg plans (services/recorder/src/ffmpeg.ts):
 * - capture: RTP of a call (a 720p VP8 camera with motion and noise, and Opus voice), sent at
 *   real time by ffmpeg, copied into segments as a job does; CPU per recorded stream-minute,
 *   and whether the capture keeps up with real time while several recordings run at once;
 * - assembly at the end: stereo voice (MP3 and Opus) and the camera remuxed, per recorded minute;
 * - the optional H.264/AAC MP4 transcode, per recorded minute.
 * CPU comes from the processes' own accounting (/proc, or the shell's `times` for children).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildSdp, captureArgs, concatList, mp4Args, parseSegmentList, remuxArgs, segmentNames, voiceEncodeArgs, voiceMixArgs, type CaptureStream } from '../services/recorder/src/ffmpeg.js';
import { cpuTimes } from './stack.js';

const SECONDS = Number(process.env.BENCH_RECORD_SECONDS ?? 30);
const RECORDINGS = Number(process.env.BENCH_RECORDINGS ?? 4);

/** A 10 s clip of a call's media, encoded once: VP8 720p at a camera's bitrate, Opus voice. */
function clip(): { video: string; audio: string } {
  mkdirSync('.tmp', { recursive: true });
  const video = '.tmp/bench-call-video.webm';
  const audio = '.tmp/bench-call-audio.webm';
  if (!existsSync(video)) {
    execFileSync('ffmpeg', [
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t',
      '-t',
      '10',
      '-c:v',
      'libvpx',
      '-b:v',
      '1500k',
      '-deadline',
      'realtime',
      '-cpu-used',
      '8',
      '-g',
      '3000',
      '-y',
      video,
    ]);
  }
  if (!existsSync(audio)) {
    execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=f=440:beep_factor=4', '-t', '10', '-ac', '2', '-c:a', 'libopus', '-b:a', '48k', '-y', audio]);
  }
  return { video, audio };
}

/** Cumulative CPU seconds of the children a shell ran, from bash's `times`. */
function childCpuSeconds(args: string[], cwd: string): number {
  const quoted = args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const out = execFileSync('bash', ['-c', `ffmpeg ${quoted} </dev/null >/dev/null 2>&1; times`], { cwd, encoding: 'utf8' });
  const [user, system] = out
    .trim()
    .split('\n')[1]!
    .trim()
    .split(/\s+/)
    .map((t) => {
      const m = /(\d+)m([\d.]+)s/.exec(t)!;
      return Number(m[1]) * 60 + Number(m[2]);
    });
  return user! + system!;
}

let port = 46000 + 2 * Math.floor(Math.random() * 5000);
const { video, audio } = clip();
const work = mkdtempSync(path.join(tmpdir(), 'gateway-bench-recorder-'));
const senders: ChildProcess[] = [];
const captures: Array<{ dir: string; child: ChildProcess; exited: Promise<unknown>; streams: CaptureStream[] }> = [];
try {
  for (let r = 0; r < RECORDINGS; r++) {
    const dir = path.join(work, `r${r}`);
    mkdirSync(dir);
    const streams: CaptureStream[] = [
      { streamId: 'voice', kind: 'audio', port: (port += 2), payloadType: 111, mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
      { streamId: 'camera', kind: 'video', port: (port += 2), payloadType: 96, mimeType: 'video/VP8', clockRate: 90000 },
    ];
    writeFileSync(path.join(dir, 'capture.sdp'), buildSdp(streams));
    const child = spawn('ffmpeg', captureArgs(streams, 'capture.sdp', 1, 10), { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
    captures.push({ dir, child, streams, exited: new Promise((r) => child.once('exit', r)) });
  }
  await new Promise((r) => setTimeout(r, 1_000));
  for (const { streams } of captures) {
    for (const [stream, file] of [
      [streams[0]!, audio],
      [streams[1]!, video],
    ] as const) {
      senders.push(
        spawn(
          'ffmpeg',
          [
            '-loglevel',
            'error',
            '-re',
            '-stream_loop',
            '-1',
            '-i',
            file,
            '-c',
            'copy',
            '-payload_type',
            String(stream.payloadType),
            '-f',
            'rtp',
            `rtp://127.0.0.1:${stream.port}?rtcpport=${stream.port + 1}`,
          ],
          { stdio: 'ignore' },
        ),
      );
    }
  }
  const before = await Promise.all(captures.map((c) => cpuTimes(c.child.pid!)));
  const started = Date.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const after = await Promise.all(captures.map((c) => cpuTimes(c.child.pid!)));
  const wall = (Date.now() - started) / 1000;
  for (const s of senders) s.kill('SIGKILL');
  // Twice: without input, ffmpeg only stops waiting for it at the second (see RecordingJob).
  for (const { child } of captures) child.kill('SIGINT');
  await new Promise((r) => setTimeout(r, 200));
  for (const { child } of captures) child.kill('SIGINT');
  await Promise.all(captures.map((c) => c.exited));

  const captureCpu = after.reduce((sum, a, i) => sum + a.user + a.system - before[i]!.user - before[i]!.system, 0);
  const streamMinutes = (captures.length * 2 * wall) / 60;
  // Each capture's segments end where the clock says they should: the recording kept up.
  const recorded = captures.map(({ dir }) => parseSegmentList(readFileSync(path.join(dir, segmentNames('camera', 1).list), 'utf8')).at(-1)?.end ?? 0);
  const keptUp = recorded.every((end) => end >= wall - 12);

  // Assembly and transcode of one recording.
  const { dir } = captures[0]!;
  const place = (id: string) => {
    const segments = parseSegmentList(readFileSync(path.join(dir, segmentNames(id, 1).list), 'utf8'));
    writeFileSync(path.join(dir, `${id}.ffconcat`), concatList(segments.map((s) => ({ file: s.file, start: s.start, end: s.end }))));
    return { listFile: `${id}.ffconcat`, offset: segments[0]!.start };
  };
  const [voice, camera] = [place('voice'), place('camera')];
  const minutes = recorded[0]! / 60;
  const assembly =
    childCpuSeconds(voiceMixArgs([{ ...voice, left: true }], recorded[0]!, 'timeline.mka'), dir) +
    childCpuSeconds(voiceEncodeArgs('timeline.mka', [], 'voice.mp3', 'voice.webm'), dir) +
    childCpuSeconds(remuxArgs(camera, 'camera.webm'), dir);
  const transcode = childCpuSeconds(mp4Args('camera.webm', 'timeline.mka', 'camera.mp4'), dir);

  const perStreamMinute = captureCpu / streamMinutes;
  // CPU seconds a recorded minute of one call (voice + camera) costs in all, capture and assembly.
  const perRecordingMinute = 2 * perStreamMinute + assembly / minutes;
  console.log(
    JSON.stringify({
      benchmark: 'recorder_cost',
      recordings: RECORDINGS,
      seconds: Math.round(wall),
      capture_cpu_s_per_stream_minute: +perStreamMinute.toFixed(3),
      capture_percent_core_per_stream: +((perStreamMinute / 60) * 100).toFixed(2),
      captures_kept_up: keptUp,
      assembly_cpu_s_per_recorded_minute: +(assembly / minutes).toFixed(2),
      mp4_transcode_cpu_s_per_recorded_minute: +(transcode / minutes).toFixed(1),
      // Captures run during the call; assembly and transcode once, after it.
      concurrent_recordings_per_core: Math.floor(60 / (2 * perStreamMinute)),
      recorded_minutes_per_core_minute_with_assembly: +(60 / perRecordingMinute).toFixed(1),
      recorded_minutes_per_core_minute_with_mp4: +(60 / (perRecordingMinute + transcode / minutes)).toFixed(1),
    }),
  );
} finally {
  for (const s of senders) s.kill('SIGKILL');
  for (const c of captures) c.child.kill('SIGKILL');
  if (!process.env.BENCH_KEEP) rmSync(work, { recursive: true, force: true });
  else console.error(work);
}
