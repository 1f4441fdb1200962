import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { buckets, streams, subjects } from '@gateway/common';
import { NatsServer, type startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { Kvm } from '@nats-io/kv';
import { CallPages, launchChromium } from '../support/browser.js';
import { type LossyUdpRelay, startSfuBehindRelay } from '../support/lossyRelay.js';
import { scrapeMetrics, sumOf } from '../support/metrics.js';
import { demoToken } from '../support/tokens.js';

/**
 * Gateway.preflight() in Chromium: with a pre-call check token it reports signaling reached,
 * ICE connected over UDP, a round trip, what a test picture sent and the quality; it joins a
 * room of its own (an agent in the room its token names never sees it), leaves nothing on the
 * media node or in the participant records, and makes no session.ended (a real call in the same
 * test does, so the count can tell). Through a network that blocks UDP it reports TCP. A bad
 * token is reported, not thrown.
 */
describe('preflight in Chromium', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  let udp: LossyUdpRelay;
  let tcp: { close(): void };
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );

  beforeAll(async () => {
    nats = await NatsServer.start();
    // Media reaches the worker through relays (UDP and TCP), so a test can block UDP.
    const behind = await startSfuBehindRelay(nats.url, { tcp: true });
    ({ sfu, udp } = behind);
    tcp = behind.tcp!;
    sig = await startSignalingProcess({ natsUrl: nats.url });
    browser = await launchChromium();
    nc = await nats.connect();
  }, 90_000);

  afterEach(() => pages.endAll());

  afterAll(async () => {
    await browser?.close();
    await nc?.close();
    udp?.close();
    tcp?.close();
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  /** session.ended events stored for the demo tenant so far. */
  const sessionsEnded = async () => (await (await jetstreamManager(nc)).streams.info(streams.sessions.name, { subjects_filter: subjects.sessionEnded('demo') })).state.messages;

  /** Runs Gateway.preflight() in a page that loaded the SDK bundle. */
  const runPreflight = (page: Page, token: string) =>
    page.evaluate(async (t) => (window as any).Gateway.preflight({ url: location.origin, token: t, durationMs: 3_000 }), token) as Promise<{
      signaling: string;
      media: { connected: boolean; protocol?: string; rttMs?: number; upstreamKbps?: number; availableUpstreamKbps?: number; lossRatio?: number };
      quality: string;
      error?: { code: string };
    }>;

  it('measures the path to the media server, alone in a room of its own, and leaves nothing behind', async () => {
    const room = `preflight-${Date.now()}`;
    const endedBefore = await sessionsEnded();
    // A real call in the room the check's token names.
    const agent = await pages.open();
    await agent.goto(`${sig.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction(() => (window as any).room?.state === 'connected');
    await agent.evaluate(() => {
      const w = window as any;
      w.joined = [];
      w.room.on('participantJoined', (p: { identity: string }) => w.joined.push(p.identity));
    });

    const checker = await pages.open();
    await checker.goto(`${sig.url}/`);
    await checker.addScriptTag({ url: '/sdk.js' });
    const token = await demoToken({ room, identity: 'customer-1', role: 'end_user', crmContactId: 'C-42', preflight: true });
    const result = await runPreflight(checker, token);
    expect(result).toMatchObject({ signaling: 'ok', media: { connected: true, protocol: 'udp' } });
    expect(result.error).toBeUndefined();
    expect(result.media.rttMs).toBeGreaterThanOrEqual(0);
    expect(result.media.rttMs).toBeLessThan(200);
    expect(result.media.upstreamKbps).toBeGreaterThan(50);
    expect(result.media.availableUpstreamKbps).toBeGreaterThan(50);
    expect(result.media.lossRatio).toBeLessThan(0.05);
    expect(['excellent', 'good']).toContain(result.quality);

    // Nobody in the named room saw it; nothing of it stays on the media node or in the records.
    expect(await agent.evaluate(() => (window as any).joined)).toEqual([]);
    await waitFor(async () => sumOf(await scrapeMetrics(sfu.opsPort), 'gateway_sfu_participants') === 1, 10_000, 'only the agent left on the SFU');
    const participants = await new Kvm(nc).open(buckets.participants);
    const keys: string[] = [];
    for await (const key of await participants.keys()) keys.push(key);
    expect(keys.filter((k) => k.includes('preflight_'))).toEqual([]);

    // The real call ends and is announced; the check never was.
    await agent.evaluate(() => (window as any).room.leave());
    await waitFor(async () => ((await sessionsEnded()) > endedBefore ? true : undefined), 15_000, "the agent's session.ended");
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await sessionsEnded()).toBe(endedBefore + 1);
  }, 120_000);

  it('reports TCP when the network blocks UDP', async () => {
    udp.blocked = true;
    try {
      const checker = await pages.open();
      await checker.goto(`${sig.url}/`);
      await checker.addScriptTag({ url: '/sdk.js' });
      const result = await runPreflight(checker, await demoToken({ room: 'anything', identity: 'customer-2', role: 'end_user', preflight: true }));
      expect(result).toMatchObject({ signaling: 'ok', media: { connected: true, protocol: 'tcp' } });
      expect(result.media.upstreamKbps).toBeGreaterThan(0);
      expect(udp.dropped).toBeGreaterThan(0);
    } finally {
      udp.blocked = false;
    }
  }, 60_000);

  it('reports a refused token as signaling failed, without throwing', async () => {
    const checker = await pages.open();
    await checker.goto(`${sig.url}/`);
    await checker.addScriptTag({ url: '/sdk.js' });
    const result = await runPreflight(checker, 'not-a-token');
    expect(result).toMatchObject({ signaling: 'failed', media: { connected: false }, quality: 'lost', error: { code: 'UNAUTHENTICATED' } });
  }, 60_000);
});
