/**
 * Join time: from `Gateway.connect()` to the first decoded frame of the end user's camera at
 * the agent, over 20 joins in Chromium on loopback. Prints p50 and p95.
 */
import { launchChromium } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { percentile, startStack } from './stack.js';

const JOINS = Number(process.env.BENCH_JOINS ?? 20);
const stack = await startStack();
const browser = await launchChromium();
try {
  const room = `bench-join-${Date.now()}`;
  const publisher = await browser.newPage();
  await publisher.goto(`${stack.signaling.url}/end-user`);
  await publisher.evaluate(async ({ url, token }) => {
    const room = await (window as any).Gateway.connect({ url, token });
    await room.publish({ camera: true, microphone: true });
    (window as any).room = room;
  }, { url: stack.signaling.url, token: await demoToken({ room, identity: 'publisher', role: 'end_user' }) });

  const agent = await browser.newPage();
  await agent.goto(`${stack.signaling.url}/end-user`);
  const times: number[] = [];
  for (let i = 0; i < JOINS; i++) {
    const token = await demoToken({ room, identity: `agent-${i}`, role: 'agent' });
    const ms = await agent.evaluate(async ({ url, token }) => {
      const started = performance.now();
      const room = await (window as any).Gateway.connect({ url, token });
      await new Promise<void>((resolve) => {
        room.on('track', ({ source, track }: { source: string; track: MediaStreamTrack }) => {
          if (source !== 'camera') return;
          const video = document.createElement('video');
          video.muted = true;
          video.srcObject = new MediaStream([track]);
          void video.play();
          video.requestVideoFrameCallback(() => resolve());
        });
      });
      const elapsed = performance.now() - started;
      await room.leave();
      return elapsed;
    }, { url: stack.signaling.url, token });
    times.push(ms);
  }
  console.log(JSON.stringify({
    benchmark: 'join_to_first_frame_ms',
    joins: JOINS,
    p50: Math.round(percentile(times, 50)),
    p95: Math.round(percentile(times, 95)),
    min: Math.round(Math.min(...times)),
    max: Math.round(Math.max(...times)),
  }));
} finally {
  await browser.close();
  await stack.stop();
}
