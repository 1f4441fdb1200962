import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { buckets, kvKeys } from '@gateway/common';
import { NatsServer, allStarted, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { launchChromium, loadToJoin, receiveSummaryScript, type ReceiveSummary } from '../support/browser.js';
import { voiceClip } from '../support/media.js';
import { metricValue } from '../support/metrics.js';
import { demoToken } from '../support/tokens.js';

/**
 * A room that spans two SFU nodes. Node A takes at most 2 consumers, so the agent, who would
 * consume the end user's camera, microphone and screen, is placed on node B; media crosses
 * between the nodes through pipes, both ways. Then node A dies: the room is placed again, the
 * end user rejoins by itself, and the agent on node B receives the new tracks.
 */
describe('a room across two SFU nodes in Chromium', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let nodeA: Awaited<ReturnType<typeof startSfuProcess>>;
  let nodeB: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let browser: Browser;
  let room: string;
  let nodes = 0;
  const started: Array<Awaited<ReturnType<typeof startSfuProcess>>> = [];
  const pages: Page[] = [];
  /** An SFU node of this test; each test starts its own (under new ids), since one of them kills its node A. */
  const startNode = async (env: Record<string, string> = {}) => {
    const node = await startSfuProcess({ natsUrl: nats.url, nodeId: `sfu-${++nodes}`, env });
    started.push(node);
    return node;
  };
  const newPage = async () => {
    const page = await browser.newPage();
    pages.push(page);
    return page;
  };

  const received = (page: Page) => page.evaluate(receiveSummaryScript);
  const find = (list: ReceiveSummary[], source: string) => list.find((r) => r.source === source);
  /** The SFU node a participant's session lives on, from its record. */
  async function nodeOf(participantId: string): Promise<string | undefined> {
    const kv = await new Kvm(nc).open(buckets.participants);
    const entry = await kv.get(kvKeys.participant('demo', room, participantId));
    return entry && entry.length > 0 ? ParticipantRecord.decode(entry.value).nodeId : undefined;
  }

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    await allStarted([startSignalingProcess({ natsUrl: nats.url }).then((p) => (signaling = p)), launchChromium([`--use-file-for-fake-audio-capture=${voiceClip()}`]).then((b) => (browser = b))]);
  }, 90_000);

  // Node A alone at first, so the room is placed there.
  beforeEach(async () => {
    room = `span-${Date.now()}`;
    nodeA = await startNode({ SFU_MAX_CONSUMERS: '2' });
  }, 60_000);

  // The test's participants leave and its nodes go, out of the registry too, so that the next
  // test's room is placed on its own nodes only.
  afterEach(async () => {
    for (const page of pages.splice(0)) {
      await page.evaluate(() => (window as any).room?.leave()).catch(() => undefined);
      await page.close();
    }
    const registry = await new Kvm(nc).open(buckets.sfuNodes);
    for (const node of started.splice(0)) {
      await node.stop('SIGKILL');
      await registry.delete(node.nodeId);
    }
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await signaling?.stop();
    for (const node of started) await node.stop('SIGKILL');
    await nc?.close();
    await nats?.stop();
  });

  /** The end user (camera, microphone, screen) placed on node A; the agent placed on node B, started after, receiving all three. */
  async function callAcrossNodes() {
    const endUser = await newPage();
    // The agent's page loads meanwhile; it joins once node B is up.
    const agent = await newPage();
    const joinAgent = loadToJoin(agent, `${signaling.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}`);
    await endUser.goto(`${signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => document.body.dataset.state === 'connected');
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    await endUser.evaluate(() => (window as any).room.publish({ screen: true }));
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 3);
    nodeB = await startNode();
    await joinAgent();
    await agent.waitForFunction(() => document.body.dataset.state === 'connected');
    await waitFor(
      async () => {
        const list = await received(agent);
        return (find(list, 'camera')?.framesDecoded ?? 0) > 10 && (find(list, 'screen')?.framesDecoded ?? 0) > 5 && (find(list, 'microphone')?.packetsReceived ?? 0) > 20;
      },
      30_000,
      'decoded camera and screen frames and audio from node A at the agent on node B',
    );
    await waitFor(async () => (await metricValue(nodeB.opsPort, 'gateway_sfu_imported_producers')) === 3, 5_000, 'imports on B');
    return { endUser, agent };
  }

  it('places the agent on the second node when the first is full, and carries media across both ways', async () => {
    const endUser = await newPage();
    // The agent's page loads meanwhile; it joins once node B is up.
    const agent = await newPage();
    const joinAgent = loadToJoin(agent, `${signaling.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}`);
    await endUser.goto(`${signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => document.body.dataset.state === 'connected');
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    await endUser.evaluate(() => (window as any).room.publish({ screen: true }));
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 3);
    const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    expect(await nodeOf(endUserId)).toBe(nodeA.nodeId);

    nodeB = await startNode();
    await joinAgent();
    await agent.waitForFunction(() => document.body.dataset.state === 'connected');
    const agentId = await agent.evaluate(() => (window as any).room.localParticipant.id as string);
    expect(await nodeOf(agentId)).toBe(nodeB.nodeId);

    await waitFor(
      async () => {
        const list = await received(agent);
        return (find(list, 'camera')?.framesDecoded ?? 0) > 10 && (find(list, 'screen')?.framesDecoded ?? 0) > 5 && (find(list, 'microphone')?.packetsReceived ?? 0) > 20;
      },
      30_000,
      'decoded camera and screen frames and audio from node A at the agent on node B',
    );
    // Each node judges the active speaker over the voices it holds, imported ones included:
    // the agent on B hears that the end user, whose microphone is on A, is speaking. The agent's
    // own microphone (the same clip) is on B too and can stay the louder of the two for as long
    // as the wait lasts (it did on a loaded machine): it is muted while B judges.
    await agent.waitForFunction(() => (window as any).room?.localPublications.get('microphone')?.trackId);
    await agent.evaluate(() => (window as any).room.muteTrack('microphone'));
    await agent.evaluate(() => {
      const w = window as any;
      w.speakers = [];
      w.room.on('activeSpeaker', (p: { id: string }) => w.speakers.push(p.id));
    });
    // The observer needs a few seconds of voice above its threshold; a loaded machine delays both the fake
    // microphone and the observer's interval, so the wait is generous (it ends as soon as the event comes).
    // The event may also have come before the listener was added: the room's active speaker tells that.
    await agent.waitForFunction((id) => (window as any).speakers.includes(id) || (window as any).room.activeSpeaker?.id === id, endUserId, { timeout: 40_000 });
    await agent.evaluate(() => (window as any).room.unmuteTrack('microphone'));
    // The other way: the agent's microphone, published on B, reaches the end user on A.
    await waitFor(async () => (find(await received(endUser), 'microphone')?.packetsReceived ?? 0) > 20, 20_000, 'agent audio at the end user');
    // The media really crossed: B imported A's three producers and A one of B's, through a pipe each way.
    await waitFor(async () => (await metricValue(nodeB.opsPort, 'gateway_sfu_imported_producers')) === 3, 5_000, 'imports on B');
    expect(await metricValue(nodeA.opsPort, 'gateway_sfu_imported_producers')).toBe(1);
    expect(await metricValue(nodeA.opsPort, 'gateway_sfu_pipes')).toBe(2);
    expect(await metricValue(nodeB.opsPort, 'gateway_sfu_consumers')).toBe(3);
  }, 120_000);

  it('closes the import on the other node when a track is unpublished', async () => {
    const { endUser } = await callAcrossNodes();
    await endUser.evaluate(() => (window as any).room.unpublish('screen'));
    await waitFor(async () => (await metricValue(nodeB.opsPort, 'gateway_sfu_imported_producers')) === 2, 10_000, 'the closed screen share gone from B');
  }, 90_000);

  it('places the room again when its node dies; the end user rejoins and the agent receives again', async () => {
    const { endUser, agent } = await callAcrossNodes();
    const oldEndUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    await nodeA.stop('SIGKILL');
    await endUser.waitForFunction((old) => (window as any).room.localParticipant.id !== old && document.body.dataset.state === 'connected', oldEndUserId, { timeout: 45_000 });
    const newEndUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
    expect(await nodeOf(newEndUserId)).toBe(nodeB.nodeId);
    await waitFor(
      async () => (await received(agent)).some((r) => r.participantId === newEndUserId && r.source === 'camera' && r.framesDecoded > 10),
      40_000,
      "the rejoined end user's camera decoded at the agent",
    );
    // The agent kept its session throughout.
    expect(await nodeOf(await agent.evaluate(() => (window as any).room.localParticipant.id as string))).toBe(nodeB.nodeId);
  }, 120_000);
});
