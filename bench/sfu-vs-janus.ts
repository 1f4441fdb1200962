/**
 * Gateway against Janus on the same work, in one run on one machine: the same publisher
 * (Chromium, the 720p clip with motion as its camera in three simulcast layers, and its
 * microphone) and the same subscribers (GStreamer webrtcbin receiving without decoding, AES-CM
 * SRTP with HMAC-SHA1 on both) against Gateway's SFU and against Janus 1.1.2's VideoRoom
 * (configured from bench/janus/, started and stopped here). For each server, at two subscriber
 * counts: packets forwarded per CPU-second of the media process (the mediasoup worker; the
 * janus process), the marginal CPU per forwarded packet, loss; then the ratio, and each
 * server's cost per packet as a multiple of the kernel's own (bench/udp-floor.c, same run).
 *
 * Standalone: `node --import tsx bench/sfu-vs-janus.ts` (about 3 minutes).
 */
import { createServer, type Server } from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { type ForwardingWindow, marginalSecondsPerPacket, measureForwarding } from './forwarding.js';
import { JanusSession, startJanus } from './janus.js';
import { cameraClip, externalAddress, publishCamera } from './media.js';
import { childPids, startStack } from './stack.js';
import { measureFloor } from './udp-floor.js';
import { WebrtcbinSubscribers } from './webrtcbin.js';

const LOW = Number(process.env.BENCH_SUBSCRIBERS_LOW ?? 10);
const HIGH = Number(process.env.BENCH_SUBSCRIBERS_HIGH ?? 50);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);
/** Time for each new subscriber's stream to settle (ICE, DTLS, a key frame, the top layer). */
const SETTLE_MS = 8_000;
/**
 * Time for the publisher's bandwidth estimate to reach all three layers before any subscriber
 * joins: a subscriber that joins earlier gets a lower layer, and Janus keeps it there for a while.
 */
const PUBLISHER_RAMP_MS = 12_000;
const VIDEOROOM = 'janus.plugin.videoroom';

interface Run {
  readonly mediaPid: number;
  readonly subscriberCount: () => number;
  addSubscriber(): Promise<void>;
  packets(): Promise<{ received: number; lost: number }>;
}

interface ServerResult {
  readonly windows: Array<ForwardingWindow & { subscribers: number }>;
  readonly marginalUs: number;
  readonly marginalUserUs: number;
}

async function measureServer(run: Run): Promise<ServerResult> {
  await new Promise((r) => setTimeout(r, PUBLISHER_RAMP_MS));
  const windows: ServerResult['windows'] = [];
  for (const count of [LOW, HIGH]) {
    while (run.subscriberCount() < count) await run.addSubscriber();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    windows.push({ subscribers: count, ...(await measureForwarding(run.mediaPid, () => run.packets(), WINDOW_MS)) });
  }
  const low = windows[0]!;
  const high = windows[1]!;
  return { windows, marginalUs: marginalSecondsPerPacket(low, high) * 1e6, marginalUserUs: marginalSecondsPerPacket(low, high, 'userPerS') * 1e6 };
}

/** Gateway: the stack of `make up` with one worker; subscribers join through signaling. */
async function measureGateway(browser: Browser, address: string): Promise<ServerResult> {
  // webrtcbin 1.22 keeps ICE alive with STUN indications, not consent requests (RFC 7675).
  const stack = await startStack({ workers: 1, sfuEnv: { SFU_LISTEN_IP: address, SFU_ANNOUNCED_ADDRESS: address, SFU_ICE_CONSENT_TIMEOUT_SECONDS: '0' } });
  const subscribers = WebrtcbinSubscribers.start();
  const page = await browser.newPage();
  try {
    const room = `bench-vs-janus-${Date.now()}`;
    await publishCamera(page, stack.signaling.url, room);
    const [workerPid] = await childPids(stack.sfu.pid);
    if (!workerPid) throw new Error('no mediasoup worker process found');
    return await measureServer({
      mediaPid: workerPid,
      subscriberCount: () => subscribers.clients.length,
      addSubscriber: async () => subscribers.add(stack.signaling.wsUrl, await demoToken({ room, identity: `sub-${subscribers.clients.length}`, role: 'agent', canPublish: false })),
      packets: () => subscribers.stats(),
    });
  } finally {
    await page.close();
    subscribers.stop();
    await stack.stop();
  }
}

/** A blank page on localhost: a secure context, so the page may capture the fake camera. */
async function blankPage(): Promise<{ server: Server; url: string }> {
  const server = createServer((_, response) => response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>publisher</title>'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` };
}

/**
 * The Janus publisher: the same capture and the same three layers as the SDK's camera
 * (packages/sdk/src/media/encodings.ts), on a plain RTCPeerConnection. Returns the offer, with
 * its candidates, once gathering is complete.
 */
async function publisherOffer(page: Page): Promise<string> {
  return page.evaluate(async () => {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 }, audio: true });
    const pc = new RTCPeerConnection();
    (window as any).pc = pc;
    pc.addTransceiver(media.getVideoTracks()[0]!, {
      direction: 'sendonly',
      sendEncodings: [
        { rid: 'r0', scaleResolutionDownBy: 4, maxBitrate: 150_000, maxFramerate: 15 },
        { rid: 'r1', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
        { rid: 'r2', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
      ],
    });
    pc.addTransceiver(media.getAudioTracks()[0]!, { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise<void>((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    });
    return pc.localDescription!.sdp;
  });
}

/** Janus: one VideoRoom, the publisher joined and publishing; each subscriber its own session. */
async function measureJanus(browser: Browser, address: string): Promise<ServerResult> {
  const janus = await startJanus(address);
  const subscribers = WebrtcbinSubscribers.start();
  const sessions: JanusSession[] = [];
  const page = await browser.newPage();
  const blank = await blankPage();
  try {
    const publisher = await JanusSession.open(janus.wsUrl);
    sessions.push(publisher);
    const publisherHandle = await publisher.attach(VIDEOROOM);
    const room = 1000 + Math.floor(Math.random() * 1e6);
    // No cap on the publisher's bitrate (Janus's default REMB cap would hold it below the top layer).
    await publisher.message(publisherHandle, { request: 'create', room, publishers: 1, audiocodec: 'opus', videocodec: 'vp8', bitrate: 0, fir_freq: 0 });
    const joined = await publisher.message(publisherHandle, { request: 'join', ptype: 'publisher', room, display: 'publisher' });
    const feed = joined.data.id as number;
    await page.goto(blank.url);
    const offer = await publisherOffer(page);
    // The layers are listed low to high (r0, r1, r2); Janus assumes high to low unless told.
    const published = await publisher.message(publisherHandle, { request: 'publish', audio: true, video: true }, { type: 'offer', sdp: offer, trickle: false, rid_order: 'lmh' });
    if (!published.jsep) throw new Error(`janus did not answer the publisher: ${JSON.stringify(published.data)}`);
    await page.evaluate((sdp) => (window as any).pc.setRemoteDescription({ type: 'answer', sdp }), published.jsep.sdp);

    let count = 0;
    return await measureServer({
      mediaPid: janus.pid,
      subscriberCount: () => count,
      async addSubscriber() {
        const session = await JanusSession.open(janus.wsUrl);
        sessions.push(session);
        const handle = await session.attach(VIDEOROOM);
        // The top layer (substream 2, every temporal layer), as Gateway's subscribers get once
        // bandwidth estimation has ramped up.
        const attached = await session.message(handle, { request: 'join', ptype: 'subscriber', room, streams: [{ feed, substream: 2, temporal: 2 }] });
        if (!attached.jsep) throw new Error(`janus sent the subscriber no offer: ${JSON.stringify(attached.data)}`);
        const answer = await subscribers.answerOffer(`janus-sub-${count}`, attached.jsep.sdp);
        await session.message(handle, { request: 'start' }, { type: 'answer', sdp: answer, trickle: false });
        count++;
      },
      packets: () => subscribers.stats(),
    });
  } finally {
    for (const session of sessions) session.close();
    subscribers.stop();
    await page.close();
    blank.server.close();
    await janus.stop();
  }
}

const round = (value: number, digits = 2) => +value.toFixed(digits);
const address = externalAddress();
// The floor first, on a machine with nothing else of this run on it.
const floor = measureFloor(address);
const browser = await launchChromium([`--use-file-for-fake-video-capture=${cameraClip()}`]);
try {
  const gateway = await measureGateway(browser, address);
  const janus = await measureJanus(browser, address);
  const packetsPerCpuSecond = (w: ForwardingWindow) => w.packetsPerS / w.cpuPerS;
  const summary = (result: ServerResult) => ({
    subscribers: result.windows.map((w) => w.subscribers),
    packets_out_per_s: result.windows.map((w) => Math.round(w.packetsPerS)),
    // The same at both counts when every subscriber gets the top layer and the microphone.
    packets_per_s_per_subscriber: result.windows.map((w) => Math.round(w.packetsPerS / w.subscribers)),
    cpu_percent: result.windows.map((w) => round(w.cpuPerS * 100, 1)),
    kernel_share_percent: result.windows.map((w) => Math.round(w.systemShare * 100)),
    packets_per_cpu_second: result.windows.map((w) => Math.round(packetsPerCpuSecond(w))),
    us_cpu_per_forwarded_packet_marginal: round(result.marginalUs),
    us_user_cpu_per_forwarded_packet_marginal: round(result.marginalUserUs),
    loss_percent: result.windows.map((w) => round(w.lossPercent)),
    // The marginal cost per packet over the kernel's cost of sending one, unbatched and batched.
    floor_multiple: { single: round(result.marginalUs / floor.single.send_us_per_packet, 1), batched: round(result.marginalUs / floor.batched.send_us_per_packet, 1) },
  });
  console.log(
    JSON.stringify({
      benchmark: 'sfu_vs_janus',
      gateway: summary(gateway),
      janus: summary(janus),
      // Above 1: Gateway forwards more packets per CPU-second (at the higher subscriber count) and
      // spends less per extra packet.
      ratio_packets_per_cpu_second: round(packetsPerCpuSecond(gateway.windows.at(-1)!) / packetsPerCpuSecond(janus.windows.at(-1)!)),
      ratio_marginal_cost_janus_over_gateway: round(janus.marginalUs / gateway.marginalUs),
      floor_us_per_packet: {
        send_single: floor.single.send_us_per_packet,
        send_batched: floor.batched.send_us_per_packet,
        receive_single: floor.single.receive_us_per_packet,
        receive_batched: floor.batched.receive_us_per_packet,
      },
      payload_bytes: floor.single.payload_bytes,
    }),
  );
} finally {
  await browser.close();
}
