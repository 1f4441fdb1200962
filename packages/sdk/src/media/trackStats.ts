import type { RemoteSource } from '../types.js';

/**
 * One track's figures, the same for every browser and both directions: rates and loss over
 * the time since the previous room.getTrackStats() (since the track started, the first time).
 */
export interface TrackStats {
  /** The server's id of the track (its producer): what TrackPublication.trackId says. */
  trackId: string;
  /** Whose it is (the local participant's for sent tracks). */
  participantId: string;
  source: RemoteSource;
  kind: 'audio' | 'video';
  direction: 'send' | 'receive';
  /** Media bits per second over the interval; undefined the first time (no interval yet). */
  bitrateBps: number | undefined;
  /** Packets lost since the track started (sent: as the media node reports them). */
  packetsLost: number;
  /** Fraction (0-1) of packets lost over the interval; undefined while nothing was sent or received. */
  lossRatio: number | undefined;
  jitterMs: number | undefined;
  roundTripTimeMs: number | undefined;
  /** Video: the highest layer being sent, or what is received. */
  framesPerSecond?: number;
  frameWidth?: number;
  frameHeight?: number;
}

/** What the next call needs of this one to compute rates and loss over the interval. */
export interface TrackCounters {
  atMs: number;
  bytes: number;
  packets: number;
  packetsLost: number;
}

/** A getStats() entry, as loosely as browsers fill them in. */
type Stat = { type: string; id?: string; timestamp?: number } & Record<string, unknown>;

export interface TrackStatsInput {
  trackId: string;
  participantId: string;
  source: RemoteSource;
  kind: 'audio' | 'video';
  direction: 'send' | 'receive';
  /** The RTCStatsReport of the track's sender or receiver (its entries). */
  report: Iterable<Stat>;
}

const num = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);
const sum = (stats: Stat[], key: string) => stats.reduce((total, s) => total + (num(s[key]) ?? 0), 0);
const max = (stats: Stat[], key: string): number | undefined => {
  const values = stats.map((s) => num(s[key])).filter((v): v is number => v !== undefined);
  return values.length > 0 ? Math.max(...values) : undefined;
};
const seconds = (value: number | undefined) => (value === undefined ? undefined : Math.round(value * 1000 * 10) / 10);

/**
 * Turns a sender's or receiver's getStats() report into TrackStats. Pure: `previous` is what the
 * last call returned as `counters` for the same track. Sent simulcast layers add up (bytes,
 * packets) and the highest one gives the picture's size and rate; loss of sent media comes from
 * the media node's receiver reports (remote-inbound-rtp), round trip from them or from the
 * selected ICE candidate pair.
 */
export function normaliseTrackStats(input: TrackStatsInput, previous: TrackCounters | undefined): { stats: TrackStats; counters: TrackCounters } {
  const entries = [...input.report];
  const send = input.direction === 'send';
  const rtp = entries.filter((s) => s.type === (send ? 'outbound-rtp' : 'inbound-rtp') && s.kind === input.kind);
  const remote = entries.filter((s) => s.type === 'remote-inbound-rtp' && s.kind === input.kind);
  const pair = entries.find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated === true);

  const bytes = sum(rtp, send ? 'bytesSent' : 'bytesReceived');
  const packets = sum(rtp, send ? 'packetsSent' : 'packetsReceived');
  const packetsLost = Math.max(0, send ? sum(remote, 'packetsLost') : sum(rtp, 'packetsLost'));
  const atMs = max(rtp, 'timestamp') ?? max(entries, 'timestamp') ?? 0;
  const counters: TrackCounters = { atMs, bytes, packets, packetsLost };

  let bitrateBps: number | undefined;
  let lossRatio: number | undefined;
  // A counter that went down is another sender or receiver (a rejoin): no interval to speak of.
  const comparable = previous !== undefined && atMs > previous.atMs && bytes >= previous.bytes && packets >= previous.packets;
  if (comparable) bitrateBps = Math.round(((bytes - previous.bytes) * 8 * 1000) / (atMs - previous.atMs));
  const lost = comparable ? Math.max(0, packetsLost - previous.packetsLost) : packetsLost;
  const carried = comparable ? packets - previous.packets : packets;
  // Received: lost / expected. Sent: what the node lost of what was sent, near enough (its
  // reports trail what was sent by a round trip).
  if (carried + lost > 0) lossRatio = Math.min(1, lost / (send ? Math.max(carried, lost) : carried + lost));

  const rttSeconds = max(remote, 'roundTripTime') ?? num(pair?.currentRoundTripTime);
  const jitterSeconds = send ? max(remote, 'jitter') : max(rtp, 'jitter');
  const stats: TrackStats = {
    trackId: input.trackId,
    participantId: input.participantId,
    source: input.source,
    kind: input.kind,
    direction: input.direction,
    bitrateBps,
    packetsLost,
    lossRatio,
    jitterMs: seconds(jitterSeconds),
    roundTripTimeMs: seconds(rttSeconds),
  };
  if (input.kind === 'video') {
    // The highest layer being sent (simulcast) or what is received.
    const top = [...rtp].sort((a, b) => (num(b.frameWidth) ?? 0) - (num(a.frameWidth) ?? 0))[0];
    stats.framesPerSecond = num(top?.framesPerSecond);
    stats.frameWidth = num(top?.frameWidth);
    stats.frameHeight = num(top?.frameHeight);
  }
  return { stats, counters };
}

/** The ICE path a transport uses: its protocol to the media server, round trip and bandwidth estimate. */
export interface SelectedPath {
  /** 'udp', or 'tcp' when UDP is blocked (also through a TURN relay reached over TCP or TLS). */
  protocol: 'udp' | 'tcp';
  roundTripTimeMs: number | undefined;
  /** The browser's estimate of what it can send (bits per second). */
  availableOutgoingBitrateBps: number | undefined;
}

/** The selected candidate pair of a transport's getStats() report; undefined while ICE has not connected. */
export function selectedPath(report: Iterable<Stat>): SelectedPath | undefined {
  const entries = [...report];
  const transport = entries.find((s) => s.type === 'transport' && typeof s.selectedCandidatePairId === 'string');
  const pair =
    entries.find((s) => s.type === 'candidate-pair' && s.id === transport?.selectedCandidatePairId) ??
    entries.find((s) => s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated === true);
  if (pair?.state !== 'succeeded') return undefined;
  const local = entries.find((s) => s.type === 'local-candidate' && s.id === pair.localCandidateId);
  // A relayed candidate's own protocol is UDP to the browser's side: what reaches the TURN server says.
  const relayed = typeof local?.relayProtocol === 'string' ? local.relayProtocol : undefined;
  const protocol = relayed === 'tcp' || relayed === 'tls' || local?.protocol === 'tcp' ? 'tcp' : 'udp';
  return { protocol, roundTripTimeMs: seconds(num(pair.currentRoundTripTime)), availableOutgoingBitrateBps: num(pair.availableOutgoingBitrate) };
}
