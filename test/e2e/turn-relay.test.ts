import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NatsServer, TurnServer, startSfuProcess, startSignalingProcess, turnserverInstalled, waitFor } from '@gateway/testing';
import { CallPages, launchChromium, receiveSummaryScript, type ReceiveSummary } from '../support/browser.js';
import { voiceClip } from '../support/media.js';
import { skipForMissing } from '../support/prerequisites.js';
import { demoToken } from '../support/tokens.js';

/** Runs in the page: the local candidate type of each transport's selected candidate pair. */
const selectedLocalCandidateTypes = async (): Promise<string[]> => {
  const room = (window as unknown as { room: { getStats(): Promise<{ send?: RTCStatsReport; recv?: RTCStatsReport }> } }).room;
  const { send, recv } = await room.getStats();
  const types: string[] = [];
  for (const report of [send, recv]) {
    if (!report) continue;
    const byId = new Map<string, Record<string, unknown>>();
    report.forEach((s: Record<string, unknown>) => void byId.set(s.id as string, s));
    for (const s of byId.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = byId.get(s.selectedCandidatePairId as string);
      const local = pair && byId.get(pair.localCandidateId as string);
      types.push(String(local?.candidateType ?? 'none'));
    }
  }
  return types;
};

/**
 * Media through TURN only: signaling hands out credentials for a real coturn, and both pages
 * (`relay=1`: iceTransportPolicy 'relay') may use no other path. Video and audio must flow both ways, every
 * selected candidate pair must be a relayed one, and coturn must have served an allocation for
 * each participant, named by participant id alone.
 */
describe('a call relayed through TURN in Chromium', () => {
  let nats: NatsServer;
  let turn: TurnServer | undefined;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  const pages = new CallPages(
    () => browser,
    () => sfu.opsPort,
  );
  const received = (page: Page) => page.evaluate(receiveSummaryScript);
  const find = (list: ReceiveSummary[], source: string) => list.find((r) => r.source === source);

  beforeAll(async () => {
    if (!turnserverInstalled()) return;
    turn = await TurnServer.start();
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    signaling = await startSignalingProcess({ natsUrl: nats.url, env: turn.signalingEnv() });
    browser = await launchChromium([`--use-file-for-fake-audio-capture=${voiceClip()}`]);
  }, 90_000);

  afterEach(() => (turn ? pages.endAll() : undefined));

  afterAll(async () => {
    await browser?.close();
    await signaling?.stop();
    await sfu?.stop();
    await nats?.stop();
    await turn?.stop();
  });

  it('carries media both ways through coturn and nowhere else', async (context) => {
    if (!turn) return skipForMissing(context, 'coturn (turnserver), installed by scripts/setup.sh');
    const room = `turn-${Date.now()}`;
    const endUser = await pages.open();
    await endUser.goto(`${signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1&relay=1`);
    await endUser.waitForFunction(() => document.body.dataset.state === 'connected');
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    const agent = await pages.open();
    await agent.goto(`${signaling.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1&relay=1`);
    await agent.waitForFunction(() => document.body.dataset.state === 'connected');
    // The agent page publishes its microphone only (a voice contact); video goes the other way too.
    await agent.evaluate(() => (window as any).room.publish({ camera: true }));

    // End user to agent: camera frames decoded, the voice heard.
    await waitFor(
      async () => {
        const list = await received(agent);
        return (find(list, 'camera')?.framesDecoded ?? 0) > 10 && (find(list, 'microphone')?.audioEnergy ?? 0) > 0;
      },
      30_000,
      "the end user's camera decoded and voice heard at the agent",
    );
    // Agent to end user: camera frames decoded, the voice heard.
    await waitFor(
      async () => {
        const list = await received(endUser);
        return (find(list, 'camera')?.framesDecoded ?? 0) > 10 && (find(list, 'microphone')?.audioEnergy ?? 0) > 0;
      },
      30_000,
      "the agent's camera decoded and voice heard at the end user",
    );

    // Every transport of both pages goes through a relay candidate: send and receive of each.
    for (const page of [endUser, agent]) {
      const types = await page.evaluate(selectedLocalCandidateTypes);
      expect(types).toEqual(['relay', 'relay']);
    }

    // coturn's view: an allocation for each participant, under a username of expiry and
    // participant id (no identity from the token), with peers permitted and data relayed.
    const ids = await Promise.all([endUser, agent].map((page) => page.evaluate(() => (window as any).room.localParticipant.id as string)));
    const log = turn.log();
    for (const id of ids) expect(log).toMatch(new RegExp(`user <\\d+:${id}>: incoming packet ALLOCATE processed, success`));
    expect(log).toMatch(/CREATE_PERMISSION processed, success/);
    expect(log).not.toMatch(/customer-1|agent-1/);
  }, 90_000);

  it('connects no media through coturn with credentials signed by another secret', async (context) => {
    if (!turn) return skipForMissing(context, 'coturn (turnserver), installed by scripts/setup.sh');
    const dir = mkdtempSync(join(tmpdir(), 'gateway-turn-forged-'));
    const forgedSecret = join(dir, 'secret');
    writeFileSync(forgedSecret, 'not-the-secret-coturn-shares-with-signaling');
    const forger = await startSignalingProcess({ natsUrl: nats.url, env: { ...turn.signalingEnv(), SIGNALING_TURN_SECRET_FILE: forgedSecret } });
    try {
      const page = await pages.open();
      await page.goto(`${forger.url}/end-user#token=${await demoToken({ room: `turn-forged-${Date.now()}`, identity: 'customer-2', role: 'end_user' })}&autojoin=1&relay=1`);
      await page.waitForFunction(() => document.body.dataset.state === 'connected');
      const id = await page.evaluate(() => (window as any).room.localParticipant.id as string);
      // coturn refuses the page's allocations...
      await waitFor(() => new RegExp(`user <\\d+:${id}>: incoming packet \\w+ processed, error 401`).test(turn!.log()), 30_000, "coturn's refusal of the forged credential");
      expect(turn.log()).not.toMatch(new RegExp(`user <\\d+:${id}>: incoming packet ALLOCATE processed, success`));
      // ...so the page has no relay candidate, and the relay-only transport no path.
      const local = await page.evaluate(async () => {
        const { send } = await (window as any).room.getStats();
        const candidates: string[] = [];
        const dtls: string[] = [];
        (send as RTCStatsReport | undefined)?.forEach((s: { type: string; candidateType?: string; dtlsState?: string }) => {
          if (s.type === 'local-candidate') candidates.push(s.candidateType ?? '');
          if (s.type === 'transport') dtls.push(s.dtlsState ?? '');
        });
        return { candidates, dtls };
      });
      expect(local.candidates).not.toContain('relay');
      expect(local.dtls).not.toContain('connected');
    } finally {
      await pages.endAll();
      await forger.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
