/**
 * What a recording asks of ffmpeg, in two steps.
 *
 * Capture (while the call runs): one ffmpeg per job receives every tapped stream (one SDP) and
 * copies each, without decoding, into short Matroska segments stamped with the wall clock, so
 * that streams, captures and even recorder nodes share one timeline. A finished segment is
 * encrypted into the artifact store at once: a recorder that dies loses at most the segment in
 * progress.
 *
 * Assembly (when the recording ends): each stream's segments are laid on that timeline
 * (an ffconcat list whose durations carry the gaps: pauses, restarts) and turned into the
 * session's files: voice in stereo, end user left and agents right, gaps as silence, as MP3
 * and Opus/WebM; each camera and screen share remuxed as it came.
 */

export interface CaptureStream {
  streamId: string;
  kind: 'audio' | 'video';
  /** Local port ffmpeg listens on for RTP; RTCP arrives on port + 1. */
  port: number;
  payloadType: number;
  /** e.g. `audio/opus`, `video/VP8`. */
  mimeType: string;
  clockRate: number;
  channels?: number;
  fmtp?: string;
}

export function buildSdp(streams: CaptureStream[], ip = '127.0.0.1'): string {
  const lines = ['v=0', `o=- 0 0 IN IP4 ${ip}`, 's=gateway recording', `c=IN IP4 ${ip}`, 't=0 0'];
  for (const s of streams) {
    const codec = s.mimeType.split('/')[1]!;
    lines.push(`m=${s.kind} ${s.port} RTP/AVP ${s.payloadType}`);
    lines.push(`a=rtpmap:${s.payloadType} ${codec}/${s.clockRate}${s.channels ? `/${s.channels}` : ''}`);
    if (s.fmtp) lines.push(`a=fmtp:${s.payloadType} ${s.fmtp}`);
    lines.push('a=recvonly');
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** Segment files and their list (CSV: file,start,end relative to the capture's start) for one stream of one capture. */
export function segmentNames(streamId: string, capture: number) {
  return { list: `${streamId}-c${capture}.csv`, pattern: `${streamId}-c${capture}-%05d.mkv` };
}

export function captureArgs(streams: CaptureStream[], sdpFile: string, capture: number, segmentSeconds: number): string[] {
  const args = [
    '-hide_banner',
    '-loglevel',
    'info',
    '-nostats',
    // Stamping packets with the wall clock puts every capture on one timeline.
    '-use_wallclock_as_timestamps',
    '1',
    // A PCI pause sends nothing for as long as it lasts: keep waiting (the default gives up after 10 s).
    '-listen_timeout',
    '-1',
    '-protocol_whitelist',
    'file,udp,rtp',
    // Enough to see a key frame of every video stream before writing starts.
    '-analyzeduration',
    '1000000',
    '-probesize',
    '10000000',
    '-i',
    sdpFile,
  ];
  streams.forEach((s, index) => {
    const { list, pattern } = segmentNames(s.streamId, capture);
    args.push(
      '-map',
      `0:${index}`,
      '-c',
      'copy',
      '-f',
      'segment',
      '-segment_time',
      String(segmentSeconds),
      '-segment_format',
      'matroska',
      // Browsers send key frames only on request: cut anywhere, assembly joins the pieces again.
      '-break_non_keyframes',
      '1',
      '-reset_timestamps',
      '0',
      '-segment_list',
      list,
      '-segment_list_type',
      'csv',
      pattern,
    );
  });
  return args;
}

/** The last line ffmpeg logged: the reason it failed, for the recording's metadata. */
export function lastLogLine(log: string): string {
  return log.trim().split('\n').pop()?.slice(0, 300) ?? '';
}

/** The wall-clock time (Unix seconds) ffmpeg took as the start of the capture's timeline. */
export function parseCaptureStart(log: string): number | undefined {
  const match = /Input #0[\s\S]*?start: (\d+\.\d+)/.exec(log);
  return match ? Number(match[1]) : undefined;
}

/** Lines of a segment list: completed segments, with start and end relative to the capture's start. */
export function parseSegmentList(text: string): Array<{ file: string; start: number; end: number }> {
  return text
    .split('\n')
    .map((line) => line.trim().split(','))
    .filter((cols) => cols.length === 3 && cols[0])
    .map(([file, start, end]) => ({ file: file!, start: Number(start), end: Number(end) }));
}

export interface PlacedSegment {
  file: string;
  /** Seconds from the start of the recording. */
  start: number;
  end: number;
  /** Seconds into the file after which nothing is kept (a pause began there). */
  outpoint?: number;
}

/**
 * An ffconcat list that lays the segments on the recording's timeline: each entry lasts until
 * the next one starts, so gaps between captures stay gaps. The list starts at 0; the input is
 * shifted by the first segment's start.
 */
export function concatList(segments: PlacedSegment[]): string {
  const lines = ['ffconcat version 1.0'];
  segments.forEach((s, i) => {
    const next = segments[i + 1];
    lines.push(`file '${s.file.replace(/'/g, "'\\''")}'`);
    if (s.outpoint !== undefined) lines.push(`outpoint ${Math.max(0, s.outpoint).toFixed(6)}`);
    lines.push(`duration ${Math.max(0.001, (next ? next.start : s.end) - s.start).toFixed(6)}`);
  });
  return `${lines.join('\n')}\n`;
}

export interface AssemblyInput {
  listFile: string;
  /** Seconds from the start of the recording at which the stream's first segment starts. */
  offset: number;
}

function input({ listFile, offset }: AssemblyInput): string[] {
  return ['-itsoffset', offset.toFixed(6), '-f', 'concat', '-safe', '0', '-i', listFile];
}

/** A camera or screen share as it came (no re-encoding), on the recording's timeline. */
export function remuxArgs(source: AssemblyInput, outFile: string): string[] {
  return ['-hide_banner', '-loglevel', 'error', '-y', ...input(source), '-map', '0:v', '-c', 'copy', outFile];
}

/** Mixes some audio labels into one mono label, or makes silence when there are none. */
function mixTo(labels: string[], out: string, seconds: number): string {
  if (labels.length === 0) return `anullsrc=r=48000:cl=mono,atrim=end=${seconds}[${out}]`;
  if (labels.length === 1) return `[${labels[0]}]anull[${out}]`;
  return `${labels.map((l) => `[${l}]`).join('')}amix=inputs=${labels.length}:normalize=0:duration=longest[${out}]`;
}

/** Stereo voice of the whole recording on its timeline (end user left, agents right), lossless. */
export function voiceMixArgs(inputs: Array<AssemblyInput & { left: boolean }>, seconds: number, outFile: string, pauses: Array<[number, number]> = []): string[] {
  const args = ['-hide_banner', '-loglevel', 'error', '-y'];
  const graph: string[] = [];
  const left: string[] = [];
  const right: string[] = [];
  const total = seconds.toFixed(3);
  inputs.forEach((source, i) => {
    args.push(...input(source));
    // Timestamps drive the gaps: a pause, a loss or a restart becomes silence of the same length,
    // and every input is made as long as the recording so the channels stay aligned.
    graph.push(`[${i}:a]aresample=48000:async=1:first_pts=0,pan=mono|c0=0.5*c0+0.5*c1,apad=whole_dur=${total},atrim=end=${total}[a${i}]`);
    (source.left ? left : right).push(`a${i}`);
  });
  graph.push(mixTo(left, 'left', seconds), mixTo(right, 'right', seconds));
  // Paused intervals are silence whatever reached the recorder (belt and braces for PCI).
  const mute = pauses.length ? `,volume=volume=0:enable='${pauses.map(([a, b]) => `between(t,${a.toFixed(3)},${b.toFixed(3)})`).join('+')}'` : '';
  graph.push(`[left][right]join=inputs=2:channel_layout=stereo:map=0.0-FL|1.0-FR${mute}[voice]`);
  args.push('-filter_complex', graph.join(';'), '-map', '[voice]', '-c:a', 'flac', outFile);
  return args;
}

/** The voice files delivered: MP3 and Opus/WebM, with the PCI pauses cut out when the tenant asks. */
export function voiceEncodeArgs(timelineFile: string, cuts: Array<[number, number]>, mp3File: string, opusFile: string): string[] {
  const args = ['-hide_banner', '-loglevel', 'error', '-y', '-i', timelineFile];
  const filter = cuts.length ? [`aselect='not(${cuts.map(([a, b]) => `between(t,${a.toFixed(3)},${b.toFixed(3)})`).join('+')})'`, 'asetpts=N/SR/TB'] : [];
  const withFilter = filter.length ? ['-af', filter.join(',')] : [];
  args.push(...withFilter, '-c:a', 'libmp3lame', '-b:a', '96k', mp3File);
  args.push(...withFilter, '-c:a', 'libopus', '-b:a', '48k', opusFile);
  return args;
}

/** A video with the voice, as H.264/AAC MP4 for tools that do not play WebM; both keep their place on the timeline. */
export function mp4Args(videoFile: string, timelineFile: string, outFile: string): string[] {
  return [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-copyts',
    '-i',
    videoFile,
    '-i',
    timelineFile,
    '-map',
    '0:v',
    '-map',
    '1:a',
    '-fps_mode',
    'passthrough',
    '-c:v',
    'libx264',
    '-preset',
    'veryfast',
    '-crf',
    '23',
    '-pix_fmt',
    'yuv420p',
    '-c:a',
    'aac',
    '-b:a',
    '128k',
    '-movflags',
    '+faststart',
    outFile,
  ];
}
