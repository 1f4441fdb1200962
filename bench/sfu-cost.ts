/**
 * SFU cost: one publisher (Chromium, fake 720p camera in three simulcast layers, microphone)
 * and subscribers in Chromium pages (an independent WebRTC implementation). The mediasoup
 * worker's CPU time comes from /proc; forwarded packets are counted by the subscribers'
 * inbound-rtp stats (lost ones included). Measured at two subscriber counts, so that the
 * marginal cost per forwarded packet is separated from the worker's fixed per-room work.
 */
import type { Page } from 'playwright-core';
import { launchChromium, receiveSummaryScript } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { childPids, cpuSeconds, startStack } from './stack.js';

const LOW = Number(process.env.BENCH_SUBSCRIBERS_LOW ?? 2);
const HIGH = Number(process.env.BENCH_SUBSCRIBERS_HIGH ?? 8);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);

const stack = await startStack({ workers: 1 });
const browser = await launchChromium();
try {
  const room = `bench-sfu-${Date.now()}`;
  const url = stack.signaling.url;
  const publisher = await browser.newPage();
  await publisher.goto(`${url}/end-user`);
  await publisher.evaluate(async ({ url, token }) => {
    const room = await (window as any).Gateway.connect({ url, token });
    const camera = (await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 } })).getVideoTracks()[0];
    await room.publish({ camera, microphone: true });
    (window as any).room = room;
  }, { url, token: await demoToken({ room, identity: 'publisher', role: 'end_user' }) });

  const subscribers: Page[] = [];
  const addSubscribers = async (count: number) => {
    while (subscribers.length < count) {
      const page = await browser.newPage();
      await page.goto(`${url}/end-user`);
      await page.evaluate(async ({ url, token }) => {
        (window as any).room = await (window as any).Gateway.connect({ url, token });
      }, { url, token: await demoToken({ room, identity: `sub-${subscribers.length}`, role: 'agent', canPublish: false }) });
      subscribers.push(page);
    }
    // Let bandwidth estimation ramp up to the top simulcast layer.
    await new Promise((r) => setTimeout(r, 8_000));
  };
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
  const measure = async () => {
    const p0 = await packets();
    const c0 = await cpuSeconds(workerPid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const p1 = await packets();
    const c1 = await cpuSeconds(workerPid);
    const seconds = (performance.now() - t0) / 1000;
    const lost = p1.lost - p0.lost;
    const forwarded = p1.received - p0.received + lost;
    return { subscribers: subscribers.length, packetsPerS: forwarded / seconds, cpuPerS: (c1 - c0) / seconds, lossPercent: (lost / Math.max(1, forwarded)) * 100 };
  };

  await addSubscribers(LOW);
  const low = await measure();
  await addSubscribers(HIGH);
  const high = await measure();
  const marginal = (high.cpuPerS - low.cpuPerS) / (high.packetsPerS - low.packetsPerS);
  console.log(JSON.stringify({
    benchmark: 'sfu_cost',
    subscribers: [low.subscribers, high.subscribers],
    packets_out_per_s: [Math.round(low.packetsPerS), Math.round(high.packetsPerS)],
    worker_cpu_percent: [+(low.cpuPerS * 100).toFixed(1), +(high.cpuPerS * 100).toFixed(1)],
    us_cpu_per_forwarded_packet_average: +((high.cpuPerS / high.packetsPerS) * 1e6).toFixed(2),
    us_cpu_per_forwarded_packet_marginal: +(marginal * 1e6).toFixed(2),
    loss_percent: +high.lossPercent.toFixed(2),
  }));
} finally {
  await browser.close();
  await stack.stop();
}
