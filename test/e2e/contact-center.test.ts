import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Kvm } from '@nats-io/kv';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsServer, allStarted, startRoutingProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { mintDeskToken, type DeskRole } from '../../services/signaling/src/auth/tokens.js';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { launchChromium, receiveSummaryScript, type ReceiveSummary } from '../support/browser.js';
import { voiceClip } from '../support/media.js';
import { people, profiles, queues, seedRoutingDirectory } from '../support/routingDirectory.js';
import { twoTenantEnv } from '../support/tokens.js';

/** Where the screenshots go, to be looked at (not compared): .tmp/screenshots/contact-center-*.png. */
const SHOTS = resolve('.tmp/screenshots');

/** The desk's billing and support (offers ringing 8 s) and its people; nobody serves `later`, whose contacts are offered a callback at once. */
const directory = {
  queues: [
    { ...queues.billing, contextFields: ['order'], offerTimeoutSeconds: 8 },
    { ...queues.support, offerTimeoutSeconds: 8 },
    { queueId: 'later', name: 'Later', priority: 3, requiredSkills: {}, serviceLevelSeconds: 30, maxWaitSeconds: 1, offerTimeoutSeconds: 8 },
    // Only dan serves it: the supervisor's case has a call of its own whatever the others do.
    { queueId: 'vip', name: 'VIP', priority: 4, requiredSkills: { vip: 1 }, serviceLevelSeconds: 20, offerTimeoutSeconds: 8 },
  ],
  profiles: [profiles.both, profiles.supportOnly, { profileId: 'vip-only', name: 'VIP', queues: [{ queueId: 'vip', priority: 1 }], capacity: { call: 1, chat: 3 } }],
  people: [people.ann, people.bob, people.cyd, { personId: 'dan', name: 'Dan', roles: ['agent'], skills: { vip: 5 }, profileId: 'vip-only' }, people.sue],
};

/**
 * The contact center's pages in Chromium over real processes (nats-server, an SFU, two routing
 * replicas, signaling): agents answer from the agent console, end users wait with their place
 * in the queue shown and are connected into a call, a supervisor watches, and a contact survives
 * the loss of the routing replica that owns the tenant. The cases run in order, as one shift.
 */
describe('the contact center pages in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  const routing: Array<Awaited<ReturnType<typeof startRoutingProcess>>> = [];
  let browser: Browser;
  let context: BrowserContext;
  const pages: Record<string, Page> = {};

  const deskToken = async (identity: string, role: DeskRole, name?: string) => (await mintDeskToken(DEMO_TENANT, { identity, role, ...(name ? { name } : {}) })).token;

  /** A page of the demo, signed in with a desk token in its hash. */
  async function open(key: string, path: string, identity: string, role: DeskRole, extra = '', name?: string): Promise<Page> {
    const page = await context.newPage();
    pages[key] = page;
    await page.goto(`${signaling.url}${path}#desk=${await deskToken(identity, role, name)}${extra}`);
    return page;
  }

  /** A locator's text or attribute now, null while it is not there. */
  const read = (locator: Locator) => locator.textContent({ timeout: 1_000 }).catch(() => null);
  const attribute = (locator: Locator, name: string) => locator.getAttribute(name, { timeout: 1_000 }).catch(() => null);

  /** Waits until a test id's text matches. */
  async function text(page: Page, testId: string, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
    let last = '';
    return waitFor(
      async () => {
        last = (await read(page.getByTestId(testId))) ?? '';
        return pattern.test(last) ? last : undefined;
      },
      timeoutMs,
      `${testId} to read ${pattern}`,
    ).catch(async (error: Error) => {
      const shown = await read(page.locator('#error:not([hidden]) .text'));
      throw new Error(`${error.message} (it reads "${last}"${shown ? `; the page shows "${shown}"` : ''})`);
    });
  }

  const visible = (page: Page, testId: string, timeout = 20_000) => page.getByTestId(testId).waitFor({ state: 'visible', timeout });
  const status = (page: Page, pattern: RegExp) => text(page, 'agent-status', pattern);
  const received = (page: Page) => page.evaluate(receiveSummaryScript);
  const find = (list: ReceiveSummary[], source: string) => list.find((r) => r.source === source);
  const inCall = (page: Page) => page.waitForFunction(() => document.body.dataset.state === 'connected', undefined, { timeout: 30_000 });

  /** What a page receives from the participant of an identity in its room: camera frames decoded and microphone packets. */
  const receivedFrom = async (page: Page, identity: string) => {
    const participantId = await page.evaluate(
      (who) => [...((window as any).room?.participants?.values() ?? [])].find((p: { identity: string }) => p.identity === who)?.id as string | undefined,
      identity,
    );
    const list = (await received(page)).filter((r) => participantId !== undefined && r.participantId === participantId);
    return { frames: find(list, 'camera')?.framesDecoded ?? 0, packets: find(list, 'microphone')?.packetsReceived ?? 0 };
  };
  /** Camera frames and microphone packets from one identity, growing past a baseline. */
  const mediaFrom = (page: Page, identity: string, what: string, since = { frames: 0, packets: 0 }) =>
    waitFor(
      async () => {
        const now = await receivedFrom(page, identity);
        return now.frames > since.frames + 10 && now.packets > since.packets + 20 ? now : undefined;
      },
      30_000,
      what,
    );

  /** Camera frames decoded and microphone packets received, from the other side. */
  const mediaFlows = (page: Page, what: string) =>
    waitFor(
      async () => {
        const list = await received(page);
        return (find(list, 'camera')?.framesDecoded ?? 0) > 10 && (find(list, 'microphone')?.packetsReceived ?? 0) > 20 ? list : undefined;
      },
      30_000,
      what,
    );

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    nats = await NatsServer.start();
    await seedRoutingDirectory(nats, directory);
    const routingEnv = { ...twoTenantEnv, ROUTING_TICK_MS: '100', ROUTING_OFFER_TIMEOUT_SECONDS: '8', ROUTING_LEASE_POLL_MS: '300' };
    // Which replica comes to own the tenant is read from the lease KV when it matters (ownerOf).
    await allStarted([
      startSfuProcess({ natsUrl: nats.url }).then((p) => (sfu = p)),
      ...['routing-a', 'routing-b'].map((replicaId) => startRoutingProcess({ natsUrl: nats.url, replicaId, env: routingEnv }).then((p) => routing.push(p))),
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }).then((p) => (signaling = p)),
      launchChromium([`--use-file-for-fake-audio-capture=${voiceClip()}`]).then((b) => (browser = b)),
    ]);
    context = await browser.newContext();
    await context.addInitScript({ content: 'globalThis.__name = (f) => f;' });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await signaling?.stop();
    for (const replica of routing) await replica.stop().catch(() => undefined);
    await sfu?.stop();
    await nats?.stop();
  });

  it('rings the longest-idle agent, moves on when she declines, and connects the end user with the agent who accepts, media both ways', async () => {
    const ann = await open('ann', '/agent', 'ann', 'agent');
    await status(ann, /Away|Offline/);
    await ann.getByTestId('status-available').click();
    await status(ann, /^Available$/);
    const bob = await open('bob', '/agent', 'bob', 'agent');
    await status(bob, /Away|Offline/);
    await bob.getByTestId('status-available').click();
    await status(bob, /^Available$/);

    const eve = await open('eve', '/end-user', 'eve', 'end_user', '&queue=billing&channel=video&context.order=A-17&context.secret=hidden', 'Eve');
    // Ann went available first: she rings, with what the queue lets agents see.
    await visible(ann, 'offer');
    expect(await ann.getByTestId('offer-queue').textContent()).toBe('billing');
    expect(await ann.getByTestId('offer-channel').textContent()).toBe('Video');
    expect(await ann.getByTestId('offer-name').textContent()).toBe('Eve');
    const contextText = await ann.getByTestId('offer-context').textContent();
    expect(contextText).toContain('A-17');
    expect(contextText).not.toContain('hidden');
    await text(ann, 'offer-countdown', /^[1-8] s$/);
    await ann.screenshot({ path: join(SHOTS, 'contact-center-offer.png') });
    expect(await bob.getByTestId('offer').isVisible()).toBe(false);
    await text(eve, 'support-status', /agent is being found/);

    await ann.getByTestId('offer-decline').click();
    await ann.getByTestId('offer').waitFor({ state: 'hidden', timeout: 10_000 });
    await visible(bob, 'offer');
    await bob.getByTestId('offer-accept').click();
    await bob.getByTestId('offer').waitFor({ state: 'hidden', timeout: 10_000 });

    await Promise.all([inCall(bob), inCall(eve)]);
    await text(eve, 'support-status', /agent is with you/);
    await status(bob, /^Busy$/);
    await visible(bob, 'contact');
    expect(await bob.getByTestId('contact-queue').textContent()).toBe('billing');
    // One room: the contact's.
    const rooms = await Promise.all([bob, eve].map((p) => p.evaluate(() => (window as any).room.name as string)));
    expect(rooms[0]).toMatch(/^cc_ct_/);
    expect(rooms[1]).toBe(rooms[0]);
    // The customer's camera and voice at the agent, the agent's at the customer.
    await mediaFlows(bob, "the end user's camera and microphone at the agent");
    await mediaFlows(eve, "the agent's camera and microphone at the end user");
    await eve.waitForSelector('#remote video[data-source="camera"]');
    await bob.waitForSelector('#stage video.main[data-source="camera"]');
    await bob.screenshot({ path: join(SHOTS, 'contact-center-agent-call.png') });
  }, 120_000);

  it('counts down the queue positions while no agent is free', async () => {
    // Bob is busy with eve; ann goes away.
    const ann = pages.ann!;
    await ann.getByTestId('away-reason').fill('lunch');
    await ann.getByTestId('status-away').click();
    await status(ann, /^Away · lunch$/);

    const first = await open('u1', '/end-user', 'u1', 'end_user', '&queue=billing&channel=video');
    await text(first, 'support-status', /You are number 1 in the queue/);
    const second = await open('u2', '/end-user', 'u2', 'end_user');
    // No queue in the hash: the end user picks one.
    await visible(second, 'support-form');
    await second.getByTestId('support-queue').fill('billing');
    await second.getByTestId('support-channel').selectOption('video');
    await second.getByTestId('support-start').click();
    await text(second, 'support-status', /You are number 2 in the queue/);
    await second.screenshot({ path: join(SHOTS, 'contact-center-queued.png') });
    await visible(first, 'support-leave');

    // The first gives up: the second moves up and is told.
    await first.getByTestId('support-leave').click();
    await text(first, 'support-status', /You left the queue/);
    await text(second, 'support-status', /You are number 1 in the queue/);
    expect(await second.getByTestId('support').getAttribute('data-position')).toBe('1');
  }, 60_000);

  it("shows the supervisor the queues and the agents' states", async () => {
    const sue = await open('sue', '/supervisor', 'sue', 'supervisor');
    const billing = sue.locator('[data-testid="queues"] tr[data-queue="billing"]');
    await waitFor(async () => (await read(billing.locator('[data-field="waiting"]'))) === '1', 20_000, 'billing with one waiting');
    expect(await billing.locator('[data-field="name"]').textContent()).toBe('Billing');
    expect(await billing.locator('[data-field="connected"]').textContent()).toBe('1');
    expect(await billing.locator('[data-field="abandon-rate"]').textContent()).toMatch(/^\d+%$/);
    expect(await sue.locator('[data-testid="queues"] tr[data-queue="support"] [data-field="waiting"]').textContent()).toBe('0');
    const agent = (id: string) => sue.locator(`[data-testid="agents"] tr[data-agent="${id}"]`);
    await waitFor(async () => (await attribute(agent('ann'), 'data-status')) === 'away', 20_000, 'ann away');
    expect(await agent('ann').locator('[data-field="status"]').textContent()).toBe('Away · lunch');
    expect(await agent('bob').getAttribute('data-status')).toBe('busy');
    expect(await agent('bob').locator('[data-field="contacts"]').textContent()).toBe('1');
    expect(await agent('bob').locator('[data-field="name"]').textContent()).toBe('Bob');
    await sue.screenshot({ path: join(SHOTS, 'contact-center-supervisor.png') });

    // Live, from the desk's events: a contact waiting in support shows.
    const third = await open('u3', '/end-user', 'u3', 'end_user', '&queue=support&channel=voice');
    await text(third, 'support-status', /You are number 1 in the queue/);
    const supportWaiting = sue.locator('[data-testid="queues"] tr[data-queue="support"] [data-field="waiting"]');
    await waitFor(async () => (await read(supportWaiting)) === '1', 20_000, 'support with one waiting');
    await third.getByTestId('support-leave').click();
    await text(third, 'support-status', /You left the queue/);
  }, 60_000);

  it('keeps a waiting contact through the loss of the routing replica that owns the tenant', async () => {
    const second = pages.u2!;
    const ann = pages.ann!;
    const holder = await waitFor(ownerOf, 10_000, 'a replica owns the tenant');
    const survivor = routing.find((r) => r.replicaId !== holder)!;
    await routing.find((r) => r.replicaId === holder)!.stop('SIGKILL');
    await waitFor(async () => (await ownerOf()) === survivor.replicaId, 30_000, 'the other replica owns the tenant');

    // The contact still waits; an agent becomes available and is offered it.
    await text(second, 'support-status', /You are number 1 in the queue/);
    // (A command sent while the survivor settles in may be refused: it is asked again.)
    await waitFor(
      async () => {
        if (await ann.getByTestId('offer').isVisible()) return true;
        if ((await ann.getByTestId('agent-status').textContent()) !== 'Available') await ann.getByTestId('status-available').click();
        return false;
      },
      30_000,
      'ann offered the waiting contact after the takeover',
    );
    await ann.getByTestId('offer-accept').click();
    await Promise.all([inCall(ann), inCall(second)]);
    const rooms = await Promise.all([ann, second].map((p) => p.evaluate(() => (window as any).room.name as string)));
    expect(rooms[1]).toBe(rooms[0]);
    await mediaFlows(ann, "the end user's camera and microphone at ann");
  }, 90_000);

  it('ends the contact from the console, tells the end user, and wraps up into the next status', async () => {
    const bob = pages.bob!;
    const eve = pages.eve!;
    await bob.getByTestId('contact-end').click();
    await text(eve, 'support-status', /The call has ended/);
    await eve.waitForFunction(() => document.body.dataset.state === 'disconnected', undefined, { timeout: 20_000 });
    await bob.waitForFunction(() => document.body.dataset.state === 'disconnected', undefined, { timeout: 20_000 });
    await visible(bob, 'wrapup');
    await status(bob, /^Wrapping up$/);
    await bob.screenshot({ path: join(SHOTS, 'contact-center-wrapup.png') });
    await bob.getByTestId('wrapup-disposition').fill('resolved');
    await bob.getByTestId('wrapup-notes').fill('refund issued');
    await bob.getByTestId('wrapup-next').selectOption('away');
    await bob.getByTestId('wrapup-reason').fill('break');
    await bob.getByTestId('wrapup-submit').click();
    await status(bob, /^Away · break$/);
    expect(await bob.getByTestId('wrapup').isVisible()).toBe(false);
    expect(await bob.getByTestId('contact').isVisible()).toBe(false);
  }, 60_000);

  it('hands a contact over cold to a named agent, who comes into the same call', async () => {
    const ann = pages.ann!;
    const bob = pages.bob!;
    const second = pages.u2!;
    await bob.getByTestId('status-available').click();
    await status(bob, /^Available$/);
    const room = await second.evaluate(() => (window as any).room.name as string);
    // What the end user is told, in order (the hand-over's own text lasts only until bob accepts).
    await second.evaluate(() => {
      const el = document.querySelector('[data-testid="support-status"]')!;
      const told: string[] = [];
      (window as any).told = told;
      new MutationObserver(() => told.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
    });

    await ann.getByTestId('transfer-kind').selectOption('agent');
    await ann.getByTestId('transfer-target').fill('bob');
    expect(await ann.getByTestId('transfer-warm').isChecked()).toBe(false);
    await ann.getByTestId('transfer-submit').click();
    await visible(bob, 'offer');
    expect(await bob.getByTestId('offer-transfer').textContent()).toBe('Transferred by ann');
    await bob.getByTestId('offer-accept').click();
    // Cold: ann is out of the call; the end user stays in it, told of the hand-over, and bob comes in.
    await ann.waitForFunction(() => document.body.dataset.state === 'disconnected', undefined, { timeout: 20_000 });
    await inCall(bob);
    await text(second, 'support-status', /agent is with you/);
    const told = await second.evaluate(() => (window as any).told as string[]);
    expect(told.some((t) => /being transferred/.test(t))).toBe(true);
    expect(await second.evaluate(() => document.body.dataset.state)).toBe('connected');
    expect(await bob.evaluate(() => (window as any).room.name as string)).toBe(room);
    expect(await second.evaluate(() => (window as any).room.name as string)).toBe(room);
    await mediaFlows(bob, "the end user's camera and microphone at bob after the transfer");
    await status(bob, /^Busy$/);
  }, 60_000);

  it('hands a contact over warm to a third agent: both agents in the call until the first completes the hand-over and wraps up', async () => {
    const bob = pages.bob!;
    const second = pages.u2!;
    const cyd = await open('cyd', '/agent', 'cyd', 'agent');
    await status(cyd, /Away|Offline/);
    await cyd.getByTestId('status-available').click();
    await status(cyd, /^Available$/);
    const room = await second.evaluate(() => (window as any).room.name as string);

    // Bob transfers warm to cyd (who does not serve billing: named, she is offered it all the same).
    await bob.getByTestId('transfer-kind').selectOption('agent');
    await bob.getByTestId('transfer-target').fill('cyd');
    await bob.getByTestId('transfer-warm').check();
    await bob.getByTestId('transfer-submit').click();
    await visible(bob, 'handover');
    // He keeps the contact: busy, in the call, no longer his to transfer or end.
    await status(bob, /^Busy$/);
    expect(await bob.getByTestId('transfer-form').isVisible()).toBe(false);
    expect(await bob.getByTestId('contact-end').isVisible()).toBe(false);
    expect(await bob.evaluate(() => document.body.dataset.state)).toBe('connected');

    await visible(cyd, 'offer');
    expect(await cyd.getByTestId('offer-transfer').textContent()).toBe('Transferred by bob');
    await cyd.getByTestId('offer-accept').click();
    await inCall(cyd);
    expect(await cyd.evaluate(() => (window as any).room.name as string)).toBe(room);
    await text(bob, 'handover-status', /^Handing over to cyd$/);
    await text(second, 'support-status', /agent is with you/);
    // Three in the call: the end user and cyd hear and see each other, and bob sees cyd.
    await mediaFrom(cyd, 'u2', "the end user's camera and microphone at cyd");
    await mediaFrom(second, 'cyd', "cyd's camera and microphone at the end user");
    await mediaFrom(bob, 'cyd', "cyd's camera and microphone at bob");
    await bob.screenshot({ path: join(SHOTS, 'contact-center-warm-transfer.png') });

    // Bob completes the hand-over: out of the call, into his wrap-up; cyd and the end user stay.
    await bob.getByTestId('handover-complete').click();
    await bob.waitForFunction(() => document.body.dataset.state === 'disconnected', undefined, { timeout: 20_000 });
    await visible(bob, 'wrapup');
    await status(bob, /^Wrapping up$/);
    await bob.getByTestId('wrapup-disposition').fill('handed over');
    await bob.getByTestId('wrapup-submit').click();
    await status(bob, /^Available$/);
    expect(await bob.getByTestId('contact').isVisible()).toBe(false);
    expect(await second.evaluate(() => document.body.dataset.state)).toBe('connected');
    expect(await cyd.evaluate(() => document.body.dataset.state)).toBe('connected');
    await status(cyd, /^Busy$/);
    const since = await receivedFrom(second, 'cyd');
    await mediaFrom(second, 'cyd', "cyd's camera and microphone at the end user after bob left", since);
  }, 90_000);

  it('offers a callback when nobody can take the contact in time, keeping the place until the end user leaves', async () => {
    const waiting = await open('u4', '/end-user', 'u4', 'end_user', '&queue=later&channel=voice');
    await text(waiting, 'support-status', /call you back/);
    expect(await waiting.getByTestId('support').getAttribute('data-phase')).toBe('callback');
    await waiting.screenshot({ path: join(SHOTS, 'contact-center-callback.png') });
    await waiting.getByTestId('support-leave').click();
    await text(waiting, 'support-status', /You left the queue/);
    // The form is back, to ask again.
    await visible(waiting, 'support-form');
  }, 30_000);

  it('lets a supervisor monitor a call unseen, whisper to the agent alone, then barge in', async () => {
    const dan = await open('dan', '/agent', 'dan', 'agent');
    await status(dan, /Away|Offline/);
    await dan.getByTestId('status-available').click();
    await status(dan, /^Available$/);
    const vic = await open('vic', '/end-user', 'vic', 'end_user', '&queue=vip&channel=video', 'Vic');
    await visible(dan, 'offer');
    await dan.getByTestId('offer-accept').click();
    await Promise.all([inCall(dan), inCall(vic)]);
    await mediaFlows(vic, "dan's camera and microphone at vic");

    const sue = pages.sue ?? (await open('sue', '/supervisor', 'sue', 'supervisor'));
    const danRow = sue.locator('[data-testid="agents"] tr[data-agent="dan"]');
    const superviseIn = async (mode: string) => {
      await waitFor(async () => (await danRow.getByTestId(`supervise-${mode}`).count()) === 1, 20_000, `dan's call offered to ${mode}`);
      await danRow.getByTestId(`supervise-${mode}`).click();
      const label = { monitor: 'Monitor', whisper: 'Whisper', barge: 'Barge in' }[mode];
      await sue.waitForFunction((l) => document.querySelector('[data-testid="watch-mode"]')?.textContent === l && (window as any).room?.state === 'connected', label, { timeout: 30_000 });
    };
    /** Who a page's room lists, by identity. */
    const listed = (page: Page) => page.evaluate(() => [...((window as any).room.participants as Map<string, { identity: string }>).values()].map((p) => p.identity).sort());
    /** The sound a page has played of the others' audio so far, by identity. */
    const heard = async (page: Page) => {
      const byId = await page.evaluate(() => Object.fromEntries([...((window as any).room.participants as Map<string, { identity: string }>).entries()].map(([id, p]) => [id, p.identity])));
      const energy: Record<string, number> = {};
      for (const r of await received(page)) if (r.kind === 'audio') energy[byId[r.participantId] ?? r.participantId] = (energy[byId[r.participantId] ?? r.participantId] ?? 0) + r.audioEnergy;
      return energy;
    };

    // Monitoring: sue sees and hears both; neither is told of her, and she sends nothing.
    await superviseIn('monitor');
    await mediaFlows(sue, "the call's camera and microphone at the monitoring supervisor");
    expect(await listed(sue)).toEqual(['dan', 'vic']);
    expect(await listed(vic)).toEqual(['dan']);
    expect(await listed(dan)).toEqual(['vic']);
    expect((await received(vic)).map((r) => r.participantId)).not.toContain(await sue.evaluate(() => (window as any).room.localParticipant.id));
    await sue.screenshot({ path: join(SHOTS, 'contact-center-monitor.png') });

    // Whispering: dan hears sue; vic is never told of her and hears nothing while dan is silent.
    await superviseIn('whisper');
    const whisperer = await sue.evaluate(() => (window as any).room.localParticipant.id as string);
    await waitFor(async () => (await listed(dan)).includes('sue'), 20_000, 'dan sees the whispering supervisor');
    await dan.evaluate(() => (window as any).room.setMicrophoneEnabled(false));
    const [danBefore, vicBefore] = [await heard(dan), await heard(vic)];
    await new Promise((r) => setTimeout(r, 3_000));
    const [danAfter, vicAfter] = [await heard(dan), await heard(vic)];
    // The clip's voice over 3 s comes to a few 1e-4; silence, or nothing received, to none.
    expect((danAfter.sue ?? 0) - (danBefore.sue ?? 0)).toBeGreaterThan(1e-5);
    const vicHeard = Object.keys(vicAfter).reduce((sum, who) => sum + (vicAfter[who]! - (vicBefore[who] ?? 0)), 0);
    expect(vicHeard).toBeLessThan(1e-6);
    expect(await listed(vic)).toEqual(['dan']);
    expect((await received(vic)).map((r) => r.participantId)).not.toContain(whisperer);
    await dan.evaluate(() => (window as any).room.setMicrophoneEnabled(true));

    // Barging in: sue is in the call for everyone, and vic hears her.
    await superviseIn('barge');
    await waitFor(async () => (await listed(vic)).includes('sue'), 20_000, 'vic sees the supervisor who barged in');
    await waitFor(async () => ((await heard(vic)).sue ?? 0) > 1e-5, 20_000, 'vic hears the supervisor who barged in');

    await sue.getByTestId('watch-leave').click();
    await waitFor(async () => !(await listed(vic)).includes('sue'), 20_000, 'the supervisor gone from the call');
    await dan.getByTestId('contact-end').click();
    await visible(dan, 'wrapup');
    await dan.getByTestId('wrapup-submit').click();
  }, 150_000);

  /** The replica holding the demo tenant's lease, read from the KV. */
  async function ownerOf(): Promise<string | undefined> {
    const nc = await nats.connect();
    try {
      const kv = await new Kvm(nc).open('gateway_routing_leases');
      const entry = await kv.get(DEMO_TENANT.name);
      if (entry?.operation !== 'PUT') return undefined;
      return (entry.json() as { replicaId: string }).replicaId;
    } finally {
      await nc.close();
    }
  }
});
