import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { demoToken } from '../support/tokens.js';
import { readTranscripts } from '../support/events.js';

/** What a page's room holds of the chat, read through the SDK. */
interface MessageView {
  messageId: string;
  identity: string;
  role: string;
  text: string;
  isLocal: boolean;
  redacted: boolean;
  redactedKinds: string[];
}

const CARD_MESSAGE = 'my card is 4111 1111 1111 1111';
const REPLY = 'Thanks, I can see it. One moment please.';
const poll = { timeout: 15_000, interval: 50 };

/**
 * Chat in Chromium through the demo pages, against real processes: nats-server (JetStream), an
 * SFU and two signaling replicas. The end user (replica 1) writes a card number, the agent
 * (replica 2) sees it redacted and answers, an agent joining later gets the conversation as
 * history, the agent redacts the customer's message from its page, the conversation survives a
 * cut connection, and the panel shows the size and rate limits inline.
 */
describe('chat between an end user and an agent in Chromium', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  let context: BrowserContext;
  let rooms = 0;

  /** The chat panel as shown: one entry per `.chat-message`, in page order. */
  const panel = (page: Page) =>
    page.$$eval('#chat-log .chat-message', (items) =>
      items.map((li) => ({
        id: (li as HTMLElement).dataset.messageId ?? '',
        role: (li as HTMLElement).dataset.role ?? '',
        own: li.classList.contains('own'),
        redacted: (li as HTMLElement).dataset.redacted === '1',
        sender: li.querySelector('.chat-sender')?.textContent ?? '',
        text: li.querySelector('.chat-text')?.textContent ?? '',
        time: li.querySelector('time')?.textContent ?? '',
        canRedact: !!li.querySelector('[data-testid="chat-redact"]'),
      })),
    );
  const messagesOf = (page: Page, variable = 'room') =>
    page.evaluate(
      (v) =>
        ((window as any)[v]?.messages ?? []).map((m: MessageView) => ({
          messageId: m.messageId,
          identity: m.identity,
          role: m.role,
          text: m.text,
          isLocal: m.isLocal,
          redacted: m.redacted,
          redactedKinds: [...m.redactedKinds],
        })) as MessageView[],
      variable,
    );

  async function send(page: Page, text: string): Promise<void> {
    await page.fill('#chat-input', text);
    await page.press('#chat-input', 'Enter');
  }

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    // A tight chat budget (1 a second, bursts of 6), so the rate limit shows within a few sends.
    const env = { SIGNALING_CHAT_RATE_PER_SECOND: '1', SIGNALING_CHAT_RATE_BURST: '6' };
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
    browser = await launchChromium();
    context = await browser.newContext();
    // page.evaluate gets functions as compiled for the test, where named ones call esbuild's __name.
    await context.addInitScript({ content: 'globalThis.__name = (f) => f;' });
  }, 90_000);

  // Each test has its own room and pages.
  afterEach(async () => {
    for (const page of context.pages()) await page.close();
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  /** A new room: the end user's page on replica 1 and the agent's on replica 2, both connected, the chat ready. */
  async function openChat() {
    const room = `chat-e2e-${Date.now()}-${++rooms}`;
    const endUser = await context.newPage();
    await endUser.goto(`${sig1.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    const agent = await context.newPage();
    await agent.goto(`${sig2.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    for (const page of [endUser, agent]) await page.waitForFunction(() => document.body.dataset.state === 'connected');
    await expect.poll(() => endUser.isEnabled('#chat-input'), poll).toBe(true);
    return { room, endUser, agent };
  }

  /** The end user writes the card number and the agent replies; both pages show both. */
  async function exchange(endUser: Page, agent: Page): Promise<void> {
    await send(endUser, CARD_MESSAGE);
    await expect.poll(async () => (await panel(agent)).map((m) => m.text), poll).toEqual(['my card is [CARD]']);
    await agent.fill('#chat-input', REPLY);
    await agent.click('#chat-send');
    for (const page of [endUser, agent]) await expect.poll(async () => (await panel(page)).map((m) => m.text), poll).toEqual(['my card is [CARD]', REPLY]);
  }

  /** A second agent joining through the SDK on its own page (`window.third`), noting the chat events it hears. */
  async function joinObserver(room: string): Promise<Page> {
    const observer = await context.newPage();
    await observer.goto(`${sig1.url}/agent`);
    const token = await demoToken({ room, identity: 'agent-2', role: 'agent' });
    await observer.evaluate(
      async ({ url, token }) => {
        const w = window as any;
        w.third = await w.Gateway.connect({ url, token });
        w.thirdEvents = [];
        w.third.on('message', (m: { messageId: string }) => w.thirdEvents.push(`message:${m.messageId}`));
        w.third.on('messageRedacted', (m: { messageId: string }) => w.thirdEvents.push(`redacted:${m.messageId}`));
      },
      { url: sig1.url, token },
    );
    return observer;
  }

  /** The agent redacts the customer's message from its page; the end user's page shows it redacted. */
  async function redactCustomerMessage(endUser: Page, agent: Page): Promise<string> {
    const [customerMessage] = await panel(agent);
    await agent.click(`#chat-log .chat-message[data-message-id="${customerMessage!.id}"] [data-testid="chat-redact"]`);
    await expect.poll(async () => (await panel(endUser))[0]?.redacted, poll).toBe(true);
    return customerMessage!.id;
  }

  it("shows the end user's message redacted at the agent, and the agent's reply at the end user", async () => {
    const { endUser, agent } = await openChat();

    await send(endUser, CARD_MESSAGE);
    // Sent: the input is cleared and the message shows on the right, as the server stored it.
    await expect.poll(() => endUser.inputValue('#chat-input'), poll).toBe('');
    await expect.poll(() => panel(endUser), poll).toEqual([expect.objectContaining({ own: true, sender: 'You', role: 'end_user', text: 'my card is [CARD]' })]);

    await expect.poll(() => panel(agent), poll).toEqual([expect.objectContaining({ own: false, sender: 'customer-1', role: 'end_user', text: 'my card is [CARD]', canRedact: true })]);
    const [atAgent] = await panel(agent);
    expect(atAgent!.time).toMatch(/\d{1,2}[:.]\d{2}/);
    expect(await agent.textContent('#chat-log')).not.toMatch(/4111|1111/);
    expect(await messagesOf(agent)).toEqual([
      { messageId: atAgent!.id, identity: 'customer-1', role: 'end_user', text: 'my card is [CARD]', isLocal: false, redacted: false, redactedKinds: ['card'] },
    ]);

    await agent.fill('#chat-input', REPLY);
    await agent.click('#chat-send');
    await expect
      .poll(() => panel(endUser), poll)
      .toEqual([expect.objectContaining({ own: true, text: 'my card is [CARD]' }), expect.objectContaining({ own: false, sender: 'agent-1', role: 'agent', text: REPLY, canRedact: false })]);
    // The agent's own reply is on its right, and its own messages have no Redact action.
    await expect.poll(() => panel(agent), poll).toEqual([expect.objectContaining({ text: 'my card is [CARD]' }), expect.objectContaining({ own: true, text: REPLY, canRedact: false })]);
    // Both pages agree on the order and the ids, each message once.
    expect((await panel(endUser)).map((m) => m.id)).toEqual((await panel(agent)).map((m) => m.id));
  });

  it('gives an agent who joins later the conversation as history', async () => {
    const { room, endUser, agent } = await openChat();
    await exchange(endUser, agent);
    const observer = await joinObserver(room);
    await expect
      .poll(() => messagesOf(observer, 'third'), poll)
      .toEqual([
        expect.objectContaining({ identity: 'customer-1', role: 'end_user', text: 'my card is [CARD]', isLocal: false, redacted: false }),
        expect.objectContaining({ identity: 'agent-1', role: 'agent', text: REPLY, isLocal: false }),
      ]);
    const ids = (await messagesOf(observer, 'third')).map((m) => m.messageId);
    // The history is announced once, in order, like live messages.
    await expect.poll(() => observer.evaluate(() => (window as any).thirdEvents), poll).toEqual(ids.map((id) => `message:${id}`));
  });

  it("lets the agent redact the customer's message from its page, for everyone", async () => {
    const { room, endUser, agent } = await openChat();
    await exchange(endUser, agent);
    const observer = await joinObserver(room);
    await expect.poll(async () => (await messagesOf(observer, 'third')).length, poll).toBe(2);
    const [customerMessage] = await panel(agent);
    await agent.click(`#chat-log .chat-message[data-message-id="${customerMessage!.id}"] [data-testid="chat-redact"]`);

    for (const page of [endUser, agent]) {
      await expect.poll(async () => (await panel(page))[0], poll).toEqual(expect.objectContaining({ id: customerMessage!.id, redacted: true, text: 'Message redacted', canRedact: false }));
      expect(await page.textContent('#chat-log')).not.toContain('[CARD]');
    }
    expect((await panel(endUser))[1]).toMatchObject({ text: REPLY, redacted: false });
    await expect.poll(async () => (await messagesOf(observer, 'third'))[0], poll).toEqual(expect.objectContaining({ messageId: customerMessage!.id, text: '', redacted: true, redactedKinds: [] }));
    expect(await observer.evaluate(() => (window as any).thirdEvents.filter((e: string) => e.startsWith('redacted:')))).toEqual([`redacted:${customerMessage!.id}`]);
    expect((await messagesOf(endUser))[0]).toMatchObject({ text: '', redacted: true });
  });

  it('keeps the conversation whole across a cut connection: what was sent meanwhile arrives once', async () => {
    const { endUser, agent } = await openChat();
    await exchange(endUser, agent);
    await endUser.evaluate(() => {
      const w = window as any;
      w.chatEvents = [];
      w.connectionEvents = [];
      w.room.on('message', (m: { messageId: string }) => w.chatEvents.push(m.messageId));
      for (const e of ['reconnecting', 'reconnected']) w.room.on(e, () => w.connectionEvents.push(e));
    });
    const before = (await panel(endUser)).length;

    // The end user's socket drops; the agent writes meanwhile and the end user sends one too,
    // which waits for the connection.
    const sentWhileAway = endUser.evaluate(async () => {
      const w = window as any;
      w.room._debugDropSocket();
      return (await w.room.sendMessage('are you still there?')).messageId as string;
    });
    await agent.evaluate(() => (window as any).room.sendMessage('yes, still here'));
    const ownId = await sentWhileAway;
    await expect.poll(() => endUser.evaluate(() => (window as any).connectionEvents), poll).toEqual(['reconnecting', 'reconnected']);

    await expect
      .poll(
        async () =>
          (await panel(endUser))
            .map((m) => m.text)
            .slice(before)
            .sort(),
        poll,
      )
      .toEqual(['are you still there?', 'yes, still here']);
    // Each new message once, in the page and among the events, and in the same order as the agent's page.
    const events = await endUser.evaluate(() => (window as any).chatEvents as string[]);
    expect(new Set(events).size).toBe(events.length);
    expect(events).toHaveLength(2);
    expect(events).toContain(ownId);
    await expect.poll(async () => (await panel(agent)).map((m) => m.id), poll).toEqual((await panel(endUser)).map((m) => m.id));
    const ids = (await messagesOf(endUser)).map((m) => m.messageId);
    expect([...ids].sort()).toEqual(ids);
  });

  it('shows a message over the size limit and a flood as errors under the log, keeping the text', async () => {
    const { endUser } = await openChat();
    const tooLong = 'x'.repeat(4_001);
    await send(endUser, tooLong);
    await expect.poll(() => endUser.getAttribute('#chat-error', 'data-code'), poll).toBe('MESSAGE_TOO_LARGE');
    expect(await endUser.isVisible('#chat-error')).toBe(true);
    expect(await endUser.textContent('#chat-error')).toContain('too long');
    expect(await endUser.inputValue('#chat-input')).toBe(tooLong);
    const count = (await panel(endUser)).length;

    // Typing clears it; then send until the chat budget runs out. Each attempt goes out right behind a
    // burst from the same page, so a slow machine (a round trip over a second refills the budget) still
    // reaches the limit.
    let code: string | null = null;
    for (let i = 0; i < 12 && code !== 'RATE_LIMITED'; i++) {
      await endUser.evaluate((text) => {
        for (let n = 0; n < 8; n++) (window as any).room.sendMessage(`burst ${n}`).catch(() => undefined);
        const input = document.getElementById('chat-input') as HTMLInputElement;
        input.value = text;
        input.dispatchEvent(new Event('input'));
        (document.getElementById('chat-form') as HTMLFormElement).requestSubmit();
      }, `message ${i}`);
      await expect.poll(async () => (await endUser.inputValue('#chat-input')) === '' || (await endUser.isVisible('#chat-error')), poll).toBe(true);
      code = await endUser.getAttribute('#chat-error', 'data-code');
      if (code === 'MESSAGE_TOO_LARGE') throw new Error('the size error was not cleared by typing');
    }
    expect(code).toBe('RATE_LIMITED');
    expect(await endUser.textContent('#chat-error')).toMatch(/too quickly\. Try again in \d+ s\./);
    expect(await endUser.isDisabled('#chat-send')).toBe(true);
    expect(await endUser.inputValue('#chat-input')).toMatch(/^message \d+$/);
    // Neither refused message reached the log; the send button comes back once the budget refills.
    expect((await panel(endUser)).map((m) => m.text)).not.toContain(tooLong);
    await expect.poll(() => endUser.isEnabled('#chat-send'), poll).toBe(true);
    expect((await panel(endUser)).length).toBeGreaterThan(count);
  });

  it('refuses a redaction by the end user with PERMISSION_DENIED', async () => {
    const { endUser, agent } = await openChat();
    await exchange(endUser, agent);
    // The agent's reply (one already redacted would be settled without asking the server).
    const reply = (await messagesOf(endUser)).find((m) => m.text === REPLY)!;
    const code = await endUser.evaluate(
      (id) =>
        (window as any).room.redactMessage(id).then(
          () => 'ok',
          (e: { code: string }) => e.code,
        ),
      reply.messageId,
    );
    expect(code).toBe('PERMISSION_DENIED');
    // And the end user's page offers no Redact action at all.
    expect((await panel(endUser)).some((m) => m.canRedact)).toBe(false);
  });

  it('stores the transcript redacted when everyone has left', async () => {
    const nc = await nats.connect();
    try {
      const { room, endUser, agent } = await openChat();
      await exchange(endUser, agent);
      const observer = await joinObserver(room);
      await redactCustomerMessage(endUser, agent);
      const transcripts = await readTranscripts(nc);
      // One more card number, sent once the chat budget allows.
      await expect
        .poll(
          () =>
            endUser.evaluate(() =>
              (window as any).room.sendMessage('the other card: 5555-5555-5555-4444').then(
                () => 'sent',
                (e: { code: string }) => e.code,
              ),
            ),
          { timeout: 15_000, interval: 1_000 },
        )
        .toBe('sent');
      await observer.evaluate(() => (window as any).third.leave());
      for (const page of [endUser, agent]) await page.evaluate(() => (window as any).room.leave());
      const ready = await transcripts.forRoom(room, 15_000);
      const artifacts = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
      const text = (await artifacts.get('demo', ready.artifacts.find((a) => a.contentType === 'text/plain')!.artifactId)).data.toString();
      // The card message was redacted by the agent afterwards: neither its digits nor its placeholder remain.
      expect(text).not.toMatch(/4111/);
      expect(text).toContain('customer-1 (end_user): [message redacted]');
      expect(text).toContain(`agent-1 (agent): ${REPLY}`);
      expect(text).toContain('customer-1 (end_user): the other card: [CARD]');
      expect(text).not.toMatch(/5555/);
      const json = JSON.parse((await artifacts.get('demo', ready.artifacts.find((a) => a.contentType === 'application/json')!.artifactId)).data.toString());
      expect(json.messages.length).toBe(ready.messageCount);
      expect(JSON.stringify(json)).not.toMatch(/4111/);
    } finally {
      await nc.close();
    }
  });
});
