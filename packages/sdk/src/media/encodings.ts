import type { types } from 'mediasoup-client';
import type { RemoteSource } from '../types.js';

/** The kind of track each source publishes. */
export const kindOf: Record<RemoteSource, 'audio' | 'video'> = { camera: 'video', microphone: 'audio', screen: 'video', screen_audio: 'audio' };

/**
 * Three camera layers, so the SFU can give each receiver what its link and window allow. The
 * bitrates are those of a 1280x720 camera at 30 fps: 320x180, 640x360, 1280x720.
 */
const CAMERA_SIMULCAST: types.RtpEncodingParameters[] = [
  { rid: 'r0', scaleResolutionDownBy: 4, maxBitrate: 150_000, maxFramerate: 15 },
  { rid: 'r1', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'r2', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
/** Below this short side, the lower layers would be too small to be worth their bandwidth. */
const SIMULCAST_MIN_SHORT_SIDE = 360;

export function producerOptions(source: RemoteSource, track: MediaStreamTrack): Pick<types.ProducerOptions, 'encodings' | 'codecOptions'> {
  switch (source) {
    case 'camera': {
      const { width = 0, height = 0 } = track.getSettings();
      const simulcast = Math.min(width, height) >= SIMULCAST_MIN_SHORT_SIDE;
      return {
        encodings: simulcast ? CAMERA_SIMULCAST.map((e) => ({ ...e })) : [{ maxBitrate: 500_000 }],
        codecOptions: { videoGoogleStartBitrate: 1000 },
      };
    }
    case 'screen':
      // Text must stay readable: Chrome keeps the resolution and drops frames under pressure.
      track.contentHint = 'detail';
      return { encodings: [{ maxBitrate: 2_500_000 }], codecOptions: { videoGoogleStartBitrate: 1000 } };
    case 'microphone':
      return { codecOptions: { opusFec: true, opusDtx: true } };
    case 'screen_audio':
      // A video's or a tab's sound: stereo, and no silence suppression (music has quiet passages).
      return { codecOptions: { opusStereo: true, opusFec: true, opusDtx: false, opusMaxAverageBitrate: 96_000 } };
  }
}
