import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { NatsServer, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { exifOf, imageFormat, photoWithGps } from '../support/images.js';
import { demoToken, globexToken, twoTenantEnv } from '../support/tokens.js';
import { TestClients } from '../support/wsClient.js';
import sharp from 'sharp';

const poll = { timeout: 15_000, interval: 50 };

/** A card of the Smart Actions list, by kind and state (the newest one when there are several). */
const card = (kind: string, state?: string) => `.smart-action[data-kind="${kind}"]${state ? `[data-state="${state}"]` : ''}`;

/**
 * Smart Actions in Chromium through the demo pages, against real processes (nats-server, an
 * SFU, signaling): the agent asks for a photo, a screenshot and device verifications; the end
 * user answers from their page (a file with GPS EXIF, a frame of their screen share captured by
 * the SDK, WebAuthn with a virtual authenticator); the agent sees the pictures without metadata
 * and the verification results; another tenant gets nothing. WebAuthn needs a secure context
 * and the server's relying party is `localhost`, so the pages are opened at http://localhost.
 */
describe('Smart Actions in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  /** Same cluster, attachment URLs that expire after 2 s. */
  let sigShort: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  let context: BrowserContext;
  let endUser: Page;
  let agent: Page;
  let tmp: string;
  const clients = new TestClients();
  const room = `sa-e2e-${Date.now()}`;
  /** The page origin WebAuthn accepts (the signaling process listens on 127.0.0.1, which localhost reaches). */
  const pageBase = () => `http://localhost:${sig.port}`;
  /** Node may resolve localhost to ::1 first: fetch from Node through the address it listens on. */
  const fromNode = (url: string) => url.replace(/^http:\/\/localhost:/, 'http://127.0.0.1:');

  /** The newest card of a kind, as the agent's page shows it, once its picture has loaded. */
  async function loadedImage(kind: string): Promise<{ actionId: string; src: string; width: number; height: number }> {
    const selector = `${card(kind, 'completed')} img[data-testid="smart-action-image"]`;
    await agent.waitForFunction((s) => [...document.querySelectorAll<HTMLImageElement>(s)].some((img) => img.complete && img.naturalWidth > 0), selector, poll);
    return agent.$$eval(selector, (imgs) => {
      const img = imgs[imgs.length - 1] as HTMLImageElement;
      return { actionId: (img.closest('.smart-action') as HTMLElement).dataset.actionId!, src: img.src, width: img.naturalWidth, height: img.naturalHeight };
    });
  }

  /**
   * The agent asks from its page; resolves with the new action's id once the end user's page
   * shows the request. Waits for each side in turn, so a failure says which one did not get it.
   */
  async function ask(kind: 'photo' | 'screenshot' | 'verification'): Promise<string> {
    const known = () => agent.evaluate(() => ((window as any).room.smartActions as Array<{ actionId: string }>).map((a) => a.actionId));
    const before = await known();
    await agent.bringToFront();
    await agent.click(`[data-testid="request-${kind}"]`);
    let actionId = '';
    await expect
      .poll(async () => {
        actionId = (await known()).find((id) => !before.includes(id)) ?? '';
        // A refused request shows under the buttons.
        return actionId || (await agent.getAttribute('[data-testid="smart-action-error"]', 'data-code')) || '';
      }, poll)
      .toMatch(/^SA/);
    await endUser.waitForSelector(`.smart-action[data-action-id="${actionId}"][data-state="requested"]`, poll);
    return actionId;
  }

  /** The agent asks for a photo and the end user sends one with a GPS position; resolves with the action's id once it is completed. */
  async function sendPhoto(): Promise<string> {
    const file = path.join(tmp, `IMG_${Date.now()}.jpg`);
    await writeFile(file, await photoWithGps());
    const actionId = await ask('photo');
    const prompt = `.smart-action[data-action-id="${actionId}"]`;
    await endUser.setInputFiles(`${prompt} [data-testid="smart-action-file"]`, file);
    await endUserClick(`${prompt} [data-testid="smart-action-send"]`);
    await endUser.waitForSelector(`.smart-action[data-action-id="${actionId}"][data-state="completed"]`, poll);
    return actionId;
  }

  /** Clicks in the end user's page, in front: browsers allow WebAuthn only in the focused page (and a hidden one does not render). */
  async function endUserClick(selector: string): Promise<void> {
    await endUser.bringToFront();
    await endUser.click(selector);
  }

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [sig, sigShort] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }),
      startSignalingProcess({ natsUrl: nats.url, env: { ...twoTenantEnv, SIGNALING_ATTACHMENT_URL_SECONDS: '2' } }),
    ]);
    browser = await launchChromium();
    context = await browser.newContext();
    // page.evaluate gets functions as compiled for the test, where named ones call esbuild's __name.
    await context.addInitScript({ content: 'globalThis.__name = (f) => f;' });
    tmp = await mkdtemp(path.join(os.tmpdir(), 'sa-e2e-'));

    endUser = await context.newPage();
    await endUser.goto(`${pageBase()}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    agent = await context.newPage();
    await agent.goto(`${pageBase()}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    for (const page of [endUser, agent]) await page.waitForFunction(() => document.body.dataset.state === 'connected', undefined, poll);
    await agent.waitForFunction(() => [...(window as any).room.participants.values()].some((p: any) => p.role === 'end_user'), undefined, poll);
  }, 90_000);

  afterAll(async () => {
    clients.closeAll();
    await browser?.close();
    await Promise.all([sig?.stop(), sigShort?.stop()]);
    await sfu?.stop();
    await nats?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("takes a photo with a GPS position from the end user's file input to the agent, without EXIF", async () => {
    const photo = await photoWithGps();
    expect((await exifOf(photo))?.GPSInfo?.GPSLatitude).toEqual([48, 51, 29.64]);
    const file = path.join(tmp, 'IMG_0001.jpg');
    await writeFile(file, photo);

    const actionId = await ask('photo');
    const prompt = `.smart-action[data-action-id="${actionId}"]`;
    expect(await endUser.getAttribute(`${prompt} [data-testid="smart-action-file"]`, 'accept')).toBe('image/*');
    expect(await endUser.isDisabled(`${prompt} [data-testid="smart-action-send"]`)).toBe(true);
    await endUser.setInputFiles(`${prompt} [data-testid="smart-action-file"]`, file);
    await endUserClick(`${prompt} [data-testid="smart-action-send"]`);
    await endUser.waitForSelector(`.smart-action[data-action-id="${actionId}"][data-state="completed"]`, poll);

    const shown = await loadedImage('photo');
    expect(shown).toMatchObject({ actionId, width: 320, height: 240 });
    expect(shown.src).toMatch(new RegExp(`^${pageBase()}/v1/artifacts/AT`));
    const response = await fetch(fromNode(shown.src));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/jpeg');
    const image = Buffer.from(await response.arrayBuffer());
    expect(await imageFormat(image)).toBe('jpeg');
    expect(await exifOf(image)).toBeUndefined();
    expect(image.includes(Buffer.from('PhoneCo'))).toBe(false);
    // The SDK's view, at both ends.
    const atAgent = await agent.evaluate((id) => (window as any).room.smartActions.find((a: any) => a.actionId === id), actionId);
    expect(atAgent).toMatchObject({ kind: 'photo', state: 'completed', contentType: 'image/jpeg', sizeBytes: image.length, externalId: 'customer-1', requestedAtMs: expect.any(Number) });
    expect(await endUser.evaluate((id) => (window as any).room.smartActions.find((a: any) => a.actionId === id).state, actionId)).toBe('completed');
  });

  it('verifies the end user with their registered device key, and not with another key under the same credential id', async () => {
    const cdp: CDPSession = await endUser.context().newCDPSession(endUser);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
    });

    await endUserClick('[data-testid="register-device"]');
    await expect
      .poll(async () => (await endUser.getAttribute('[data-testid="register-device-status"]', 'data-credential-id')) ?? (await endUser.textContent('[data-testid="register-device-status"]')), poll)
      .toMatch(/^[A-Za-z0-9_-]{16,}$/);
    expect(await endUser.textContent('[data-testid="register-device-status"]')).toBe('This device is registered.');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    expect(credentials).toHaveLength(1);
    const registered = credentials[0]!;
    expect(registered.rpId).toBe('localhost');

    const first = await ask('verification');
    await endUserClick(`.smart-action[data-action-id="${first}"] [data-testid="smart-action-verify"]`);
    const result = `.smart-action[data-action-id="${first}"][data-state="completed"] [data-testid="smart-action-result"]`;
    await agent.waitForSelector(result, poll);
    expect(await agent.getAttribute(result, 'data-verified')).toBe('true');
    expect(await agent.textContent(result)).toMatch(/^verified · \d{1,2}[:.]\d{2}[:.]\d{2}/);
    expect(await endUser.getAttribute(`.smart-action[data-action-id="${first}"] [data-testid="smart-action-result"]`, 'data-verified')).toBe('true');

    // The same credential id and user handle, but a private key the server never saw.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await cdp.send('WebAuthn.clearCredentials', { authenticatorId });
    await cdp.send('WebAuthn.addCredential', {
      authenticatorId,
      credential: {
        credentialId: registered.credentialId,
        isResidentCredential: registered.isResidentCredential,
        rpId: registered.rpId,
        userHandle: registered.userHandle,
        privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
        signCount: registered.signCount + 1,
      },
    });
    const second = await ask('verification');
    await endUserClick(`.smart-action[data-action-id="${second}"] [data-testid="smart-action-verify"]`);
    const failed = `.smart-action[data-action-id="${second}"][data-state="completed"] [data-testid="smart-action-result"]`;
    await agent.waitForSelector(failed, poll);
    expect(await agent.getAttribute(failed, 'data-verified')).toBe('false');
    expect(await agent.textContent(failed)).toMatch(/^not verified · /);
    const actions = await agent.evaluate(() => (window as any).room.smartActions.filter((a: any) => a.kind === 'verification').map((a: any) => [a.state, a.verified, a.reason]));
    // The credential id is the registered one: it is the signature that does not verify.
    expect(actions).toEqual([
      ['completed', true, ''],
      ['completed', false, 'the device key did not verify'],
    ]);
    await cdp.detach();
  });

  it("keeps the attachment to its tenant: another tenant's agent gets NOT_FOUND, a changed token and an expired URL open nothing", async () => {
    const photo = await sendPhoto();
    const artifactOf = () => agent.evaluate((id) => ((window as any).room.smartActions.find((a: any) => a.actionId === id && a.state === 'completed')?.artifactId ?? '') as string, photo);
    await expect.poll(artifactOf, poll).not.toBe('');
    const artifactId = await artifactOf();
    const other = await clients.join(sigShort.wsUrl, await globexToken({ room, identity: 'g-agent', role: 'agent' }));
    expect((await other.client.request('artifactUrl', { artifactId })).error).toMatchObject({ code: 'NOT_FOUND' });

    const url = fromNode(await agent.evaluate((id) => (window as any).room.attachmentUrl(id) as Promise<string>, artifactId));
    expect((await fetch(url)).status).toBe(200);
    // One character of the signature changed (in the middle, where every bit of it counts).
    const at = url.length - 20;
    const tampered = url.slice(0, at) + (url[at] === 'A' ? 'B' : 'A') + url.slice(at + 1);
    const refused = await fetch(tampered);
    expect(refused.status).toBe(401);
    expect((await refused.json()).error.code).toBe('UNAUTHENTICATED');

    // Through the replica whose URLs last 2 s: fine at once, TOKEN_EXPIRED a little later.
    const second = await clients.join(sigShort.wsUrl, await demoToken({ room, identity: 'agent-2', role: 'agent' }));
    const { artifactUrl } = await second.client.request('artifactUrl', { artifactId });
    expect(artifactUrl.url).toMatch(/^\/v1\/artifacts\//);
    expect((await fetch(`${sigShort.url}${artifactUrl.url}`)).status).toBe(200);
    let expired: { status: number; code?: string } = { status: 0 };
    await expect
      .poll(
        async () => {
          const r = await fetch(`${sigShort.url}${artifactUrl.url}`);
          expired = { status: r.status, code: r.status === 200 ? undefined : (await r.json()).error?.code };
          return expired.status;
        },
        { timeout: 6_000, interval: 250 },
      )
      .toBe(401);
    expect(expired.code).toBe('TOKEN_EXPIRED');
  }, 60_000);

  it("takes a screenshot: the SDK captures a frame of the end user's screen share, and the agent gets a PNG", async () => {
    // The camera (published too) becomes a small canvas, so the picture's size tells which track it shows.
    await endUser.evaluate(async () => {
      const canvas = Object.assign(document.createElement('canvas'), { width: 320, height: 180 });
      const paint = () => {
        const g = canvas.getContext('2d')!;
        g.fillStyle = '#c0f';
        g.fillRect(0, 0, canvas.width, canvas.height);
      };
      paint();
      (window as any).cameraPainter = setInterval(paint, 100);
      await (window as any).room.publish({ camera: canvas.captureStream(10).getVideoTracks()[0] });
      await (window as any).room.publish({ screen: true });
    });
    const screen = await endUser.evaluate(() => {
      const { width, height } = (window as any).room.localTracks.get('screen').getSettings();
      return { width, height };
    });
    const camera = await endUser.evaluate(() => {
      const { width, height } = (window as any).room.localTracks.get('camera').getSettings();
      return { width, height };
    });

    const actionId = await ask('screenshot');
    await endUserClick(`.smart-action[data-action-id="${actionId}"] [data-testid="smart-action-screenshot"]`);
    const shown = await loadedImage('screenshot');
    expect(shown.actionId).toBe(actionId);
    const response = await fetch(fromNode(shown.src));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/png');
    const image = Buffer.from(await response.arrayBuffer());
    expect(await imageFormat(image)).toBe('png');
    // The size of the screen share's frames, not the camera's.
    const { width, height } = await sharp(image).metadata();
    expect(camera).toEqual({ width: 320, height: 180 });
    expect(screen.width).toBeGreaterThan(320);
    expect({ width, height }).toEqual(screen);
    expect(await agent.evaluate((id) => (window as any).room.smartActions.find((a: any) => a.actionId === id).contentType, actionId)).toBe('image/png');
  });
});
