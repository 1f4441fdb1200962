import { describe, expect, it } from 'vitest';
import { normaliseTrackStats, selectedPath, type TrackStatsInput } from './trackStats.js';

const base = { trackId: 'PR_1', participantId: 'PA_1' } as const;
const pair = { type: 'candidate-pair', state: 'succeeded', nominated: true, currentRoundTripTime: 0.042 };

describe('normaliseTrackStats', () => {
  it('receives: bitrate and loss over the interval, jitter and round trip in ms, the picture', () => {
    const report = (at: number, bytes: number, received: number, lost: number) => [
      { type: 'inbound-rtp', kind: 'video', timestamp: at, bytesReceived: bytes, packetsReceived: received, packetsLost: lost, jitter: 0.0123, framesPerSecond: 29, frameWidth: 640, frameHeight: 360 },
      pair,
    ];
    const input = (report: object[]): TrackStatsInput => ({ ...base, source: 'camera', kind: 'video', direction: 'receive', report: report as TrackStatsInput['report'] });
    const first = normaliseTrackStats(input(report(1_000, 10_000, 90, 10)), undefined);
    expect(first.stats).toEqual({
      ...base,
      source: 'camera',
      kind: 'video',
      direction: 'receive',
      bitrateBps: undefined,
      packetsLost: 10,
      lossRatio: 0.1,
      jitterMs: 12.3,
      roundTripTimeMs: 42,
      framesPerSecond: 29,
      frameWidth: 640,
      frameHeight: 360,
    });
    // 2 s later: 50,000 bytes more (200 kbit/s), 150 received and 50 lost (25 %).
    const second = normaliseTrackStats(input(report(3_000, 60_000, 240, 60)), first.counters);
    expect(second.stats).toMatchObject({ bitrateBps: 200_000, packetsLost: 60, lossRatio: 0.25 });
  });

  it('sends simulcast: layers add up, the highest gives the picture, loss and round trip from the receiver reports', () => {
    const layer = (rid: string, width: number, bytes: number, packets: number, at: number) => ({
      type: 'outbound-rtp',
      kind: 'video',
      rid,
      timestamp: at,
      bytesSent: bytes,
      packetsSent: packets,
      frameWidth: width,
      frameHeight: (width * 9) / 16,
      framesPerSecond: width === 1280 ? 30 : 15,
    });
    const remote = (lost: number) => ({ type: 'remote-inbound-rtp', kind: 'video', packetsLost: lost, roundTripTime: 0.08, jitter: 0.004 });
    const input = (report: object[]): TrackStatsInput => ({ ...base, source: 'camera', kind: 'video', direction: 'send', report: report as TrackStatsInput['report'] });
    const first = normaliseTrackStats(input([layer('q', 320, 1_000, 10, 500), layer('h', 640, 2_000, 20, 500), layer('f', 1280, 7_000, 70, 500), remote(0), pair]), undefined);
    expect(first.stats).toMatchObject({ packetsLost: 0, lossRatio: 0, roundTripTimeMs: 80, jitterMs: 4, frameWidth: 1280, frameHeight: 720, framesPerSecond: 30 });
    const second = normaliseTrackStats(input([layer('q', 320, 6_000, 60, 1_500), layer('h', 640, 12_000, 120, 1_500), layer('f', 1280, 107_000, 1_070, 1_500), remote(100), pair]), first.counters);
    // 115,000 bytes in 1 s; 100 of 1,150 packets lost.
    expect(second.stats.bitrateBps).toBe(920_000);
    expect(second.stats.lossRatio).toBeCloseTo(100 / 1_150, 5);
  });

  it('audio has no picture; nothing carried yet has no loss ratio; a counter that went back starts over', () => {
    const input = (report: object[]): TrackStatsInput => ({ ...base, source: 'microphone', kind: 'audio', direction: 'receive', report: report as TrackStatsInput['report'] });
    const empty = normaliseTrackStats(input([{ type: 'inbound-rtp', kind: 'audio', timestamp: 1, bytesReceived: 0, packetsReceived: 0, packetsLost: 0 }]), undefined);
    expect(empty.stats).toEqual({
      ...base,
      source: 'microphone',
      kind: 'audio',
      direction: 'receive',
      bitrateBps: undefined,
      packetsLost: 0,
      lossRatio: undefined,
      jitterMs: undefined,
      roundTripTimeMs: undefined,
    });
    const restarted = normaliseTrackStats(input([{ type: 'inbound-rtp', kind: 'audio', timestamp: 2_000, bytesReceived: 100, packetsReceived: 5, packetsLost: 0 }]), {
      atMs: 1_000,
      bytes: 5_000,
      packets: 50,
      packetsLost: 3,
    });
    expect(restarted.stats).toMatchObject({ bitrateBps: undefined, lossRatio: 0, packetsLost: 0 });
  });

  it('ignores entries of the other kind and values that are not numbers', () => {
    const input: TrackStatsInput = {
      ...base,
      source: 'microphone',
      kind: 'audio',
      direction: 'receive',
      report: [
        { type: 'inbound-rtp', kind: 'video', timestamp: 1, bytesReceived: 9_999, packetsReceived: 99, packetsLost: 9 },
        { type: 'inbound-rtp', kind: 'audio', timestamp: 1, bytesReceived: 'lots', packetsReceived: 10, packetsLost: Number.NaN, jitter: null },
      ],
    };
    expect(normaliseTrackStats(input, undefined).stats).toMatchObject({ packetsLost: 0, lossRatio: 0, jitterMs: undefined });
  });

  it('finds the selected ICE path: its protocol, round trip and bandwidth estimate', () => {
    const candidates = [
      { type: 'local-candidate', id: 'L1', protocol: 'udp' },
      { type: 'local-candidate', id: 'L2', protocol: 'tcp' },
      { type: 'local-candidate', id: 'L3', protocol: 'udp', relayProtocol: 'tls' },
    ];
    const pairTo = (local: string, state = 'succeeded') => ({
      type: 'candidate-pair',
      id: `P-${local}`,
      localCandidateId: local,
      state,
      nominated: true,
      currentRoundTripTime: 0.031,
      availableOutgoingBitrate: 1_200_000,
    });
    const via = (local: string) => [...candidates, pairTo(local), { type: 'transport', selectedCandidatePairId: `P-${local}` }];
    expect(selectedPath(via('L1'))).toEqual({ protocol: 'udp', roundTripTimeMs: 31, availableOutgoingBitrateBps: 1_200_000 });
    expect(selectedPath(via('L2'))?.protocol).toBe('tcp');
    expect(selectedPath(via('L3'))?.protocol).toBe('tcp');
    expect(selectedPath([...candidates, pairTo('L1', 'in-progress')])).toBeUndefined();
    expect(selectedPath([])).toBeUndefined();
  });
});
