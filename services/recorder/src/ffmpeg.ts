/**
 * What one recording job asks of ffmpeg: an SDP that describes every tapped stream (one input,
 * so ffmpeg aligns the streams on the RTCP sender reports of the SFU) and the arguments that
 * turn them into the session's files:
 * - voice: every microphone decoded, the end user's mixed to the left channel and the agents'
 *   to the right, gaps (PCI pauses, lost packets) filled with silence from their timestamps;
 *   MP3 for CRMs and Opus in WebM;
 * - each camera and screen share copied into its own file without re-encoding.
 */

export interface RtpStream {
  producerId: string;
  participantId: string;
  /** `end_user` goes to the left channel, everyone else to the right. */
  role: string;
  source: 'camera' | 'microphone' | 'screen' | 'screen_audio';
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

export interface OutputFile {
  file: string;
  kind: 'voice' | 'camera' | 'screen';
  contentType: string;
  participantId: string;
}

export function buildSdp(streams: RtpStream[], ip = '127.0.0.1'): string {
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

function videoOutput(s: RtpStream): OutputFile {
  const mp4 = s.mimeType.toLowerCase() === 'video/h264';
  const kind = s.source === 'screen' ? 'screen' : 'camera';
  return { file: `${kind}-${s.participantId}.${mp4 ? 'mp4' : 'webm'}`, kind, contentType: mp4 ? 'video/mp4' : 'video/webm', participantId: s.participantId };
}

/** Mixes some audio labels into one mono label, or makes silence when there are none. */
function mixTo(labels: string[], out: string): string {
  if (labels.length === 0) return `anullsrc=r=48000:cl=mono[${out}]`;
  if (labels.length === 1) return `[${labels[0]}]anull[${out}]`;
  return `${labels.map((l) => `[${l}]`).join('')}amix=inputs=${labels.length}:normalize=0[${out}]`;
}

export function buildFfmpegArgs(streams: RtpStream[], sdpPath: string): { args: string[]; outputs: OutputFile[] } {
  const args = [
    '-hide_banner', '-loglevel', 'warning', '-nostats',
    '-protocol_whitelist', 'file,udp,rtp',
    // Enough to see a key frame of every video stream before writing starts.
    '-analyzeduration', '3000000', '-probesize', '10000000',
    '-reorder_queue_size', '500',
    '-i', sdpPath,
  ];
  const outputs: OutputFile[] = [];
  const audio = streams.map((s, index) => ({ s, index })).filter(({ s }) => s.kind === 'audio');
  if (audio.length > 0) {
    const graph: string[] = [];
    const left: string[] = [];
    const right: string[] = [];
    for (const { s, index } of audio) {
      const label = `a${index}`;
      // Timestamps drive the gaps: a pause or a loss becomes silence of the same length.
      graph.push(`[0:${index}]aresample=48000:async=1:first_pts=0,pan=mono|c0=0.5*c0+0.5*c1[${label}]`);
      (s.role === 'end_user' ? left : right).push(label);
    }
    graph.push(mixTo(left, 'left'), mixTo(right, 'right'));
    graph.push('[left][right]join=inputs=2:channel_layout=stereo:map=0.0-FL|1.0-FR,asplit=2[mp3][opus]');
    args.push('-filter_complex', graph.join(';'));
    args.push('-map', '[mp3]', '-c:a', 'libmp3lame', '-b:a', '96k', 'voice.mp3');
    args.push('-map', '[opus]', '-c:a', 'libopus', '-b:a', '48k', 'voice.webm');
    outputs.push({ file: 'voice.mp3', kind: 'voice', contentType: 'audio/mpeg', participantId: '' });
    outputs.push({ file: 'voice.webm', kind: 'voice', contentType: 'audio/webm', participantId: '' });
  }
  streams.forEach((s, index) => {
    if (s.kind !== 'video') return;
    const output = videoOutput(s);
    args.push('-map', `0:${index}`, '-c', 'copy', output.file);
    outputs.push(output);
  });
  return { args, outputs };
}
