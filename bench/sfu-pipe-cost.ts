/**
 * What a stream costs when the room spans two SFU nodes. One publisher (Chromium, the 720p
 * clip in three simulcast layers, and a microphone) and N GStreamer webrtcbin subscribers, all
 * subscribers on node B. One node: the publisher is on B too. Two nodes: the room's home is
 * node A (which takes one consumer, so subscribers go to B); the publisher joins A and its
 * streams reach B through a pipe. The difference of both mediasoup workers' CPU between the
 * two cases is what carrying the streams across costs: A's pipe consumers, B's pipe
 * producers, SRTP and UDP both ways. Both cases forward the same packets to the subscribers.
 */
import { Kvm } from '@nats-io/kv';
import { buckets, kvKeys } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { launchChromium } from '../test/support/browser.js';
import { demoToken } from '../test/support/tokens.js';
import { childPids, cpuTimes } from './stack.js';
import { cameraClip, externalAddress, publishCamera } from './media.js';
import { WebrtcbinSubscribers } from './webrtcbin.js';

const SUBSCRIBERS = Number(process.env.BENCH_SUBSCRIBERS ?? 20);
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 15_000);

const address = externalAddress();
// webrtcbin 1.22 keeps ICE alive with STUN indications, not consent requests (RFC 7675).
const media = { LOG_LEVEL: 'warn', SFU_LISTEN_IP: address, SFU_ANNOUNCED_ADDRESS: address, SFU_ICE_CONSENT_TIMEOUT_SECONDS: '0', SFU_ROOM_IDLE_SECONDS: '1' };
const nats = await NatsServer.start();
const nc = await nats.connect();
const placements = await new Kvm(nc).open(buckets.roomPlacement);
const nodeA = await startSfuProcess({ natsUrl: nats.url, nodeId: 'bench-a', env: { ...media, SFU_MAX_CONSUMERS: '1' } });
const nodeB = await startSfuProcess({ natsUrl: nats.url, nodeId: 'bench-b', env: media });
const signaling = await startSignalingProcess({ natsUrl: nats.url, env: { LOG_LEVEL: 'warn', SIGNALING_RATE_LIMIT_PER_SECOND: '1000', SIGNALING_RATE_LIMIT_BURST: '1000' } });
const browser = await launchChromium([`--use-file-for-fake-video-capture=${cameraClip()}`]);
const workers = await Promise.all([nodeA, nodeB].map(async (node) => (await childPids(node.pid))[0]!));
const workersCpu = async () => {
  const [a, b] = await Promise.all(workers.map(cpuTimes));
  return { a: a!.user + a!.system, b: b!.user + b!.system };
};

/** Packets the publisher sends per second over every layer and track, from its outbound-rtp stats. */
const sentPackets = (page: import('playwright-core').Page) =>
  page.evaluate(async () => {
    const { send } = await (window as any).room.getStats();
    let packets = 0;
    send?.forEach((s: { type: string; packetsSent?: number }) => {
      if (s.type === 'outbound-rtp') packets += s.packetsSent ?? 0;
    });
    return packets;
  });

async function runCase(home: 'bench-a' | 'bench-b') {
  const room = `bench-pipe-${home}-${Date.now()}`;
  await placements.create(kvKeys.room('demo', room), home);
  const publisher = await browser.newPage();
  await publishCamera(publisher, signaling.url, room);
  const subscribers = WebrtcbinSubscribers.start();
  try {
    for (let i = 0; i < SUBSCRIBERS; i++) {
      await subscribers.add(signaling.wsUrl, await demoToken({ room, identity: `sub-${i}`, role: 'agent', canPublish: false }));
    }
    // Let bandwidth estimation ramp up to the top simulcast layer.
    await new Promise((r) => setTimeout(r, 8_000));
    const [p0, s0, c0] = [await subscribers.stats(), await sentPackets(publisher), await workersCpu()];
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const [p1, s1, c1] = [await subscribers.stats(), await sentPackets(publisher), await workersCpu()];
    const seconds = (performance.now() - t0) / 1000;
    const lost = p1.lost - p0.lost;
    return {
      packetsOutPerS: (p1.received - p0.received + lost) / seconds,
      packetsInPerS: (s1 - s0) / seconds,
      cpuA: (c1.a - c0.a) / seconds,
      cpuB: (c1.b - c0.b) / seconds,
      lossPercent: (lost / Math.max(1, p1.received - p0.received + lost)) * 100,
    };
  } finally {
    subscribers.stop();
    await publisher.close();
    // Both rooms end before the next case: the idle timeout is 1 s.
    await new Promise((r) => setTimeout(r, 3_000));
  }
}

try {
  const one = await runCase('bench-b');
  const two = await runCase('bench-a');
  const extra = two.cpuA + two.cpuB - (one.cpuA + one.cpuB);
  // Streams the pipe carries: the camera (its three layers travel as one stream) and the microphone.
  const pipedStreams = 2;
  console.log(
    JSON.stringify({
      benchmark: 'sfu_pipe_cost',
      subscribers: SUBSCRIBERS,
      packets_out_per_s: [Math.round(one.packetsOutPerS), Math.round(two.packetsOutPerS)],
      piped_packets_per_s: Math.round(two.packetsInPerS),
      // Node A's worker idles in the one-node case.
      one_node_cpu_percent: { a: +(one.cpuA * 100).toFixed(2), b: +(one.cpuB * 100).toFixed(2) },
      two_nodes_cpu_percent: { a: +(two.cpuA * 100).toFixed(2), b: +(two.cpuB * 100).toFixed(2) },
      extra_cpu_percent_per_piped_stream: +((extra / pipedStreams) * 100).toFixed(2),
      extra_us_per_piped_packet: +((extra / two.packetsInPerS) * 1e6).toFixed(2),
      extra_cpu_ratio: +((two.cpuA + two.cpuB) / (one.cpuA + one.cpuB)).toFixed(3),
      loss_percent: [+one.lossPercent.toFixed(2), +two.lossPercent.toFixed(2)],
    }),
  );
} finally {
  await browser.close();
  await signaling.stop();
  await Promise.all([nodeA.stop(), nodeB.stop()]);
  await nc.close();
  await nats.stop();
}
