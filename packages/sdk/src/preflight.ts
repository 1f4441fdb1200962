import { judgeQuality } from '@gateway/common/quality';
import { ErrorCode, GatewayError } from './errors.js';
import { selectedPath, type SelectedPath } from './media/trackStats.js';
import { Room } from './Room.js';
import type { ConnectionOptions } from './signaling/SignalingClient.js';
import type { ConnectionQuality } from './types.js';

/** How Gateway.preflight() checks the network. */
export interface PreflightOptions extends Pick<ConnectionOptions, 'url' | 'token' | 'WebSocket' | 'connectTimeoutMs' | 'requestTimeoutMs'> {
  /**
   * A join token minted with `preflight: true` (POST /v1/tokens, or `--preflight` on the CLI):
   * it joins a room of its own whatever room it names, and makes no contact record.
   */
  token: string;
  /** How long the test track is sent, in ms; 5000 by default (at least 1000). */
  durationMs?: number;
  /** How long ICE may take to connect, in ms; 10000 by default. */
  iceTimeoutMs?: number;
}

/** What Gateway.preflight() found. */
export interface PreflightResult {
  /** Whether signaling answered and took the token. */
  signaling: 'ok' | 'failed';
  media: {
    /** Whether ICE connected to the media server. */
    connected: boolean;
    /** How: 'udp', or 'tcp' when UDP is blocked; undefined when not connected. */
    protocol: 'udp' | 'tcp' | undefined;
    rttMs: number | undefined;
    /** What the test track actually sent, on average (kilobits per second). */
    upstreamKbps: number | undefined;
    /** The browser's bandwidth estimate towards the media server at the end (kilobits per second). */
    availableUpstreamKbps: number | undefined;
    /** Fraction (0-1) of the test track's packets the media server reported lost. */
    lossRatio: number | undefined;
  };
  /** The level a call over this network would likely show; 'lost' when media cannot get through. */
  quality: ConnectionQuality;
  /** What failed, when something did (a GatewayError's code and message). */
  error?: { code: string; message: string };
}

const noMedia: PreflightResult['media'] = { connected: false, protocol: undefined, rttMs: undefined, upstreamKbps: undefined, availableUpstreamKbps: undefined, lossRatio: undefined };

/**
 * A pre-call check: can this browser reach signaling and the media server, over UDP or only
 * TCP, with what round trip, and how much can it send. It joins with a pre-call check token (a
 * room of its own: nobody sees it, no contact record), publishes a generated test picture (no
 * camera or microphone permission is asked) for `durationMs`, reads the sender's statistics,
 * and always leaves. Downstream is not measured (a check receives nothing). Never rejects:
 * failures are in the result.
 */
export async function preflight(options: PreflightOptions): Promise<PreflightResult> {
  const durationMs = Math.max(1_000, options.durationMs ?? 5_000);
  let room: Room;
  try {
    room = await Room.connect({ ...options, leaveOnPageHide: true });
  } catch (error) {
    return { signaling: 'failed', media: noMedia, quality: 'lost', error: errorOf(error) };
  }
  const picture = testPicture();
  try {
    await room.publish({ camera: picture.track });
    const path = await waitForPath(room, options.iceTimeoutMs ?? 10_000);
    if (!path) return { signaling: 'ok', media: noMedia, quality: 'lost', error: { code: ErrorCode.MEDIA_UNREACHABLE, message: 'the media server could not be reached' } };
    // Rates and loss over the sending time: between a first and a last reading.
    await room.getTrackStats();
    await sleep(durationMs);
    const sent = (await room.getTrackStats()).find((t) => t.direction === 'send' && t.kind === 'video');
    const last = (await currentPath(room)) ?? path;
    const media: PreflightResult['media'] = {
      connected: true,
      protocol: last.protocol,
      rttMs: last.roundTripTimeMs ?? sent?.roundTripTimeMs,
      upstreamKbps: kbps(sent?.bitrateBps),
      availableUpstreamKbps: kbps(last.availableOutgoingBitrateBps),
      lossRatio: sent?.lossRatio,
    };
    const quality = judgeQuality({ connected: true, lossRatio: media.lossRatio ?? 0, rttMs: media.rttMs, availableBitrateBps: last.availableOutgoingBitrateBps, video: true });
    return { signaling: 'ok', media, quality };
  } catch (error) {
    return { signaling: 'ok', media: noMedia, quality: 'lost', error: errorOf(error) };
  } finally {
    // Whatever happened: nothing of the check stays on the server, nor the test picture here.
    await room.leave().catch(() => undefined);
    picture.stop();
  }
}

async function currentPath(room: Room): Promise<SelectedPath | undefined> {
  const { send } = await room.getStats();
  return send ? selectedPath(send.values()) : undefined;
}

async function waitForPath(room: Room, timeoutMs: number): Promise<SelectedPath | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const path = await currentPath(room);
    if (path) return path;
    await sleep(200);
  }
  return undefined;
}

/** A moving picture of noise from a canvas: the encoder has something to spend bits on. */
function testPicture(): { track: MediaStreamTrack; stop(): void } {
  const canvas = document.createElement('canvas');
  canvas.width = 640;
  canvas.height = 360;
  const context = canvas.getContext('2d');
  const track = canvas.captureStream(15).getVideoTracks()[0];
  if (!context || !track) throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot make a test picture (canvas capture)');
  const image = context.createImageData(160, 90);
  const draw = () => {
    for (let i = 0; i < image.data.length; i += 4) {
      const v = Math.random() * 255;
      image.data[i] = image.data[i + 1] = image.data[i + 2] = v;
      image.data[i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
    context.drawImage(canvas, 0, 0, 160, 90, 0, 0, 640, 360);
  };
  const timer = setInterval(draw, 1000 / 15);
  draw();
  return {
    track,
    stop: () => {
      clearInterval(timer);
      track.stop();
    },
  };
}

const kbps = (bps: number | undefined) => (bps === undefined ? undefined : Math.round(bps / 1000));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const errorOf = (error: unknown) => {
  const { code, message } = GatewayError.from(error);
  return { code, message };
};
