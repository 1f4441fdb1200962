import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devices, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { demoToken } from '../support/tokens.js';

/** Where the screenshots go, to be looked at (not compared): .tmp/screenshots/phone-*.png. */
const SHOTS = path.resolve('.tmp/screenshots');

/**
 * The end-user page on a phone (the viewport, touch and user agent of Chromium's iPhone 13
 * profile, 390x844): in a call the agent's video fills the top, the self view sits over it, the
 * call controls stay on screen within thumb reach, and chat and the agent's requests are one
 * tap away, all without scrolling sideways.
 */
describe('the end-user page on a phone', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  let phone: BrowserContext;
  const pages: Page[] = [];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    sig = await startSignalingProcess({ natsUrl: nats.url });
    browser = await launchChromium();
    const { defaultBrowserType: _, ...iphone } = devices['iPhone 13']!;
    phone = await browser.newContext({ ...iphone, permissions: ['camera', 'microphone'] });
  }, 90_000);

  afterAll(async () => {
    for (const page of pages) await page.evaluate(() => (window as any).room?.leave()).catch(() => undefined);
    await phone?.close();
    await browser?.close();
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  /** An element's box, or undefined when it is not rendered. */
  const box = async (page: Page, selector: string) => (await page.locator(selector).first().boundingBox()) ?? undefined;

  it('works one-handed: stage on top, self view over it, controls on screen and reachable, chat a tap away', async () => {
    const room = `phone-${Date.now()}`;
    const endUser = await phone.newPage();
    pages.push(endUser);
    await endUser.goto(`${sig.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => ['camera', 'microphone'].every((s) => (window as any).room?.localPublications.get(s)?.trackId));
    const agent = await browser.newPage();
    pages.push(agent);
    await agent.goto(`${sig.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent', name: 'Ann, Support' })}&autojoin=1`);
    // The agent console publishes the microphone; this agent turns its camera on too.
    await agent.waitForFunction(() => (window as any).room?.state === 'connected');
    await agent.evaluate(() => (window as any).room.setCameraEnabled(true));
    await endUser.waitForSelector('#remote video', { state: 'attached' });
    await waitFor(() => endUser.evaluate(() => ((document.querySelector('#remote video') as HTMLVideoElement | null)?.videoWidth ?? 0) > 0), 20_000, "the agent's video playing");
    await endUser.screenshot({ path: path.join(SHOTS, 'phone-call.png') });

    const viewport = endUser.viewportSize()!;
    expect(viewport).toEqual({ width: 390, height: 664 });
    // Nothing wider than the screen.
    expect(await endUser.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(viewport.width);
    // The agent fills the top: full width, at least 40% of the height, on screen without scrolling.
    const stage = (await box(endUser, '#remote'))!;
    expect(stage.y).toBeLessThan(80);
    expect(stage.width).toBeGreaterThanOrEqual(viewport.width - 24);
    expect(stage.height).toBeGreaterThanOrEqual(viewport.height * 0.4);
    // The self view is a small picture over the stage's corner.
    const self = (await box(endUser, '#local'))!;
    expect(self.width).toBeLessThan(viewport.width / 2);
    expect(self.y + self.height).toBeLessThanOrEqual(stage.y + stage.height + 1);
    // The controls are on screen, in the lower half (thumb reach), each at least 44 px square (touch targets).
    for (const selector of ['[data-toggle="microphone"]', '[data-toggle="camera"]', '#leave']) {
      const control = (await box(endUser, selector))!;
      expect(control, selector).toBeDefined();
      expect(control.y + control.height, selector).toBeLessThanOrEqual(viewport.height);
      expect(control.y, selector).toBeGreaterThan(viewport.height / 2);
      expect(Math.min(control.width, control.height), selector).toBeGreaterThanOrEqual(44);
    }
    // The caption names the agent by the name the backend gave.
    expect(await endUser.textContent('#remote-caption')).toContain('Ann, Support');

    // Chat: a tap on the chat button shows it; a message goes out and the agent gets it.
    await endUser.tap('[data-panel="chat"]');
    await endUser.waitForSelector('#chat-input:not([disabled])');
    const input = (await box(endUser, '#chat-input'))!;
    expect(input.y + input.height).toBeLessThanOrEqual(viewport.height);
    await endUser.fill('#chat-input', 'hello from my phone');
    await endUser.tap('#chat-send');
    await agent.waitForFunction(() => [...document.querySelectorAll('[data-testid="chat-log"] li')].some((li) => li.textContent?.includes('hello from my phone')));
    await endUser.screenshot({ path: path.join(SHOTS, 'phone-chat.png') });
    // And back to the call.
    await endUser.tap('[data-panel="chat"]');
    expect(await endUser.evaluate(() => getComputedStyle(document.querySelector('#chat')!).display)).toBe('none');
    // A request from the agent opens its sheet by itself.
    await agent.evaluate((id) => (window as any).room.requestSmartAction('photo', id), await endUser.evaluate(() => (window as any).room.localParticipant.id));
    await endUser.waitForSelector('#smart-actions-panel', { state: 'visible' });
    await endUser.screenshot({ path: path.join(SHOTS, 'phone-request.png') });
    await agent.close();
  }, 120_000);
});
