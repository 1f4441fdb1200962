import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, allStarted, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { CallPages, launchChromium } from '../support/browser.js';
import { demoToken } from '../support/tokens.js';

/** What the agent receives of the end user's camera: inbound-rtp figures. */
interface Received {
  frameHeight: number;
  framesDecoded: number;
  bytesReceived: number;
}

/** What the end user sends of its camera, per simulcast layer (outbound-rtp by rid). */
type Sent = Record<string, { active: boolean; bytesSent: number; frameHeight: number; limitation: string }> & { estimateBps?: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Adaptive stream and dynacast in Chromium, on one machine: the end user publishes a fake 720p
 * camera in three simulcast layers; the agent shows it in an element of its own through
 * publication.attach(). The element's size chooses the layer the SFU forwards; hidden, the video
 * is paused at the SFU and comes back at a key frame; the layers nobody receives stop being
 * encoded by the end user's browser.
 */
describe('adaptive stream and dynacast in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );

  beforeAll(async () => {
    nats = await NatsServer.start();
    await allStarted([
      startSfuProcess({ natsUrl: nats.url }).then((p) => (sfu = p)),
      startSignalingProcess({ natsUrl: nats.url }).then((p) => (signaling = p)),
      launchChromium().then((b) => (browser = b)),
    ]);
  }, 90_000);

  afterEach(() => pages.endAll());

  afterAll(async () => {
    await browser?.close();
    await signaling?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  /** The end user publishing its camera; the agent joined, showing it in a fixed `width` x `height` element through attach(). */
  async function joinCall(width: number, height: number): Promise<{ endUser: Page; agent: Page }> {
    const room = `adaptive-${Date.now()}`;
    const endUser = await pages.open();
    await endUser.goto(`${signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => (window as any).room?.localTracks.has('camera'));
    const agent = await pages.open();
    await agent.goto(`${signaling.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction(() => document.body.dataset.state === 'connected');
    await agent.waitForFunction(() => [...(window as any).room.participants.values()].some((p: any) => p.publications.get('camera')?.track));
    await agent.evaluate(
      ([w, h]) => {
        const video = document.createElement('video');
        video.id = 'adaptive';
        // Over the page's own layout, always in the viewport.
        video.style.cssText = `position:fixed;top:0;left:0;z-index:9999;width:${w}px;height:${h}px;background:black`;
        document.body.append(video);
        const publication = [...(window as any).room.participants.values()].map((p: any) => p.publications.get('camera')).find(Boolean);
        publication.attach(video);
      },
      [width, height],
    );
    return { endUser, agent };
  }

  const resize = (agent: Page, width: number, height: number) =>
    agent.evaluate(([w, h]) => Object.assign(document.getElementById('adaptive')!.style, { width: `${w}px`, height: `${h}px` }), [width, height]);
  const setShown = (agent: Page, shown: boolean) => agent.evaluate((s) => void (document.getElementById('adaptive')!.style.display = s ? '' : 'none'), shown);

  const received = (agent: Page): Promise<Received> =>
    agent.evaluate(async () => {
      const out = { frameHeight: 0, framesDecoded: 0, bytesReceived: 0 };
      for (const { source, stats } of await (window as any).room.getReceiveStats()) {
        if (source !== 'camera') continue;
        (stats as RTCStatsReport).forEach((s: any) => {
          if (s.type !== 'inbound-rtp') return;
          out.frameHeight = s.frameHeight ?? 0;
          out.framesDecoded += s.framesDecoded ?? 0;
          out.bytesReceived += s.bytesReceived ?? 0;
        });
      }
      return out;
    });

  const sent = (endUser: Page): Promise<Sent> =>
    endUser.evaluate(async () => {
      const out: Record<string, unknown> = {};
      const { send } = await (window as any).room.getStats();
      (send as RTCStatsReport | undefined)?.forEach((s: any) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
          out[s.rid] = { active: s.active !== false, bytesSent: s.bytesSent ?? 0, frameHeight: s.frameHeight ?? 0, limitation: s.qualityLimitationReason ?? '' };
        }
        // The browser's bandwidth estimate: a layer is sent only once it fits.
        if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.estimateBps = s.availableOutgoingBitrate;
      });
      return out as Sent;
    });

  /** A failure, with what the end user sends (layers, the browser's reasons for holding back, its bandwidth estimate). */
  const explain = (endUser: Page) => async (error: Error) => {
    throw new Error(`${error.message}; the end user sends ${JSON.stringify(await sent(endUser))}`);
  };

  /** Frames decoded over `ms`: 0 when the video is paused. */
  async function decodedOver(agent: Page, ms: number): Promise<{ frames: number; bytes: number }> {
    const before = await received(agent);
    await sleep(ms);
    const after = await received(agent);
    return { frames: after.framesDecoded - before.framesDecoded, bytes: after.bytesReceived - before.bytesReceived };
  }

  /** The camera's bits per second the end user sends over `ms`, all layers together. */
  async function sentBitrate(endUser: Page, ms: number): Promise<number> {
    const total = (s: Sent) => ['r0', 'r1', 'r2'].reduce((sum, rid) => sum + (s[rid]?.bytesSent ?? 0), 0);
    const before = total(await sent(endUser));
    await sleep(ms);
    return ((total(await sent(endUser)) - before) * 8 * 1000) / ms;
  }

  it('receives the layer that fits the element, and pauses the video while the element is hidden', async () => {
    const { endUser, agent } = await joinCall(160, 90);
    const small = await waitFor(
      async () => {
        const r = await received(agent);
        return r.framesDecoded > 10 && r.frameHeight > 0 && r.frameHeight <= 180 ? r : undefined;
      },
      30_000,
      'the low layer (a quarter of 720p) decoded in a small element',
    );
    await resize(agent, 1280, 720);
    const large = await waitFor(
      async () => {
        const r = await received(agent);
        return r.frameHeight > 360 ? r : undefined;
      },
      60_000,
      'the top layer decoded in a large element',
    ).catch(explain(endUser));
    console.log(`adaptive stream: ${small.frameHeight}p in a 160x90 element, ${large.frameHeight}p in a 1280x720 one`);

    // Hidden: the SFU stops sending (nothing received, nothing decoded).
    await setShown(agent, false);
    await waitFor(async () => ((await decodedOver(agent, 1_000)).bytes === 0 ? true : undefined), 15_000, 'nothing received while hidden');
    expect(await decodedOver(agent, 2_000)).toEqual({ frames: 0, bytes: 0 });
    // Shown again: frames at once, from a key frame (the decoder could not start otherwise).
    await setShown(agent, true);
    await waitFor(async () => ((await decodedOver(agent, 500)).frames > 5 ? true : undefined), 15_000, 'frames decoded again once shown');
  }, 180_000);

  it('stops encoding the layers nobody receives, and encodes them again when the receiver asks for them', async () => {
    const { endUser, agent } = await joinCall(160, 90);
    await waitFor(async () => ((await received(agent)).framesDecoded > 10 ? true : undefined), 30_000, 'the camera decoded at the agent');
    // Only the low layer is received: the two above it are switched off, and send nothing (once
    // the frames already encoded have left).
    const off = await waitFor(
      async () => {
        const before = await sent(endUser);
        await sleep(1_000);
        const s = await sent(endUser);
        const quiet = (rid: string) => s[rid]?.active === false && s[rid]!.bytesSent === before[rid]?.bytesSent;
        return s.r0?.active && quiet('r1') && quiet('r2') ? s : undefined;
      },
      30_000,
      'r1 and r2 inactive and quiet at the end user',
    );
    await sleep(2_000);
    const later = await sent(endUser);
    expect(later.r1!.bytesSent).toBe(off.r1!.bytesSent);
    expect(later.r2!.bytesSent).toBe(off.r2!.bytesSent);
    expect(later.r0!.bytesSent).toBeGreaterThan(off.r0!.bytesSent);
    const lowBitrate = await sentBitrate(endUser, 5_000);

    // The agent enlarges its video: the top layer is encoded again, and received.
    await resize(agent, 1280, 720);
    const on = await waitFor(
      async () => {
        const s = await sent(endUser);
        return s.r2?.active && s.r2.bytesSent > later.r2!.bytesSent ? s : undefined;
      },
      60_000,
      'r2 encoded again',
    ).catch(explain(endUser));
    await waitFor(async () => ((await received(agent)).frameHeight > 360 ? true : undefined), 60_000, 'the top layer at the agent');
    await sleep(2_000);
    expect((await sent(endUser)).r2!.bytesSent).toBeGreaterThan(on.r2!.bytesSent);
    const highBitrate = await sentBitrate(endUser, 5_000);
    console.log(`dynacast: the end user sends ${Math.round(lowBitrate / 1000)} kbit/s to a receiver of the low layer, ${Math.round(highBitrate / 1000)} kbit/s to one of the top layer`);
  }, 240_000);
});
