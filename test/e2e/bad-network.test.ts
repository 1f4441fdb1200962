import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, allStarted, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { CallPages } from '../support/browser.js';
import { cameraClip, speechClip } from '../support/media.js';
import { NetworkNamespace, removeLeftoverNamespaces, shapedNetworkUnavailable } from '../support/netns.js';
import { skipForMissing } from '../support/prerequisites.js';
import { demoToken } from '../support/tokens.js';

/**
 * A call on bad networks, in Chromium: the end user (publishing a simulcast camera and a steady
 * voice) and the agent each run in a network namespace of their own whose link to the host we
 * shape (test/support/netns.ts); nats-server, the SFU and signaling run on the host, on the
 * host's end of the end user's link, which the agent's namespace reaches too.
 *
 * What the agent receives is sampled in its page every 100 ms (inbound-rtp of the end user's
 * camera and microphone): video stalls are spans without a newly decoded frame; audio gaps are
 * spans where everything played was concealment (concealedSamples grew as much as
 * totalSamplesReceived). Chromium's insertedSamplesForDeceleration is time-stretching of real
 * audio, not a gap, so it is not counted. The microphone plays a voice-like sound, not a steady
 * tone: Chromium's noise suppression removes a tone within seconds and the encoder then sends a
 * packet every 400 ms (DTX), so one lost packet made 400 ms of concealed silence.
 */
/**
 * BAD_NETWORK_STRICT=1 asserts the aim where the bound is loose for a busy machine: a freeze
 * while switching down under 1 s.
 */
const STRICT = process.env.BAD_NETWORK_STRICT === '1';
/**
 * The longest a picture may hold. A call on a quiet machine stays under one second (the aim);
 * on a shared two-core machine the browsers' decoders starve now and then, so the bound is
 * loose: what is asserted is that video keeps coming, not how smoothly.
 */
const FREEZE_LIMIT_MS = 3_000;
/** A narrowed downlink gets a lower layer within this long (the aim and the bound). */
const SWITCH_DOWN_WITHIN_MS = 5_000;
/**
 * The longest a picture may hold while a narrowed downlink switches down: 0.4 to 0.9 s on a quiet
 * machine (the estimate falling on the loss, then the lowest layer's key frame). The aim, 1 s, is
 * asserted with BAD_NETWORK_STRICT=1; the bound leaves room for a busy machine's decoders.
 */
const SWITCH_FREEZE_LIMIT_MS = STRICT ? 1_000 : 3_000;
/**
 * A widened downlink gets the top layer back within this long (the aim). The SFU probes for the
 * bitrate its consumers want every 3 s while its estimate is below it: 0.4 to 2.3 s seen, once 7.2 s.
 */
const TOP_AGAIN_WITHIN_MS = 10_000;

describe('a call on bad networks in Chromium', () => {
  let unavailable: string | undefined;
  let endUserNet: NetworkNamespace;
  let agentNet: NetworkNamespace;
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let origin: string;
  let endUserBrowser: Browser;
  let agentBrowser: Browser;
  const pages = new CallPages(
    () => agentBrowser,
    () => sfu.opsPort,
  );

  beforeAll(async () => {
    unavailable = await shapedNetworkUnavailable();
    if (unavailable) return;
    await removeLeftoverNamespaces();
    endUserNet = await NetworkNamespace.create();
    agentNet = await NetworkNamespace.create();
    const host = endUserNet.hostAddress;
    nats = await NatsServer.start();
    await allStarted([
      startSfuProcess({ natsUrl: nats.url, env: { SFU_LISTEN_IP: host, SFU_ANNOUNCED_ADDRESS: host } }).then((p) => (sfu = p)),
      startSignalingProcess({ natsUrl: nats.url, env: { SIGNALING_HOST: host } }).then((p) => (sig = p)),
    ]);
    origin = `http://${host}:${sig.port}`;
    const devices = [`--use-file-for-fake-audio-capture=${speechClip()}`, `--use-file-for-fake-video-capture=${cameraClip()}`];
    [endUserBrowser, agentBrowser] = await Promise.all([endUserNet.launchChromium(devices, [origin]), agentNet.launchChromium(devices, [origin])]);
  }, 120_000);

  afterEach(async () => {
    if (unavailable) return;
    await pages.endAll();
    await Promise.all([endUserNet.shape('both', {}), agentNet.shape('both', {})]);
  });

  afterAll(async () => {
    await Promise.all([endUserNet?.close(), agentNet?.close()]);
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  const needShapedNetworks = (context: TestContext) => {
    if (unavailable) skipForMissing(context, unavailable);
  };

  /** The end user publishing camera and microphone, the agent receiving both and decoding video. */
  async function joinCall() {
    const room = `bad-network-${Date.now()}`;
    const endUser = await pages.open(endUserBrowser);
    await endUser.goto(`${origin}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => ['camera', 'microphone'].every((s) => (window as any).room?.localPublications.get(s)?.trackId), undefined, { timeout: 30_000 });
    const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    const agent = await pages.open(agentBrowser);
    await agent.goto(`${origin}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction((id) => (window as any).room?.participants.get(id)?.tracks.size === 2, endUserId, { timeout: 30_000 });
    await waitFor(async () => (await receiving(agent, endUserId)).frames > 10, 30_000, "the end user's camera decoded at the agent");
    return { endUser, agent, endUserId };
  }

  it('moves the agent to a lower simulcast layer when its downlink narrows, without a long freeze, and back to the top when it widens', async (context) => {
    needShapedNetworks(context);
    // A mobile network's round trip, before its rate falls.
    const base = { delayMs: 20 };
    await agentNet.shape('both', base);
    const { endUser, agent, endUserId } = await joinCall();
    // The agent first gets the top layer: the one the end user sends at its largest size.
    const top = await waitFor(
      async () => {
        const [sent, got] = [await topLayerHeight(endUser), (await receiving(agent, endUserId)).height];
        return sent > 0 && got >= sent ? sent : undefined;
      },
      30_000,
      'the top simulcast layer at the agent',
    );
    await startSampling(agent, endUserId);

    await agentNet.shape('down', { ...base, rateKbit: 300 });
    await waitFor(async () => (await receiving(agent, endUserId)).height <= top / 2, SWITCH_DOWN_WITHIN_MS, `a lower layer than ${top}p at the agent within 5 s of the limit`);
    // It stays there while the limit lasts, and the limit did bite.
    await new Promise((r) => setTimeout(r, 5_000));
    expect((await receiving(agent, endUserId)).height).toBeLessThanOrEqual(top / 2);
    expect((await agentNet.counters()).down.overflowed).toBeGreaterThan(0);

    const limited = (await receiving(agent, endUserId)).height;
    await agentNet.shape('down', base);
    const lifted = Date.now();
    const samplesBeforeLift = await agent.evaluate(() => (window as any).flow.length as number);
    // The top layer again once the link widens: the SFU's next probe finds the room.
    const atTop = async () => {
      const [sent, got] = [await topLayerHeight(endUser), (await receiving(agent, endUserId)).height];
      return sent > 0 && got >= sent;
    };
    await waitFor(atTop, TOP_AGAIN_WITHIN_MS, `the top layer at the agent within 10 s of lifting the limit (it had ${limited}p)`);
    const backAfterMs = Date.now() - lifted;
    const flow = await stopSampling(agent);

    // The picture never held long: not while switching down (the SFU stops sending the layer it
    // leaves and asks the end user for a key frame of the lower one), nor on the way up.
    const [down, up] = [flow.slice(0, samplesBeforeLift), flow.slice(samplesBeforeLift)];
    const [downStall, upStall] = [longestStall(down, 'videoAt', 'frames'), longestStall(up, 'videoAt', 'frames')];
    context.annotate(`longest stall ${Math.round(downStall)} ms while narrowed, ${Math.round(upStall)} ms after; top layer again ${backAfterMs} ms after the lift`);
    expect(downStall, 'longest span without a decoded frame while narrowed (ms)').toBeLessThanOrEqual(SWITCH_FREEZE_LIMIT_MS);
    expect(upStall, 'longest span without a decoded frame after the lift (ms)').toBeLessThanOrEqual(FREEZE_LIMIT_MS);
    // Sound never stopped: decoded audio in every second, and its energy grew all along.
    expect(longestAudioGap(flow), 'longest span of concealment only (ms)').toBeLessThan(1_000);
    expect(longestStall(flow, 'audioAt', 'energy'), 'longest span without audio energy (ms)').toBeLessThan(1_000);
  }, 150_000);

  for (const side of ['agent', 'end user'] as const) {
    it(`keeps video decoding and audio whole with 5% loss on the ${side}'s network`, async (context) => {
      needShapedNetworks(context);
      const { endUser, agent, endUserId } = await joinCall();
      const before = await receiving(agent, endUserId);
      const nacksSentBefore = await nacksReceivedByPublisher(endUser);
      const audioLossHeardBefore = await audioLossReportedToPublisher(endUser);
      await startSampling(agent, endUserId);
      const net = side === 'agent' ? agentNet : endUserNet;
      await net.shape('both', { lossPercent: 5 });
      await new Promise((r) => setTimeout(r, 12_000));
      const flow = await stopSampling(agent);
      const after = await receiving(agent, endUserId);
      const counters = await net.counters();
      expect(counters.down.lost + counters.up.lost).toBeGreaterThan(0);

      // Decoding went on (15 frames a second are sent; a busy machine decodes fewer).
      expect(after.frames - before.frames, 'frames decoded over 12 s').toBeGreaterThan(30);
      // Lost video packets were asked for again: by the agent from the SFU, or by the SFU from the end user.
      if (side === 'agent') expect(after.nacks - before.nacks).toBeGreaterThan(0);
      else expect((await nacksReceivedByPublisher(endUser)) - nacksSentBefore).toBeGreaterThan(0);
      // The end user's Opus encoder heard of the loss, wherever it was (the SFU reports the worst
      // receiver's loss of the microphone in its receiver reports): what turns its in-band FEC on.
      // Its own uplink loses nothing when the loss is on the agent's side.
      expect((await audioLossReportedToPublisher(endUser)) - audioLossHeardBefore, 'audio packets reported lost to the end user').toBeGreaterThan(0);
      const gap = longestAudioGap(flow);
      context.annotate(`longest span of concealment only ${Math.round(gap)} ms with loss on the ${side}'s side`);
      expect(gap, 'longest span of concealment only (ms)').toBeLessThan(200);
    }, 120_000);
  }

  it('connects through 300 ms of delay with 50 ms of jitter each way on both sides, and stays connected', async (context) => {
    needShapedNetworks(context);
    const slow = { delayMs: 300, jitterMs: 50 };
    await Promise.all([endUserNet.shape('both', slow), agentNet.shape('both', slow)]);
    const { endUser, agent, endUserId } = await joinCall();
    for (const page of [endUser, agent]) {
      await page.evaluate(() => {
        const w = window as any;
        w.connectionEvents = [];
        for (const e of ['reconnecting', 'reconnected', 'disconnected']) w.room.on(e, () => w.connectionEvents.push(e));
      });
    }
    await startSampling(agent, endUserId);
    await new Promise((r) => setTimeout(r, 20_000));
    const flow = await stopSampling(agent);
    for (const page of [endUser, agent]) {
      expect(await page.evaluate(() => (window as any).connectionEvents)).toEqual([]);
      expect(await page.evaluate(() => document.body.dataset.state)).toBe('connected');
      expect(await transportStates(page)).toEqual(['connected', 'connected']);
    }
    expect(flow.at(-1)!.frames! - flow[0]!.frames!, 'frames decoded over 20 s').toBeGreaterThan(50);
    expect(longestStall(flow, 'videoAt', 'frames'), 'longest span without a decoded frame (ms)').toBeLessThanOrEqual(FREEZE_LIMIT_MS);
    expect(longestAudioGap(flow), 'longest span of concealment only (ms)').toBeLessThan(200);
    // The delay was there: the agent's round trip to the SFU is at least both ways of its own link.
    const rtt = await agent.evaluate(async () => {
      const { recv } = await (window as any).room.getStats();
      let seconds = 0;
      (recv as RTCStatsReport).forEach((s: any) => {
        if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime) seconds = s.currentRoundTripTime;
      });
      return seconds;
    });
    expect(rtt).toBeGreaterThan(0.5);
  }, 150_000);
});

/** One sample of what the agent receives of the end user (timestamps from the stats, ms). */
interface FlowSample {
  videoAt?: number;
  frames?: number;
  audioAt?: number;
  samples?: number;
  concealed?: number;
  energy?: number;
}

/** The agent's inbound-rtp figures of the end user's camera, now. */
async function receiving(page: Page, participantId: string): Promise<{ frames: number; height: number; nacks: number }> {
  return page.evaluate(async (id) => {
    const out = { frames: 0, height: 0, nacks: 0 };
    for (const { participantId: from, source, stats } of await (window as any).room.getReceiveStats()) {
      if (from !== id || source !== 'camera') continue;
      (stats as RTCStatsReport).forEach((s: any) => {
        if (s.type === 'inbound-rtp') Object.assign(out, { frames: s.framesDecoded ?? 0, height: s.frameHeight ?? 0, nacks: s.nackCount ?? 0 });
      });
    }
    return out;
  }, participantId);
}

/** The height of the largest simulcast layer the end user's page sends now. */
function topLayerHeight(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const { send } = await (window as any).room.getStats();
    let height = 0;
    (send as RTCStatsReport).forEach((s: any) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') height = Math.max(height, s.frameHeight ?? 0);
    });
    return height;
  });
}

/** The sum of one figure over the page's sent-side stats of one type and kind. */
function sentStatsSum(page: Page, type: 'outbound-rtp' | 'remote-inbound-rtp', kind: 'audio' | 'video', field: string): Promise<number> {
  return page.evaluate(
    async ({ type, kind, field }) => {
      const { send } = await (window as any).room.getStats();
      let sum = 0;
      (send as RTCStatsReport).forEach((s: any) => {
        if (s.type === type && s.kind === kind) sum += s[field] ?? 0;
      });
      return sum;
    },
    { type, kind, field },
  );
}

/** NACKs the end user's page got for its camera (from the SFU, for what it lost on the way in). */
const nacksReceivedByPublisher = (page: Page) => sentStatsSum(page, 'outbound-rtp', 'video', 'nackCount');

/** Packets of its microphone the page was told were lost (remote-inbound-rtp: the SFU's receiver reports). */
const audioLossReportedToPublisher = (page: Page) => sentStatsSum(page, 'remote-inbound-rtp', 'audio', 'packetsLost');

/** The DTLS state of each of the page's transports. */
function transportStates(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    const { send, recv } = await (window as any).room.getStats();
    return [send, recv].map((report: RTCStatsReport) => {
      let state = 'none';
      report?.forEach((s: any) => {
        if (s.type === 'transport') state = s.dtlsState;
      });
      return state;
    });
  });
}

/** Samples, in the page, the inbound-rtp figures of one participant's camera and microphone every 100 ms. */
function startSampling(page: Page, participantId: string): Promise<void> {
  return page.evaluate((id) => {
    const w = window as any;
    w.flow = [];
    let busy = false;
    w.flowTimer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const sample: Record<string, number> = {};
        for (const { participantId: from, source, stats } of await w.room.getReceiveStats()) {
          if (from !== id) continue;
          (stats as RTCStatsReport).forEach((s: any) => {
            if (s.type !== 'inbound-rtp') return;
            if (source === 'camera') {
              Object.assign(sample, { videoAt: s.timestamp, frames: s.framesDecoded ?? 0 });
            }
            if (source === 'microphone') {
              Object.assign(sample, { audioAt: s.timestamp, samples: s.totalSamplesReceived ?? 0, concealed: s.concealedSamples ?? 0, energy: s.totalAudioEnergy ?? 0 });
            }
          });
        }
        w.flow.push(sample);
      } finally {
        busy = false;
      }
    }, 100);
  }, participantId);
}

function stopSampling(page: Page): Promise<FlowSample[]> {
  return page.evaluate(() => {
    const w = window as any;
    clearInterval(w.flowTimer);
    return w.flow as FlowSample[];
  });
}

/** The longest time between two samples in which `value` grew, between which it did not (ms). */
function longestStall(flow: FlowSample[], at: 'videoAt' | 'audioAt', value: keyof FlowSample): number {
  const points = flow.filter((s) => s[at] !== undefined && s[value] !== undefined);
  let longest = 0;
  let grewAt = points[0]?.[at] ?? 0;
  for (let i = 1; i < points.length; i++) {
    if (points[i]![value]! > points[i - 1]![value]!) {
      longest = Math.max(longest, points[i]![at]! - grewAt);
      grewAt = points[i]![at]!;
    }
  }
  return Math.max(longest, (points.at(-1)?.[at] ?? 0) - grewAt);
}

/**
 * The longest run of sampling intervals in which all audio played was concealment (ms): 0 when
 * every interval held decoded sound. Sampled every 100 ms, a gap of over two intervals leaves at
 * least one whole interval of concealment only; shorter gaps go unseen.
 */
function longestAudioGap(flow: FlowSample[]): number {
  const points = flow.filter((s) => s.audioAt !== undefined);
  let longest = 0;
  let run = 0;
  for (let i = 1; i < points.length; i++) {
    const [a, b] = [points[i - 1]!, points[i]!];
    const decoded = b.samples! - a.samples! - (b.concealed! - a.concealed!);
    run = decoded > 0 ? 0 : run + (b.audioAt! - a.audioAt!);
    longest = Math.max(longest, run);
  }
  return longest;
}
