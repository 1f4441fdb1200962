import { describe, expect, it } from 'vitest';
import { buildSdp, captureArgs, concatList, parseCaptureStart, parseSegmentList, voiceEncodeArgs, voiceMixArgs } from './ffmpeg.js';

const opus = { streamId: 'PR_a', kind: 'audio' as const, port: 40000, payloadType: 100, mimeType: 'audio/opus', clockRate: 48000, channels: 2, fmtp: 'minptime=10;useinbandfec=1' };
const vp8 = { streamId: 'PR_v', kind: 'video' as const, port: 40002, payloadType: 101, mimeType: 'video/VP8', clockRate: 90000 };

describe('ffmpeg plans for recordings', () => {
  it('describes every tapped stream in one SDP, each on its own port', () => {
    const sdp = buildSdp([opus, vp8]);
    expect(sdp).toContain('m=audio 40000 RTP/AVP 100\r\na=rtpmap:100 opus/48000/2\r\na=fmtp:100 minptime=10;useinbandfec=1');
    expect(sdp).toContain('m=video 40002 RTP/AVP 101\r\na=rtpmap:101 VP8/90000\r\na=recvonly');
  });

  it('copies each stream into its own wall-clock segments and waits through long silences', () => {
    const args = captureArgs([opus, vp8], 'capture-1.sdp', 1, 10).join(' ');
    expect(args).toContain('-use_wallclock_as_timestamps 1');
    expect(args).toContain('-listen_timeout -1');
    expect(args).toContain('-map 0:0 -c copy -f segment -segment_time 10');
    expect(args).toContain('-segment_list PR_v-c1.csv -segment_list_type csv PR_v-c1-%05d.mkv');
    expect(args).not.toMatch(/-c:[av] (?!copy)/);
  });

  it('reads the start of the capture timeline and the completed segments', () => {
    expect(parseCaptureStart("Input #0, sdp, from 'capture-1.sdp':\n  Metadata:\n    title: x\n  Duration: N/A, start: 1795620965.301000, bitrate: N/A")).toBe(1795620965.301);
    expect(parseCaptureStart('Input #0, sdp, from')).toBeUndefined();
    expect(parseSegmentList('a-00000.mkv,0.000000,2.001000\na-00001.mkv,2.001000,15.196000\n')).toEqual([
      { file: 'a-00000.mkv', start: 0, end: 2.001 },
      { file: 'a-00001.mkv', start: 2.001, end: 15.196 },
    ]);
  });

  it('lays segments on the timeline: each lasts until the next starts, so gaps between captures remain', () => {
    const list = concatList([
      { file: 'a-c1-00000.mkv', start: 0.5, end: 2.5 },
      { file: 'a-c1-00001.mkv', start: 2.5, end: 3.1 },
      { file: 'a-c2-00000.mkv', start: 3.6, end: 5.0 },
    ]);
    expect(list).toBe("ffconcat version 1.0\nfile 'a-c1-00000.mkv'\nduration 2.000000\nfile 'a-c1-00001.mkv'\nduration 1.100000\nfile 'a-c2-00000.mkv'\nduration 1.400000\n");
  });

  it('puts the end user on the left and everyone else on the right, silence where nobody is', () => {
    const args = voiceMixArgs([{ listFile: 'a.ffconcat', offset: 1.25, left: false }], 30, 'v.mka');
    const graph = args[args.indexOf('-filter_complex') + 1]!;
    expect(args.slice(0, 12).join(' ')).toContain('-itsoffset 1.250000 -f concat -safe 0 -i a.ffconcat');
    expect(graph).toContain('anullsrc=r=48000:cl=mono,atrim=end=30[left]');
    expect(graph).toContain('[a0]anull[right]');
    expect(graph).toContain('join=inputs=2:channel_layout=stereo:map=0.0-FL|1.0-FR');
  });

  it('cuts the PCI pauses out of the voice only when asked', () => {
    expect(voiceEncodeArgs('t.mka', [], 'v.mp3', 'v.webm')).not.toContain('-af');
    const args = voiceEncodeArgs(
      't.mka',
      [
        [4, 16.5],
        [20, 21],
      ],
      'v.mp3',
      'v.webm',
    );
    expect(args[args.indexOf('-af') + 1]).toBe("aselect='not(between(t,4.000,16.500)+between(t,20.000,21.000))',asetpts=N/SR/TB");
  });
});
