import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { CallPages, launchChromium, receiveSummaryScript, type ReceiveSummary } from '../support/browser.js';
import { metricValue, scrapeMetrics, sumOf } from '../support/metrics.js';
import { voiceClip } from '../support/media.js';
import { demoToken } from '../support/tokens.js';

/**
 * A real call on one machine: nats-server, an SFU with a real mediasoup worker, two signaling
 * replicas, and two Chromium pages. The end user publishes a fake camera, microphone and
 * screen share through replica 1; the agent joins through replica 2 and must decode both videos
 * and receive audio. Then the end user's WebSocket is cut and the session resumes.
 */
describe('a call between an end user and an agent in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  // Short enough that a wrong announcement of the dropped end user's leave, which would come
  // when the window ends, shows within the test; long enough for the SDK to reconnect in.
  const RESUME_WINDOW_SECONDS = 10;
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );
  const newPage = () => pages.open();

  const received = (page: Page) => page.evaluate(receiveSummaryScript);
  const find = (list: ReceiveSummary[], source: string) => list.find((r) => r.source === source);

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    const env = { SIGNALING_RESUME_WINDOW_SECONDS: String(RESUME_WINDOW_SECONDS) };
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
    browser = await launchChromium([`--use-file-for-fake-audio-capture=${voiceClip()}`]);
  }, 90_000);

  // Each test has its own call: the participants of the last one are gone first.
  afterEach(() => pages.endAll());

  afterAll(async () => {
    await browser?.close();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  /** The end user publishing camera, microphone and screen share through replica 1; the agent joined through replica 2. */
  async function joinCall() {
    const room = `call-${Date.now()}`;
    const endUser = await newPage();
    await endUser.goto(`${sig1.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => document.body.dataset.state === 'connected');
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    await endUser.evaluate(() => (window as any).room.publish({ screen: true }));
    const agent = await newPage();
    await agent.goto(`${sig2.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction(() => document.body.dataset.state === 'connected');
    return { endUser, agent };
  }

  it('carries camera, screen share and audio to the agent on another replica', async () => {
    const room = `call-${Date.now()}`;
    const endUser = await newPage();
    const endUserToken = await demoToken({ room, identity: 'customer-1', role: 'end_user' });
    await endUser.goto(`${sig1.url}/end-user#token=${endUserToken}&autojoin=1`);
    await endUser.waitForFunction(() => document.body.dataset.state === 'connected');
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    await endUser.evaluate(() => (window as any).room.publish({ screen: true }));

    const agent = await newPage();
    const agentToken = await demoToken({ room, identity: 'agent-1', role: 'agent' });
    await agent.goto(`${sig2.url}/agent#token=${agentToken}&autojoin=1`);
    await agent.waitForFunction(() => document.body.dataset.state === 'connected');

    const stats = await waitFor(
      async () => {
        const list = await received(agent);
        const ok = (find(list, 'camera')?.framesDecoded ?? 0) > 10 && (find(list, 'screen')?.framesDecoded ?? 0) > 5 && (find(list, 'microphone')?.packetsReceived ?? 0) > 20;
        return ok ? list : undefined;
      },
      30_000,
      'decoded camera and screen frames and audio packets at the agent',
    );
    expect(find(stats, 'camera')!.kind).toBe('video');
    expect(find(stats, 'screen')!.kind).toBe('video');
    expect(find(stats, 'microphone')!.kind).toBe('audio');
    // The stage shows the screen share, with the camera in the corner.
    await agent.waitForSelector('#stage video.main[data-source="screen"]');
    await agent.waitForSelector('#pip video[data-source="camera"]');
    // The agent is told who speaks.
    const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    // (Both play the same steady voice, so either may be the loudest; the end user spoke before
    // the agent came, and the join says who speaks now.)
    const agentId = await agent.evaluate(() => (window as any).room.localParticipant.id as string);
    await agent.waitForFunction((ids) => ids.includes((window as any).room.activeSpeaker?.id), [endUserId, agentId], { timeout: 15_000 });
    // And the end user hears the agent's microphone.
    await waitFor(async () => (find(await received(endUser), 'microphone')?.packetsReceived ?? 0) > 20, 20_000, 'agent audio at the end user');
    // The SFU's media metrics see the call (sampled every 5 s): packets in and out of both kinds, round-trip times.
    const media = await waitFor(
      async () => {
        const m = await scrapeMetrics(sfu.opsPort);
        const flowing = ['in', 'out'].every((direction) => ['audio', 'video'].every((kind) => sumOf(m, 'gateway_sfu_rtp_packets_total', { direction, kind }) > 0));
        return flowing && sumOf(m, 'gateway_sfu_rtt_seconds_count', { direction: 'out' }) > 0 ? m : undefined;
      },
      15_000,
      'media figures on the SFU',
    );
    expect(sumOf(media, 'gateway_sfu_rtp_bytes_total', { direction: 'in', kind: 'video' })).toBeGreaterThan(sumOf(media, 'gateway_sfu_rtp_packets_total', { direction: 'in', kind: 'video' }));
    expect(sumOf(media, 'gateway_sfu_participants')).toBe(2);
  }, 60_000);

  it("carries the screen's sound with the screen share, and ends it with the share", async () => {
    const { endUser, agent } = await joinCall();
    // The sound of a shared tab, as the app's own getDisplayMedia would give it (a tone here).
    await endUser.evaluate(async () => {
      const context = new AudioContext();
      const tone = context.createOscillator();
      const out = context.createMediaStreamDestination();
      tone.connect(out);
      tone.start();
      await (window as any).room.publish({ screenAudio: out.stream.getAudioTracks()[0] });
    });
    await waitFor(async () => (find(await received(agent), 'screen_audio')?.packetsReceived ?? 0) > 20, 20_000, "the screen's sound at the agent");
    const sources = () => agent.evaluate(() => [...(window as any).room.participants.values()].flatMap((p: any) => [...p.tracks.keys()]).sort());
    expect(await sources()).toEqual(['camera', 'microphone', 'screen', 'screen_audio']);
    // The end user stops sharing: the sound goes with the screen.
    await endUser.evaluate(() => (window as any).room.setScreenShareEnabled(false));
    await waitFor(async () => !(await sources()).includes('screen') || undefined, 10_000, 'the screen share ended at the agent');
    expect(await sources()).toEqual(['camera', 'microphone']);
  }, 60_000);

  it('resumes the end user after the WebSocket is cut, with video flowing again', async () => {
    const { endUser, agent } = await joinCall();
    await waitFor(async () => (find(await received(agent), 'camera')?.framesDecoded ?? 0) > 10, 30_000, 'camera frames at the agent before the cut');
    const participantId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    await endUser.evaluate(() => {
      const w = window as any;
      w.events = [];
      for (const e of ['reconnecting', 'reconnected', 'disconnected']) w.room.on(e, () => w.events.push(e));
    });
    await agent.evaluate(() => {
      const w = window as any;
      w.left = [];
      w.room.on('participantLeft', (p: { id: string }) => w.left.push(p.id));
    });

    const droppedAt = Date.now();
    await endUser.evaluate(() => (window as any).room._debugDropSocket());
    await endUser.waitForFunction(() => (window as any).events.includes('reconnected'), undefined, { timeout: 20_000 });
    const events = await endUser.evaluate(() => (window as any).events as string[]);
    expect(events).toEqual(['reconnecting', 'reconnected']);
    // The same session: same participant, nobody saw it leave.
    expect(await endUser.evaluate(() => (window as any).room.localParticipant.id)).toBe(participantId);

    const before = find(await received(agent), 'camera')!.framesDecoded;
    await waitFor(async () => (find(await received(agent), 'camera')?.framesDecoded ?? 0) > before + 15, 20_000, 'camera frames after resume');
    // A leave wrongly announced would come at the latest when the old replica's resume window
    // ends; two seconds more cover the hop to the agent.
    await new Promise((r) => setTimeout(r, Math.max(0, droppedAt + RESUME_WINDOW_SECONDS * 1000 + 2_000 - Date.now())));
    expect(await agent.evaluate(() => (window as any).left)).toEqual([]);
    expect(await metricValue(sig1.opsPort, 'gateway_signaling_resumes_total', { result: 'resumed' })).toBe(1);
  }, 90_000);
});
