import type { types } from 'mediasoup-client';
import type { VideoLayers, VideoQuality } from '../types.js';

/**
 * The height of a video's top simulcast layer, as the SDK's camera publishes it (1280x720; the
 * layers below are a half and a quarter of it: media/encodings.ts). The receiver cannot see the
 * top layer while it receives a lower one, so this is what layer choice reckons with.
 */
export const TOP_LAYER_HEIGHT = 720;

/**
 * A layer is good enough while it is at least this share of the picture's height on screen: a
 * slightly soft picture costs far less than twice the bits of the next layer.
 */
const SHARPNESS = 0.9;

/** The layers `setVideoQuality` stands for (the SDK's camera has three; the SFU clamps to those there are). */
export const QUALITY_LAYERS: Record<VideoQuality, VideoLayers> = { low: { spatial: 0 }, medium: { spatial: 1 }, high: { spatial: 2 } };

/** How many spatial layers a consumer can be given: 1 unless it receives simulcast or SVC ("L3T3", "S3T3"). */
export function spatialLayerCount(rtpParameters: Pick<types.RtpParameters, 'encodings'>): number {
  const mode = rtpParameters.encodings?.[0]?.scalabilityMode ?? '';
  const match = /^[LS](\d+)T\d+/.exec(mode);
  return match ? Math.max(1, Number(match[1])) : 1;
}

/**
 * The smallest layer sharp enough for a picture `heightPx` device pixels tall, of `layerCount`
 * layers each half as tall as the next: a thumbnail gets the lowest, a full-screen view the top.
 */
export function layerForHeight(heightPx: number, layerCount: number, topHeight = TOP_LAYER_HEIGHT): number {
  const top = Math.max(0, layerCount - 1);
  for (let layer = 0; layer < top; layer++) {
    if (topHeight / 2 ** (top - layer) >= heightPx * SHARPNESS) return layer;
  }
  return top;
}

/**
 * The height in device pixels of a video drawn into a `width` x `height` CSS-pixel box (the
 * default object-fit, contain: a wide box shows it as tall as the box, a narrow one shorter).
 */
export function displayedHeight(width: number, height: number, aspectRatio: number, devicePixelRatio: number): number {
  if (width <= 0 || height <= 0) return 0;
  return Math.min(height, width / aspectRatio) * devicePixelRatio;
}
