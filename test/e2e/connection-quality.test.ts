import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, type startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { CallPages, launchChromium } from '../support/browser.js';
import { type LossyUdpRelay, startSfuBehindRelay } from '../support/lossyRelay.js';
import { scrapeMetrics, sumOf } from '../support/metrics.js';
import { demoToken } from '../support/tokens.js';

/**
 * Connection quality in Chromium: an end user and an agent in a call both see good levels
 * judged by the media node; when the agent's network starts losing packets (a UDP relay in
 * front of the SFU drops a share of what it sends the agent's receiving transport: Chromium's
 * DevTools network emulation does not reach WebRTC), the node's scores of what it
 * sends the agent fall and the agent's own level drops, announced by connectionQualityChanged,
 * while the end user's level as the agent sees it stays.
 */
describe('connection quality in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  let relay: LossyUdpRelay;
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );

  beforeAll(async () => {
    nats = await NatsServer.start();
    // Every packet between Chromium and the worker goes through the relay.
    ({ sfu, udp: relay } = await startSfuBehindRelay(nats.url));
    sig = await startSignalingProcess({ natsUrl: nats.url });
    browser = await launchChromium();
  }, 90_000);

  afterEach(() => pages.endAll());

  afterAll(async () => {
    await browser?.close();
    relay?.close();
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  /** Records every connectionQualityChanged of the page's room as `me:<level>` or `<id>:<level>`. */
  const recordQuality = (page: Page) =>
    page.evaluate(() => {
      const w = window as any;
      w.qualityEvents = [];
      w.room.on('connectionQualityChanged', (p: { id: string; isLocal: boolean }, quality: string) => w.qualityEvents.push({ who: p.isLocal ? 'me' : p.id, quality, at: Date.now() }));
    });
  const qualityEvents = (page: Page) => page.evaluate(() => (window as any).qualityEvents as Array<{ who: string; quality: string; at: number }>);
  const levelOf = (page: Page, participantId: string) =>
    page.evaluate((id) => {
      const room = (window as any).room;
      return (id === room.localParticipant.id ? room.localParticipant : room.participants.get(id))?.connectionQuality as string | undefined;
    }, participantId);

  /** room.getTrackStats() over the second after a first call. */
  const trackStats = (page: Page) =>
    page.evaluate(async () => {
      const room = (window as any).room;
      await room.getTrackStats();
      await new Promise((r) => setTimeout(r, 1_500));
      return (await room.getTrackStats()) as Array<{ participantId: string; direction: string; kind: string; source: string; bitrateBps?: number; lossRatio?: number; frameWidth?: number }>;
    });

  /** The ICE username fragment of the page's receiving transport. */
  const receivingUfrag = (page: Page) =>
    page.evaluate(async () => {
      const { recv } = await (window as any).room.getStats();
      let ufrag = '';
      (recv as RTCStatsReport).forEach((s: any) => {
        if (s.type === 'local-candidate' && s.usernameFragment) ufrag = s.usernameFragment;
      });
      return ufrag;
    });

  it("drops the receiver's level when its network loses packets, and tells only of changes", async () => {
    const room = `quality-${Date.now()}`;
    const endUser = await pages.open();
    await endUser.goto(`${sig.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => ['camera', 'microphone'].every((s) => (window as any).room?.localPublications.get(s)?.trackId));
    const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);

    const agent = await pages.open();
    await agent.goto(`${sig.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction((id) => (window as any).room?.participants.get(id)?.tracks.size === 2, endUserId);
    await recordQuality(agent);
    const agentId = await agent.evaluate(() => (window as any).room.localParticipant.id as string);

    // A clean network: the end user sends well, the agent receives well.
    const good = ['excellent', 'good'];
    await agent.waitForFunction(
      ([id, levels]) => {
        const room = (window as any).room;
        return levels.includes(room.participants.get(id)?.connectionQuality) && levels.includes(room.localParticipant.connectionQuality);
      },
      [endUserId, good] as const,
      { timeout: 30_000 },
    );
    await endUser.waitForFunction(([id, levels]) => levels.includes((window as any).room.participants.get(id)?.connectionQuality), [agentId, good] as const, { timeout: 30_000 });

    // Figures per track, over the interval between two calls.
    const clean = await trackStats(agent);
    const video = clean.find((t) => t.direction === 'receive' && t.kind === 'video' && t.participantId === endUserId);
    expect(video).toMatchObject({ source: 'camera' });
    expect(video!.bitrateBps).toBeGreaterThan(20_000);
    expect(video!.frameWidth).toBeGreaterThan(0);
    expect(video!.lossRatio).toBeLessThan(0.05);
    // The agent page publishes its microphone.
    const sent = clean.find((t) => t.direction === 'send' && t.source === 'microphone');
    expect(sent!.bitrateBps).toBeGreaterThan(5_000);

    // The agent's network loses a third of what reaches it.
    const agentUfrag = await receivingUfrag(agent);
    relay.setLoss(agentUfrag, 0.35);
    await agent.waitForFunction(() => ['poor', 'lost'].includes((window as any).room.localParticipant.connectionQuality), undefined, { timeout: 45_000 });
    const lossy = await trackStats(agent);
    const audio = lossy.find((t) => t.direction === 'receive' && t.kind === 'audio');
    expect(audio!.lossRatio).toBeGreaterThan(0.1);
    const events = await qualityEvents(agent);
    expect(['poor', 'lost']).toContain(events.filter((e) => e.who === 'me').at(-1)?.quality);
    // Changes only, and throttled: never the same level twice in a row for a participant, and
    // at most one change every two seconds (the media node's interval, less delivery jitter).
    for (const who of ['me', endUserId]) {
      const own = events.filter((e) => e.who === who);
      for (let i = 1; i < own.length; i++) {
        expect(own[i]!.quality).not.toBe(own[i - 1]!.quality);
        expect(own[i]!.at - own[i - 1]!.at).toBeGreaterThan(1_500);
      }
    }
    // Monitoring counts what was announced.
    const scrape = await scrapeMetrics(sfu.opsPort);
    const fallen = ['poor', 'lost'].map((level) => sumOf(scrape, 'gateway_sfu_connection_quality_changes_total', { side: 'downstream', level }));
    expect(fallen[0]! + fallen[1]!).toBeGreaterThan(0);
    // What the end user sends is still judged on its own side: the agent's loss is not theirs.
    expect(good).toContain(await levelOf(agent, endUserId));

    // The network heals: the level comes back.
    expect(relay.dropped).toBeGreaterThan(0);
    relay.setLoss(agentUfrag, 0);
    await agent.waitForFunction((levels) => levels.includes((window as any).room.localParticipant.connectionQuality), good, { timeout: 45_000 });
  }, 180_000);

  it('counts a transport whose DTLS handshake fails: the page sends a fingerprint its certificate does not have', async () => {
    const failures = async (reason: string) => sumOf(await scrapeMetrics(sfu.opsPort), 'gateway_sfu_transport_failures_total', { reason });
    const before = { dtls: await failures('dtls'), ice: await failures('ice') };
    const page = await pages.open();
    // The SDK's connectTransport request, rewritten on its way out: one hex digit of each
    // fingerprint changed, so ICE completes and the media node refuses the certificate.
    await page.addInitScript(() => {
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (this: WebSocket, data: string | ArrayBufferLike | Blob | ArrayBufferView) {
        if (typeof data === 'string' && data.includes('"connectTransport"')) {
          const frame = JSON.parse(data);
          for (const fingerprint of frame.connectTransport?.dtlsParameters?.fingerprints ?? []) {
            fingerprint.value = (fingerprint.value[0] === 'A' ? 'B' : 'A') + fingerprint.value.slice(1);
          }
          (window as any).forgedFingerprints = ((window as any).forgedFingerprints ?? 0) + 1;
          return send.call(this, JSON.stringify(frame));
        }
        return send.call(this, data);
      };
    });
    await page.goto(`${sig.url}/end-user#token=${await demoToken({ room: `dtls-${Date.now()}`, identity: 'customer-dtls', role: 'end_user' })}&autojoin=1`);
    await page.waitForFunction(() => ((window as any).forgedFingerprints ?? 0) >= 1, undefined, { timeout: 30_000 });
    await waitFor(async () => (await failures('dtls')) > before.dtls, 30_000, 'a DTLS failure counted by the media node');
    // The media never flowed: nothing of it was counted as an ICE failure.
    expect(await failures('ice')).toBe(before.ice);
  }, 90_000);
});
