/**
 * SFU cost: one publisher (Chromium, a 720p camera in three simulcast layers, microphone)
 * and subscribers in Chromium pages (an independent WebRTC implementation). The mediasoup
 * worker's CPU time comes from /proc; forwarded packets are counted by the subscribers'
 * inbound-rtp stats (lost ones included). Measured at two subscriber counts, so that the
 * marginal cost per forwarded packet is separated from the worker's fixed per-room work.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { launchChromium, receiveSummaryScript } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { childPids, cpuTimes, startStack } from './stack.js';

const LOW = Number(process.env.BENCH_SUBSCRIBERS_LOW ?? 2);
const HIGH = Number(process.env.BENCH_SUBSCRIBERS_HIGH ?? 8);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);

/**
 * Chromium's built-in fake camera is a nearly static picture that compresses to a few packets
 * per second; a real camera's noise and motion keep the encoder at its target bitrate. A clip
 * with moving content and sensor-like noise, played as the fake camera, does the same.
 */
function cameraClip(): string {
  const file = '.tmp/bench-camera-720p.y4m';
  if (!existsSync(file)) {
    mkdirSync('.tmp', { recursive: true });
    execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t', '-t', '4', '-pix_fmt', 'yuv420p', '-y', file]);
  }
  return file;
}

const stack = await startStack({ workers: 1 });
const browser = await launchChromium([`--use-file-for-fake-video-capture=${cameraClip()}`]);
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
    const c0 = await cpuTimes(workerPid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const p1 = await packets();
    const c1 = await cpuTimes(workerPid);
    const seconds = (performance.now() - t0) / 1000;
    const lost = p1.lost - p0.lost;
    const forwarded = p1.received - p0.received + lost;
    const cpuPerS = (c1.user + c1.system - c0.user - c0.system) / seconds;
    const systemShare = (c1.system - c0.system) / Math.max(0.01, c1.user + c1.system - c0.user - c0.system);
    return { subscribers: subscribers.length, packetsPerS: forwarded / seconds, cpuPerS, systemShare, lossPercent: (lost / Math.max(1, forwarded)) * 100 };
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
    worker_kernel_share_percent: [Math.round(low.systemShare * 100), Math.round(high.systemShare * 100)],
    us_cpu_per_forwarded_packet_average: +((high.cpuPerS / high.packetsPerS) * 1e6).toFixed(2),
    us_cpu_per_forwarded_packet_marginal: +(marginal * 1e6).toFixed(2),
    loss_percent: +high.lossPercent.toFixed(2),
  }));
} finally {
  await browser.close();
  await stack.stop();
}
