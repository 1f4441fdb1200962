/**
 * Join time: from `Gateway.connect()` to the first decoded frame of the end user's camera at
 * the agent, over 20 joins in Chromium on loopback. Prints p50 and p95 for two series:
 * - `spaced`: each agent joins a second after the previous one left, as separate calls do;
 * - `back_to_back`: the next agent joins the moment the previous one left. The publisher's
 *   encoder grants at most one key frame per 300 ms (libwebrtc), so a join that follows a key
 *   frame request that closely waits for the next allowed one.
 */
import { launchChromium } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { percentile, startStack } from './stack.js';

const JOINS = Number(process.env.BENCH_JOINS ?? 20);
const GAP_MS = 1_000;
const stack = await startStack();
const browser = await launchChromium();
try {
  const room = `bench-join-${Date.now()}`;
  const publisher = await browser.newPage();
  await publisher.goto(`${stack.signaling.url}/end-user`);
  await publisher.evaluate(
    async ({ url, token }) => {
      const room = await (window as any).Gateway.connect({ url, token });
      await room.publish({ camera: true, microphone: true });
      (window as any).room = room;
    },
    { url: stack.signaling.url, token: await demoToken({ room, identity: 'publisher', role: 'end_user' }) },
  );

  const agent = await browser.newPage();
  await agent.goto(`${stack.signaling.url}/end-user`);
  const series = { spaced: [] as number[], back_to_back: [] as number[] };
  for (let i = 0; i < JOINS * 2; i++) {
    const times = i < JOINS ? series.spaced : series.back_to_back;
    if (times === series.spaced) await new Promise((r) => setTimeout(r, GAP_MS));
    const token = await demoToken({ room, identity: `agent-${i}`, role: 'agent' });
    const ms = await agent.evaluate(
      async ({ url, token }) => {
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
      },
      { url: stack.signaling.url, token },
    );
    times.push(ms);
  }
  for (const [name, times] of Object.entries(series)) {
    console.log(
      JSON.stringify({
        benchmark: `join_to_first_frame_ms_${name}`,
        joins: times.length,
        p50: Math.round(percentile(times, 50)),
        p95: Math.round(percentile(times, 95)),
        min: Math.round(Math.min(...times)),
        max: Math.round(Math.max(...times)),
      }),
    );
  }
} finally {
  await browser.close();
  await stack.stop();
}
