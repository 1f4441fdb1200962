/**
 * SFU cost: one publisher (Chromium, a 720p camera in three simulcast layers, microphone)
 * and subscribers run by an independent WebRTC implementation: GStreamer's webrtcbin by
 * default (receives without decoding, so tens of thousands of packets per second fit on a
 * small machine), or Chromium pages with BENCH_SUBSCRIBER=chromium. The mediasoup worker's
 * CPU time comes from /proc; forwarded packets are counted by the subscribers' inbound-rtp
 * stats (lost ones included). Measured at two subscriber counts, so that the marginal cost
 * per forwarded packet is separated from the worker's fixed per-room work.
 */
import type { Browser, Page } from 'playwright-core';
import { launchChromium, receiveSummaryScript } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { marginalSecondsPerPacket, measureForwarding } from './forwarding.js';
import { childPids, startStack } from './stack.js';
import { cameraClip, externalAddress, publishCamera } from './media.js';
import { WebrtcbinSubscribers } from './webrtcbin.js';

const SUBSCRIBER = process.env.BENCH_SUBSCRIBER === 'chromium' ? 'chromium' : 'webrtcbin';
const LOW = Number(process.env.BENCH_SUBSCRIBERS_LOW ?? (SUBSCRIBER === 'chromium' ? 2 : 10));
const HIGH = Number(process.env.BENCH_SUBSCRIBERS_HIGH ?? (SUBSCRIBER === 'chromium' ? 10 : 50));
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);

interface Subscribers {
  readonly count: number;
  add(token: string): Promise<void>;
  packets(): Promise<{ received: number; lost: number }>;
  close(): Promise<void>;
}

function chromiumSubscribers(browser: Browser, url: string): Subscribers & { pages: Page[] } {
  const pages: Page[] = [];
  return {
    pages,
    get count() {
      return pages.length;
    },
    async add(token) {
      const page = await browser.newPage();
      await page.goto(`${url}/end-user`);
      await page.evaluate(
        async ({ url, token }) => {
          (window as any).room = await (window as any).Gateway.connect({ url, token });
        },
        { url, token },
      );
      pages.push(page);
    },
    async packets() {
      let received = 0;
      let lost = 0;
      for (const page of pages) {
        for (const r of await page.evaluate(receiveSummaryScript)) {
          received += r.packetsReceived;
          lost += r.packetsLost;
        }
      }
      return { received, lost };
    },
    async close() {},
  };
}

function webrtcbinSubscribers(wsUrl: string): Subscribers {
  const subscribers = WebrtcbinSubscribers.start();
  return {
    get count() {
      return subscribers.clients.length;
    },
    add: (token) => subscribers.add(wsUrl, token),
    packets: () => subscribers.stats(),
    async close() {
      subscribers.stop();
    },
  };
}

const address = SUBSCRIBER === 'webrtcbin' ? externalAddress() : '127.0.0.1';
// webrtcbin 1.22 keeps ICE alive with STUN indications, not the consent requests (RFC 7675)
// browsers send, so consent expiry is turned off for it.
const consent: Record<string, string> = SUBSCRIBER === 'webrtcbin' ? { SFU_ICE_CONSENT_TIMEOUT_SECONDS: '0' } : {};
const stack = await startStack({ workers: 1, sfuEnv: { SFU_LISTEN_IP: address, SFU_ANNOUNCED_ADDRESS: address, ...consent } });
const browser = await launchChromium([`--use-file-for-fake-video-capture=${cameraClip()}`]);
const url = stack.signaling.url;
const subscribers = SUBSCRIBER === 'chromium' ? chromiumSubscribers(browser, url) : webrtcbinSubscribers(stack.signaling.wsUrl);
try {
  const room = `bench-sfu-${Date.now()}`;
  await publishCamera(await browser.newPage(), url, room);

  const addSubscribers = async (count: number) => {
    while (subscribers.count < count) {
      await subscribers.add(await demoToken({ room, identity: `sub-${subscribers.count}`, role: 'agent', canPublish: false }));
    }
    // Let bandwidth estimation ramp up to the top simulcast layer.
    await new Promise((r) => setTimeout(r, 8_000));
  };
  const [workerPid] = await childPids(stack.sfu.pid);
  if (!workerPid) throw new Error('no mediasoup worker process found');
  const measure = async () => ({ subscribers: subscribers.count, ...(await measureForwarding(workerPid, () => subscribers.packets(), WINDOW_MS)) });

  await addSubscribers(LOW);
  // The SRTP profile DTLS agreed on decides much of the per-packet crypto cost. Chromium
  // reports it; webrtcbin (GStreamer 1.22) offers only AES-CM with HMAC-SHA1.
  const srtpCipher =
    'pages' in subscribers
      ? await (subscribers as ReturnType<typeof chromiumSubscribers>).pages[0]!.evaluate(async () => {
          const [first] = await (window as any).room.getReceiveStats();
          let cipher = 'unknown';
          first?.stats.forEach((s: { type: string; srtpCipher?: string }) => {
            if (s.type === 'transport' && s.srtpCipher) cipher = s.srtpCipher;
          });
          return cipher;
        })
      : 'AES_CM_128_HMAC_SHA1_80';
  const low = await measure();
  await addSubscribers(HIGH);
  const high = await measure();
  const marginal = marginalSecondsPerPacket(low, high);
  console.log(
    JSON.stringify({
      benchmark: 'sfu_cost',
      subscriber: SUBSCRIBER,
      subscribers: [low.subscribers, high.subscribers],
      packets_out_per_s: [Math.round(low.packetsPerS), Math.round(high.packetsPerS)],
      worker_cpu_percent: [+(low.cpuPerS * 100).toFixed(1), +(high.cpuPerS * 100).toFixed(1)],
      worker_kernel_share_percent: [Math.round(low.systemShare * 100), Math.round(high.systemShare * 100)],
      us_cpu_per_forwarded_packet_average: +((high.cpuPerS / high.packetsPerS) * 1e6).toFixed(2),
      us_cpu_per_forwarded_packet_marginal: +(marginal * 1e6).toFixed(2),
      // On one machine the kernel delivers each packet into the receiver's socket and wakes the
      // receiver in the sender's context; the user-space share is the SFU's own work.
      us_user_cpu_per_forwarded_packet_marginal: +(marginalSecondsPerPacket(low, high, 'userPerS') * 1e6).toFixed(2),
      loss_percent: +high.lossPercent.toFixed(2),
      srtp_cipher: srtpCipher,
    }),
  );
} finally {
  await subscribers.close();
  await browser.close();
  await stack.stop();
}
