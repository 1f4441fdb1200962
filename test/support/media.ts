import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

/** A media file made once with ffmpeg under .tmp/ (git-ignored), for Chromium's fake devices. */
export function generatedClip(name: string, ffmpegInput: string[]): string {
  const file = path.resolve('.tmp', name);
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true });
    execFileSync('ffmpeg', ['-loglevel', 'error', ...ffmpegInput, '-y', file]);
  }
  return file;
}

/**
 * A steady tone, loud enough to count as speech for the SFU's audio levels: Chromium's built-in
 * fake microphone only beeps once a second.
 */
export const voiceClip = () => generatedClip('voice-300hz.wav', ['-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=48000:duration=6', '-af', 'volume=0.8']);

/**
 * A voice-like sound: a harmonic tone whose pitch glides (140 Hz, ±40 Hz, 0.7 Hz) under a syllable
 * envelope (4 Hz). Chromium's noise suppression takes a steady tone for noise within about two
 * seconds and the Opus encoder then goes silent (DTX, a packet every 400 ms); this keeps the
 * microphone sending 50 packets a second as speech does, which is what loss is measured on.
 */
export const speechClip = () => {
  // Phase of a 140 Hz pitch gliding ±40 Hz at 0.7 Hz (the integral of its frequency).
  const phase = '(2*PI*140*t-57.14*cos(4.398*t))';
  const harmonics = [1, 0.6, 0.4, 0.25].map((amplitude, i) => `${amplitude}*sin(${i + 1}*${phase})`).join('+');
  return generatedClip('speech-like.wav', ['-f', 'lavfi', '-i', `aevalsrc='0.3*(0.55+0.45*sin(2*PI*4*t))*(${harmonics})':s=48000:d=6`]);
};

/**
 * A 960x540 camera with detail and motion (ffmpeg's testsrc2) at 15 frames per second, for
 * Chromium's fake camera: the smallest size Chromium sends in three simulcast layers (at 640x360
 * it drops the top one), and cheaper to encode on a busy machine than 1280x720 at 30.
 */
export const cameraClip = () => generatedClip('camera-960x540-15fps.y4m', ['-f', 'lavfi', '-i', 'testsrc2=size=960x540:rate=15:duration=2', '-pix_fmt', 'yuv420p']);
