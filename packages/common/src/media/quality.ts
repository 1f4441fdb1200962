/**
 * Connection quality levels and how they are judged: the one place for the thresholds, used by
 * the SFU (from mediasoup's stream scores and its transports' figures) and by the SDK's
 * pre-call check (from the browser's sender statistics). Browser-safe: it imports nothing, so
 * the SDK bundle can take it alone.
 */

/** How well a participant's media gets through; 'unknown' until there is media to judge. */
export type ConnectionQuality = 'excellent' | 'good' | 'poor' | 'lost' | 'unknown';

export const CONNECTION_QUALITIES: readonly ConnectionQuality[] = ['excellent', 'good', 'poor', 'lost', 'unknown'];

/** Worst first; 'unknown' is left out: it never makes a known level worse. */
const rank: Record<Exclude<ConnectionQuality, 'unknown'>, number> = { lost: 0, poor: 1, good: 2, excellent: 3 };

export function isConnectionQuality(value: unknown): value is ConnectionQuality {
  return typeof value === 'string' && (CONNECTION_QUALITIES as readonly string[]).includes(value);
}

/** The worse of two levels; 'unknown' only when both are. */
export function worseQuality(a: ConnectionQuality, b: ConnectionQuality): ConnectionQuality {
  if (a === 'unknown') return b;
  if (b === 'unknown') return a;
  return rank[a] <= rank[b] ? a : b;
}

/**
 * What one side of a participant's connection shows. `scores` are mediasoup's 0-10 stream
 * scores (10: nothing lost), one per stream that should be flowing (paused ones left out);
 * `lossRatio` (0-1) stands in for scores where there are none (the browser's own figures).
 */
export interface QualityInputs {
  /** False while the transport's ICE is disconnected or failed: nothing gets through. */
  connected: boolean;
  scores?: readonly number[];
  lossRatio?: number;
  /** Round trip time of the path, when known. */
  rttMs?: number;
  /** The bandwidth estimate of the path (bits per second), when known. */
  availableBitrateBps?: number;
  /** Whether video is among the streams: it needs more bandwidth than voice. */
  video?: boolean;
}

/**
 * mediasoup's score falls with the share of packets lost (roughly 10 x delivered^4, averaged
 * over recent reports): 9-10 is under about 2 % lost, 6-8 under about 10 %, 1-5 loss that
 * people hear and see, 0 nothing arriving.
 */
export function qualityOfScore(score: number): ConnectionQuality {
  if (!Number.isFinite(score)) return 'unknown';
  if (score >= 9) return 'excellent';
  if (score >= 6) return 'good';
  if (score >= 1) return 'poor';
  return 'lost';
}

/** The same bands as qualityOfScore, for a measured fraction of packets lost. */
export function qualityOfLoss(lossRatio: number): ConnectionQuality {
  if (!Number.isFinite(lossRatio) || lossRatio < 0) return 'unknown';
  if (lossRatio <= 0.02) return 'excellent';
  if (lossRatio <= 0.1) return 'good';
  if (lossRatio < 0.9) return 'poor';
  return 'lost';
}

/** A long round trip makes conversation awkward whatever gets through: it caps the level. */
function qualityOfRtt(rttMs: number): ConnectionQuality {
  if (rttMs > 700) return 'poor';
  if (rttMs > 300) return 'good';
  return 'excellent';
}

/** Too little bandwidth for video (or, far lower, for voice) caps the level too. */
function qualityOfBandwidth(bps: number, video: boolean): ConnectionQuality {
  const [poorBelow, goodBelow] = video ? [150_000, 400_000] : [30_000, 60_000];
  if (bps < poorBelow) return 'poor';
  if (bps < goodBelow) return 'good';
  return 'excellent';
}

/**
 * The level of one side of a connection: the worst stream decides (one frozen picture is what
 * people notice), then the round trip and the bandwidth estimate may only lower it. Nothing to
 * judge (no stream, no loss figure) is 'unknown'; a disconnected transport is 'lost'.
 */
export function judgeQuality(inputs: QualityInputs): ConnectionQuality {
  if (!inputs.connected) return 'lost';
  let level: ConnectionQuality = 'unknown';
  if (inputs.scores && inputs.scores.length > 0) level = qualityOfScore(Math.min(...inputs.scores));
  else if (inputs.lossRatio !== undefined) level = qualityOfLoss(inputs.lossRatio);
  if (level === 'unknown' || level === 'lost') return level;
  if (inputs.rttMs !== undefined && Number.isFinite(inputs.rttMs)) level = worseQuality(level, qualityOfRtt(inputs.rttMs));
  if (inputs.availableBitrateBps !== undefined && Number.isFinite(inputs.availableBitrateBps)) {
    level = worseQuality(level, qualityOfBandwidth(inputs.availableBitrateBps, inputs.video ?? false));
  }
  return level;
}
