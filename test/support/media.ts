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
