import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { waitFor } from '@gateway/testing';
import { mintJoinToken } from '../../services/signaling/src/auth/tokens.js';
import { launchChromium, receiveSummaryScript, type ReceiveSummary } from '../support/browser.js';
import { cni, kubectl, pods, portForward, tenantCredentials } from './kube.js';

/**
 * Gateway on a real cluster (kind, with Calico or Cilium: scripts/kind/up.sh, docs/cluster-tests.md):
 * a call between two Chromium pages on this machine, media straight to the SFU on its media node,
 * through the chart's network policies for that CNI; then the operations that must not cut it: an
 * SFU rollout (the old pod drains while the call goes on) and a NATS rolling restart.
 */
describe(`Gateway on kind with ${cni}`, { timeout: 600_000 }, () => {
  let browser: Browser;
  let signaling: { url: string; stop(): void };
  let credentials: Awaited<ReturnType<typeof tenantCredentials>>;
  const pages: Page[] = [];

  beforeAll(async () => {
    credentials = await tenantCredentials();
    signaling = await portForward('gateway', 'signaling', 8080);
    browser = await launchChromium();
  });

  afterAll(async () => {
    for (const page of pages) await page.close().catch(() => undefined);
    await browser?.close();
    signaling?.stop();
  });

  /** An end user and an agent in a new room, each receiving the other's media. */
  const call = async (room: string): Promise<{ endUser: Page; agent: Page }> => {
    const open = async (identity: string, role: 'end_user' | 'agent') => {
      const { token } = await mintJoinToken(credentials, { room, identity, role });
      const page = await browser.newPage();
      pages.push(page);
      await page.goto(`${signaling.url}/${role === 'agent' ? 'agent' : 'end-user'}#token=${token}&autojoin=1`);
      await page.waitForFunction(() => (window as any).room?.localPublications.get('microphone')?.trackId, undefined, { timeout: 60_000 });
      return page;
    };
    const endUser = await open(`customer-${room}`, 'end_user');
    const agent = await open(`agent-${room}`, 'agent');
    for (const page of [endUser, agent]) await page.waitForFunction(() => (window as any).room?.participants.size === 1, undefined, { timeout: 60_000 });
    return { endUser, agent };
  };
  const received = (page: Page): Promise<ReceiveSummary[]> => page.evaluate(receiveSummaryScript);
  const packetsOf = (list: ReceiveSummary[], kind: string) => list.filter((r) => r.kind === kind).reduce((sum, r) => sum + r.packetsReceived, 0);
  /** Whether RTP of `kind` keeps arriving at the page: more packets now than `seconds` ago. */
  const flowing = async (page: Page, kind: 'audio' | 'video', seconds = 2): Promise<boolean> => {
    const before = packetsOf(await received(page), kind);
    await page.waitForTimeout(seconds * 1000);
    return packetsOf(await received(page), kind) > before;
  };
  const hangUp = async (...list: Page[]) => {
    for (const page of list) {
      await page.evaluate(() => (window as any).room?.leave()).catch(() => undefined);
      await page.close();
      pages.splice(pages.indexOf(page), 1);
    }
  };

  it('carries RTP both ways between two Chromium pages, through the SFU on a media node', async () => {
    const { endUser, agent } = await call(`kind-call-${Date.now()}`);
    await waitFor(async () => (await flowing(agent, 'audio')) && (await flowing(endUser, 'audio')), 60_000, 'audio both ways');
    await waitFor(async () => (await flowing(agent, 'video')) && (await flowing(endUser, 'video')), 60_000, 'video both ways');
    expect((await pods('gateway-media', 'sfu')).filter((p) => p.ready)).not.toHaveLength(0);
    await hangUp(endUser, agent);
  });

  it('keeps a call going through an SFU rollout: the old pod drains, new calls go to the new one', async () => {
    const { endUser, agent } = await call(`kind-rollout-${Date.now()}`);
    await waitFor(() => flowing(agent, 'audio'), 60_000, 'audio before the rollout');
    const before = (await pods('gateway-media', 'sfu')).map((p) => p.name);
    await kubectl('-n', 'gateway-media', 'rollout', 'restart', 'deployment/sfu');
    // The new pod comes up on the other media node while the old one drains its call.
    await waitFor(async () => (await pods('gateway-media', 'sfu')).some((p) => !before.includes(p.name) && p.ready), 300_000, 'a new SFU pod ready');
    const old = (await pods('gateway-media', 'sfu')).filter((p) => before.includes(p.name));
    expect(old.length).toBeGreaterThan(0);
    // The call in progress is still carried by the old pod, for as long as it lasts.
    for (let i = 0; i < 5; i++) {
      expect(await flowing(agent, 'audio')).toBe(true);
      expect(await flowing(endUser, 'audio')).toBe(true);
    }
    // A new call is placed on the new pod and carries media.
    const fresh = await call(`kind-after-rollout-${Date.now()}`);
    await waitFor(() => flowing(fresh.agent, 'audio'), 60_000, 'audio in a call placed after the rollout began');
    // Once the call ends, the old pod has nothing left to drain and goes.
    await hangUp(endUser, agent);
    await waitFor(async () => (await pods('gateway-media', 'sfu')).every((p) => !before.includes(p.name)), 300_000, 'the drained SFU pod gone');
    await hangUp(fresh.endUser, fresh.agent);
  });

  it('keeps a call going through a NATS rolling restart, and takes joins after it', async () => {
    const { endUser, agent } = await call(`kind-nats-${Date.now()}`);
    await waitFor(() => flowing(agent, 'audio'), 60_000, 'audio before the restart');
    await kubectl('-n', 'gateway', 'rollout', 'restart', 'statefulset/nats');
    const rollout = kubectl('-n', 'gateway', 'rollout', 'status', 'statefulset/nats', '--timeout=600s');
    let restarted = false;
    void rollout.then(() => (restarted = true));
    // Media does not go through NATS: it keeps flowing while the servers restart one by one.
    while (!restarted) {
      expect(await flowing(agent, 'audio', 3)).toBe(true);
      expect(await flowing(endUser, 'audio', 3)).toBe(true);
    }
    await rollout;
    // The room survived on the servers that stayed: both are still in it, and a new call joins.
    expect(await agent.evaluate(() => (window as any).room.participants.size)).toBe(1);
    const fresh = await call(`kind-after-nats-${Date.now()}`);
    await waitFor(() => flowing(fresh.endUser, 'audio'), 60_000, 'audio in a call placed after the restart');
    await hangUp(endUser, agent, fresh.endUser, fresh.agent);
  });
});
