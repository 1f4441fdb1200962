/**
 * SFU cost: one publisher (Chromium, fake camera with simulcast + microphone) and N
 * subscribers (Chromium pages, an independent WebRTC implementation). Over a measuring window,
 * the mediasoup worker's CPU time (from /proc) is divided by the packets it forwarded
 * (counted by the subscribers' inbound-rtp stats, lost ones included). Prints µs of SFU CPU
 * per forwarded packet, packets/s out of the worker, and loss.
 */
import type { Page } from 'playwright-core';
import { launchChromium, receiveSummaryScript } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { childPids, cpuSeconds, startStack } from './stack.js';

const SUBSCRIBERS = Number(process.env.BENCH_SUBSCRIBERS ?? 6);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);

const stack = await startStack({ workers: 1 });
const browser = await launchChromium();
try {
  const room = `bench-sfu-${Date.now()}`;
  const url = stack.signaling.url;
  const publisher = await browser.newPage();
  await publisher.goto(`${url}/`);
  await publisher.evaluate(async ({ url, token }) => {
    const room = await (window as any).Gateway.connect({ url, token });
    await room.publish({ camera: true, microphone: true });
    (window as any).room = room;
  }, { url, token: await demoToken({ room, identity: 'publisher', role: 'end_user' }) });

  const subscribers: Page[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const page = await browser.newPage();
    await page.goto(`${url}/`);
    await page.evaluate(async ({ url, token }) => {
      const room = await (window as any).Gateway.connect({ url, token });
      (window as any).room = room;
    }, { url, token: await demoToken({ room, identity: `sub-${i}`, role: 'agent', canPublish: false }) });
    subscribers.push(page);
  }
  // Let bandwidth estimation ramp up to the full simulcast layer.
  await new Promise((r) => setTimeout(r, 8_000));

  const [workerPid] = await childPids(stack.sfu.pid);
  if (!workerPid) throw new Error('no mediasoup worker process found');
  const packets = async () => {
    let received = 0;
    let lost = 0;
    for (const page of subscribers) {
      for (const r of await page.evaluate(receiveSummaryScript)) {
        received += r.packetsReceived;
        lost += r.packetsLost;
      }
    }
    return { received, lost };
  };
  const p0 = await packets();
  const c0 = await cpuSeconds(workerPid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  const p1 = await packets();
  const c1 = await cpuSeconds(workerPid);
  const seconds = (performance.now() - t0) / 1000;
  const forwarded = p1.received - p0.received + (p1.lost - p0.lost);
  const cpu = c1 - c0;
  console.log(JSON.stringify({
    benchmark: 'sfu_cost',
    subscribers: SUBSCRIBERS,
    window_s: +seconds.toFixed(1),
    packets_out_per_s: Math.round(forwarded / seconds),
    worker_cpu_percent: +((cpu / seconds) * 100).toFixed(1),
    us_cpu_per_forwarded_packet: +((cpu / forwarded) * 1e6).toFixed(2),
    loss_percent: +(((p1.lost - p0.lost) / Math.max(1, forwarded)) * 100).toFixed(2),
  }));
} finally {
  await browser.close();
  await stack.stop();
}
