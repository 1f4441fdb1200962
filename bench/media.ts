import { networkInterfaces } from 'node:os';
import type { Page } from 'playwright-core';
import { generatedClip } from '../test/support/media.js';
import { demoToken } from '../test/support/tokens.js';

/**
 * Chromium's built-in fake camera is a nearly static picture that compresses to a few packets
 * per second; a real camera's noise and motion keep the encoder at its target bitrate. A clip
 * with moving content and sensor-like noise, played as the fake camera, does the same.
 */
export const cameraClip = () => generatedClip('bench-camera-720p.y4m', ['-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t', '-t', '4', '-pix_fmt', 'yuv420p']);

/**
 * webrtcbin's ICE agent (libnice) leaves loopback addresses out, so the SFU listens on and
 * announces the machine's first external IPv4 address; Chromium reaches it as well.
 */
export function externalAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('webrtcbin subscribers need a non-loopback IPv4 address');
}

/** A Chromium page that publishes the 720p clip as its camera (3 simulcast layers) and its microphone. */
export async function publishCamera(page: Page, url: string, room: string): Promise<void> {
  await page.goto(`${url}/end-user`);
  await page.evaluate(
    async ({ url, token }) => {
      const room = await (window as any).Gateway.connect({ url, token });
      const camera = (await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 } })).getVideoTracks()[0];
      await room.publish({ camera, microphone: true });
      (window as any).room = room;
    },
    { url, token: await demoToken({ room, identity: 'publisher', role: 'end_user' }) },
  );
}
