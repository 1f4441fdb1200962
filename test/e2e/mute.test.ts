import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { CallPages, launchChromium, receiveSummaryScript } from '../support/browser.js';
import { metricValue } from '../support/metrics.js';
import { demoToken } from '../support/tokens.js';

/**
 * Mute in Chromium, through the demo pages' buttons: the end user's camera and microphone are
 * muted and unmuted while the agent watches. The tracks stay published (the same producers,
 * paused and resumed), the camera is really stopped meanwhile, the agent gets no new track, and
 * an agent joining while they are muted sees them muted.
 */
describe('muting in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );
  const newPage = () => pages.open();

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    sig = await startSignalingProcess({ natsUrl: nats.url });
    browser = await launchChromium();
  }, 90_000);

  afterEach(() => pages.endAll());

  afterAll(async () => {
    await browser?.close();
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  const cameraFrames = async (page: Page) => (await page.evaluate(receiveSummaryScript)).find((r) => r.source === 'camera')?.framesDecoded ?? 0;

  /** An agent page in the room, recording every track and mute event once it receives the end user's camera and microphone (`firstTracks`). */
  async function agentPage(room: string, identity: string, endUserId: string) {
    const page = await newPage();
    await page.goto(`${sig.url}/agent#token=${await demoToken({ room, identity, role: 'agent' })}&autojoin=1`);
    await page.waitForFunction((id) => (window as any).room?.participants.get(id)?.tracks.size === 2, endUserId);
    await page.evaluate((id) => {
      const w = window as any;
      const p = w.room.participants.get(id);
      w.firstTracks = { camera: p.tracks.get('camera'), microphone: p.tracks.get('microphone') };
      w.events = [];
      for (const name of ['track', 'trackEnded', 'trackMuted', 'trackUnmuted']) {
        w.room.on(name, (e: { participant: { id: string }; source: string }) => e.participant.id === id && w.events.push(`${name}:${e.source}`));
      }
    }, endUserId);
    return page;
  }

  /** What a page knows of the end user's publication of a source. */
  const publicationAt = (page: Page, endUserId: string, source: string) =>
    page.evaluate(
      ([id, s]) => {
        const p = (window as any).room.participants.get(id);
        const publication = p?.publications.get(s);
        return publication ? { trackId: publication.trackId as string, muted: publication.muted as boolean, sameTrack: p.tracks.get(s) === (window as any).firstTracks?.[s] } : undefined;
      },
      [endUserId, source] as const,
    );

  it('mutes and unmutes with the buttons: same producers, the camera stopped meanwhile, no new track, a late joiner sees the state', async () => {
    const room = `mute-${Date.now()}`;
    const endUser = await newPage();
    await endUser.goto(`${sig.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    // Published: both producers made.
    await endUser.waitForFunction(() => ['camera', 'microphone'].every((s) => (window as any).room?.localPublications.get(s)?.trackId));
    const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    const producers = await endUser.evaluate(() => {
      const publications = (window as any).room.localPublications;
      return { camera: publications.get('camera').trackId as string, microphone: publications.get('microphone').trackId as string };
    });

    const agent = await agentPage(room, 'agent-1', endUserId);
    await waitFor(async () => (await cameraFrames(agent)) > 10, 30_000, 'camera frames at the agent');
    expect(await publicationAt(agent, endUserId, 'camera')).toEqual({ trackId: producers.camera, muted: false, sameTrack: true });

    // Camera off: the button mutes it, the capture stops (the light goes off), the preview goes.
    await endUser.evaluate(() => ((window as any).capturedCamera = (window as any).room.localTracks.get('camera')));
    await endUser.click('[data-toggle="camera"]');
    await endUser.waitForFunction(() => document.querySelector('[data-toggle="camera"]')?.getAttribute('aria-pressed') === 'false');
    expect(
      await endUser.evaluate(() => {
        const w = window as any;
        return { ended: w.capturedCamera.readyState, preview: !!document.querySelector('#local video'), muted: w.room.localPublications.get('camera').muted };
      }),
    ).toEqual({ ended: 'ended', preview: false, muted: true });
    await agent.waitForFunction(() => (window as any).events.includes('trackMuted:camera'));
    expect(await publicationAt(agent, endUserId, 'camera')).toEqual({ trackId: producers.camera, muted: true, sameTrack: true });
    // Nothing arrives while muted (what was in flight settles first).
    await new Promise((r) => setTimeout(r, 1_000));
    const frozen = await cameraFrames(agent);
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await cameraFrames(agent)) - frozen).toBeLessThanOrEqual(2);

    // Microphone off too.
    await endUser.click('[data-toggle="microphone"]');
    await agent.waitForFunction(() => (window as any).events.includes('trackMuted:microphone'));

    // An agent joining now sees both muted, in the SDK and on the page.
    const late = await agentPage(room, 'agent-2', endUserId);
    expect(await publicationAt(late, endUserId, 'camera')).toMatchObject({ trackId: producers.camera, muted: true });
    expect(await publicationAt(late, endUserId, 'microphone')).toMatchObject({ trackId: producers.microphone, muted: true });
    await late.waitForSelector(`#people li[data-participant="${endUserId}"] .media .muted[data-source="camera"]`);

    // Camera and microphone back: captured again into the same producers; video flows again to the same track.
    await endUser.click('[data-toggle="camera"]');
    await endUser.click('[data-toggle="microphone"]');
    await endUser.waitForFunction(() => document.querySelector('[data-toggle="microphone"]')?.getAttribute('aria-pressed') === 'true');
    expect(
      await endUser.evaluate(() => {
        const w = window as any;
        const camera = w.room.localTracks.get('camera');
        return { live: camera?.readyState, fresh: camera !== w.capturedCamera, preview: !!document.querySelector('#local video'), trackId: w.room.localPublications.get('camera').trackId };
      }),
    ).toEqual({ live: 'live', fresh: true, preview: true, trackId: producers.camera });
    await agent.waitForFunction(() => ['trackUnmuted:camera', 'trackUnmuted:microphone'].every((e) => (window as any).events.includes(e)));
    const before = await cameraFrames(agent);
    await waitFor(async () => (await cameraFrames(agent)) > before + 15, 20_000, 'camera frames after the unmute');
    expect(await publicationAt(agent, endUserId, 'camera')).toEqual({ trackId: producers.camera, muted: false, sameTrack: true });
    expect(await publicationAt(agent, endUserId, 'microphone')).toEqual({ trackId: producers.microphone, muted: false, sameTrack: true });
    await late.waitForFunction(() => ['trackUnmuted:camera', 'trackUnmuted:microphone'].every((e) => (window as any).events.includes(e)));
    // No track ended and none arrived: the agents kept receiving the same producers.
    expect(await agent.evaluate(() => (window as any).events)).toEqual(['trackMuted:camera', 'trackMuted:microphone', 'trackUnmuted:camera', 'trackUnmuted:microphone']);
    expect(await late.evaluate(() => (window as any).events)).toEqual(['trackUnmuted:camera', 'trackUnmuted:microphone']);
    // On the server: four producers made in the whole call (the end user's two, each agent's
    // microphone), two paused and resumed, none closed.
    const requests = async (method: string) => (await metricValue(sig.opsPort, 'gateway_signaling_requests_total', { method, code: 'OK' })) ?? 0;
    expect({ produce: await requests('produce'), pause: await requests('pauseProducer'), resume: await requests('resumeProducer'), close: await requests('closeProducer') }).toEqual({
      produce: 4,
      pause: 2,
      resume: 2,
      close: 0,
    });
  }, 120_000);
});
