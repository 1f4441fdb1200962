import { ErrorCode, GatewayError } from '../errors.js';
import type { CaptureOptions } from '../types.js';

/** Captures camera and microphone in one getUserMedia call, so the browser asks only once. */
export async function captureUserMedia(
  want: { camera: boolean; microphone: boolean },
  options: { camera?: CaptureOptions; microphone?: CaptureOptions } = {},
): Promise<{ camera?: MediaStreamTrack; microphone?: MediaStreamTrack }> {
  const devices = mediaDevices();
  const camera = options.camera ?? {};
  const microphone = options.microphone ?? {};
  const device = (deviceId: string | undefined) => (deviceId ? { deviceId: { exact: deviceId } } : {});
  // A facing mode asked for is required (the end user turns to the rear camera: the front one
  // will not do); a device id wins over it.
  const facing = camera.facingMode && !camera.deviceId ? { facingMode: { exact: camera.facingMode } } : {};
  try {
    const stream = await devices.getUserMedia({
      video: want.camera
        ? { width: { ideal: camera.width ?? 1280 }, height: { ideal: camera.height ?? 720 }, frameRate: { ideal: camera.frameRate ?? 30 }, ...device(camera.deviceId), ...facing }
        : false,
      audio: want.microphone ? { echoCancellation: true, noiseSuppression: true, autoGainControl: true, ...device(microphone.deviceId) } : false,
    });
    return { camera: stream.getVideoTracks()[0], microphone: stream.getAudioTracks()[0] };
  } catch (error) {
    throw captureError(error, want.camera && want.microphone ? 'camera and microphone' : want.camera ? 'camera' : 'microphone');
  }
}

/**
 * The screen (or a window or tab) the user picks, and its sound when `audio` asks for it and the
 * browser offers it (Chrome shares a tab's sound, and the whole system's on Windows and ChromeOS;
 * the user may untick it): `audio` is then undefined.
 */
export async function captureScreen(options: CaptureOptions = {}): Promise<{ video: MediaStreamTrack; audio?: MediaStreamTrack }> {
  const devices = mediaDevices();
  if (!devices.getDisplayMedia) throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot share the screen');
  try {
    const stream = await devices.getDisplayMedia({ video: { frameRate: { ideal: options.frameRate ?? 15, max: 30 } }, audio: options.audio ?? false });
    const audio = stream.getAudioTracks()[0];
    return { video: stream.getVideoTracks()[0]!, ...(audio ? { audio } : {}) };
  } catch (error) {
    throw captureError(error, 'screen');
  }
}

export function mediaDevices(): MediaDevices {
  const devices = (globalThis as { navigator?: Navigator }).navigator?.mediaDevices;
  // Browsers hide mediaDevices outside secure contexts (plain http on anything but localhost).
  if (!devices) throw new GatewayError(ErrorCode.UNSUPPORTED, 'capturing media needs a secure context (https or localhost)');
  return devices;
}

/** A capture's DOMException as the SDK's device error kinds (errors.ts). */
export function captureError(error: unknown, what: string): GatewayError {
  if (error instanceof GatewayError) return error;
  const name = (error as { name?: string } | undefined)?.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') return new GatewayError(ErrorCode.DEVICE_PERMISSION_DENIED, `access to the ${what} was denied`, { cause: error });
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return new GatewayError(ErrorCode.DEVICE_NOT_FOUND, `no ${what} found`, { cause: error });
  if (name === 'NotReadableError' || name === 'AbortError') return new GatewayError(ErrorCode.DEVICE_IN_USE, `the ${what} could not be opened (in use by another application?)`, { cause: error });
  return GatewayError.from(error, ErrorCode.UNAVAILABLE);
}

/** How long a video track may take to show its first frame for a still. */
const FRAME_TIMEOUT_MS = 5_000;

/**
 * One frame of a live video track as a PNG: the track plays (muted, off-screen) in a <video>
 * element until it has a frame, which is drawn onto a canvas of the track's size. The track
 * itself is left as it was.
 */
export async function captureFrame(track: MediaStreamTrack): Promise<Blob> {
  if (track.kind !== 'video' || track.readyState !== 'live') throw new GatewayError(ErrorCode.BAD_REQUEST, 'a still needs a live video track');
  const doc = (globalThis as { document?: Document }).document;
  if (!doc) throw new GatewayError(ErrorCode.UNSUPPORTED, 'capturing a still needs a browser');
  const video = doc.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = new MediaStream([track]);
  try {
    await video.play().catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + FRAME_TIMEOUT_MS;
      const check = () => {
        if (video.videoWidth > 0 && video.readyState >= 2) return resolve();
        if (Date.now() > deadline) return reject(new GatewayError(ErrorCode.TIMEOUT, 'the video track showed no frame'));
        setTimeout(check, 20);
      };
      check();
    });
    const canvas = doc.createElement('canvas');
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    const context = canvas.getContext('2d');
    if (!context) throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot draw on a canvas');
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    return await canvasToPng(canvas);
  } finally {
    video.pause();
    video.srcObject = null;
  }
}

/** What a canvas shows, as a PNG. */
export function canvasToPng(canvas: HTMLCanvasElement): Promise<Blob> {
  return new Promise((resolve, reject) => {
    try {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new GatewayError(ErrorCode.UNAVAILABLE, 'the canvas could not be encoded as PNG'))), 'image/png');
    } catch (error) {
      // A canvas holding pixels of another origin may not be read.
      reject(new GatewayError(ErrorCode.PERMISSION_DENIED, 'the canvas may not be read (it shows content of another origin)', { cause: error }));
    }
  });
}
