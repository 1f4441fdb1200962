import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buckets } from '@gateway/common';
import { Kvm } from '@nats-io/kv';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { basicAuth } from '../support/crmSync.js';
import { type TestClient, TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

/**
 * The room a join is shown, with two signaling replicas: the first join of a room on a replica
 * lists it, the later ones take the roster that replica keeps from the room's events. Whatever
 * the replica, a joining client's list and the events after it must make up exactly who is in
 * the room, as the participant store lists it.
 */
describe('the roster a join is shown, kept by each replica from the room events', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();
  let rooms = 0;
  const newRoom = () => `roster-${Date.now()}-${++rooms}`;

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    const env = { SIGNALING_RATE_LIMIT_PER_SECOND: '100', SIGNALING_RATE_LIMIT_BURST: '100' };
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  /** Who a client believes is in the room: its join's list, then the joins and leaves told since, in order. */
  function seenBy(client: TestClient, join: Record<string, any>): { ids: Set<string>; doubts: string[] } {
    const ids = new Set<string>(((join.participants ?? []) as Array<{ participantId: string }>).map((p) => p.participantId));
    const doubts: string[] = [];
    for (const n of client.notifications) {
      if (n.participantJoined) {
        // A join told after a list that already has them is one the list should not have had yet.
        if (ids.has(n.participantJoined.participantId)) doubts.push(`joined twice: ${n.participantJoined.participantId}`);
        ids.add(n.participantJoined.participantId);
      } else if (n.participantLeft) {
        if (!ids.delete(n.participantLeft.participantId)) doubts.push(`left unseen: ${n.participantLeft.participantId}`);
      }
    }
    return { ids, doubts };
  }

  /** The participants the store holds for the room (each replica's own listing reads the same). */
  async function stored(room: string): Promise<string[]> {
    const nc = await nats.connect();
    try {
      const kv = await new Kvm(nc).open(buckets.participants);
      const keys: string[] = [];
      for await (const key of await kv.keys(`demo.${room}.*`)) keys.push(key.split('.')[2]!);
      return keys.sort();
    } finally {
      await nc.close();
    }
  }

  it('shows a participant with its tracks and its changed name to a join answered from memory', async () => {
    const room = newRoom();
    const { client: a, join: joinA } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'customer', role: 'end_user', sources: ['microphone'] }));
    const send = (await a.request('createTransport', { direction: 'send' })).createTransport;
    const producerId = (await a.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
    expect((await a.request('pauseProducer', { producerId })).error).toBeUndefined();
    // The first join of the room on replica 2: listed.
    const { client: b } = await clients.join(sig2.wsUrl, await demoToken({ room, identity: 'agent', role: 'agent', canUpdateMetadata: true }));
    expect((await b.request('updateParticipant', { name: 'Ann, Support' })).error).toBeUndefined();
    await a.waitForNotification('participantUpdated');
    // A later join on replica 1, whose roster was listed by the first join: from memory.
    const { join: joinC } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'late', role: 'end_user' }));
    const byId = new Map(((joinC.participants ?? []) as Array<Record<string, any>>).map((p) => [p.participantId, p]));
    expect(byId.size).toBe(2);
    expect(byId.get(joinA.participant.participantId)?.tracks).toEqual([expect.objectContaining({ producerId, source: 'microphone', paused: true })]);
    expect([...byId.values()].find((p) => p.role === 'agent')?.name).toBe('Ann, Support');
  }, 30_000);

  it('lists exactly who is in the room while joins and leaves race across two replicas', async () => {
    const room = newRoom();
    const url = (i: number) => (i % 2 === 0 ? sig1.wsUrl : sig2.wsUrl);
    const stay: Array<{ client: TestClient; join: Record<string, any> }> = [];
    // A first participant on each replica, so both keep a roster before the race.
    for (const i of [0, 1]) stay.push(await clients.join(url(i), await demoToken({ room, identity: `first-${i}`, role: i === 0 ? 'agent' : 'end_user' })));
    const tokens = await Promise.all(Array.from({ length: 24 }, (_, i) => demoToken({ room, identity: `racer-${i}`, role: 'end_user' })));
    await Promise.all(
      tokens.map(async (token, i) => {
        const joined = await clients.join(url(i), token);
        // Every third leaves again at once, while the others are still joining.
        if (i % 3 === 0) expect((await joined.client.request('leave')).error).toBeUndefined();
        else stay.push(joined);
      }),
    );
    const present = stay.map((s) => s.join.participant.participantId as string).sort();
    await waitFor(async () => JSON.stringify(await stored(room)) === JSON.stringify(present), 10_000, 'the store to hold who stayed');
    // Everyone's list and the events after it settle on the others who stayed, with no event
    // repeating what a list already held.
    for (const { client, join } of stay) {
      const self = join.participant.participantId as string;
      const others = present.filter((id) => id !== self);
      const seen = await waitFor(
        () => {
          const s = seenBy(client, join);
          return JSON.stringify([...s.ids].sort()) === JSON.stringify(others) ? s : undefined;
        },
        10_000,
        `${self} to see the room as it is`,
      ).catch(() => seenBy(client, join));
      expect([...seen.ids].sort(), self).toEqual(others);
      expect(seen.doubts, self).toEqual([]);
    }
    // A join now on either replica (both answer from memory) lists exactly the store's participants.
    for (const i of [0, 1]) {
      const { join } = await clients.join(url(i), await demoToken({ room, identity: `last-${i}`, role: 'end_user' }));
      const listed = ((join.participants ?? []) as Array<{ participantId: string }>).map((p) => p.participantId).sort();
      const expected = (await stored(room)).filter((id) => id !== join.participant.participantId);
      expect(listed, `a join on replica ${i + 1}`).toEqual(expected);
    }
  }, 60_000);

  describe('the marks that stop joins, kept by each replica from watches of their keys', () => {
    // The room API's removals and room ends write their marks on one replica; the other hears
    // of them over the watch (a delivery, milliseconds): this covers it on a loaded machine.
    const MARK_DELIVERY_MS = 500;
    const roomApi = (base: string, target: string, method: string) => fetch(`${base}/v1/rooms/${target}`, { method, headers: { authorization: basicAuth(DEMO_TENANT) } });

    it("refuses a removed participant's token on the replica that did not revoke it", async () => {
      const room = newRoom();
      const token = await demoToken({ room, identity: 'removed', role: 'end_user' });
      // Held by replica 2 and removed through it: replica 2 writes the revoke.
      const { client, join } = await clients.join(sig2.wsUrl, token);
      expect((await roomApi(sig2.url, `${room}/participants/${join.participant.participantId}`, 'DELETE')).status).toBe(204);
      expect((await client.closed).code).toBe(4005);
      await new Promise((r) => setTimeout(r, MARK_DELIVERY_MS));
      const rejoin = await clients.open(sig1.wsUrl);
      expect((await rejoin.request('join', { token, protocolVersion: 1 })).error?.code).toBe('REMOVED');
    });

    it('refuses joins of a room ended through the other replica', async () => {
      const room = newRoom();
      await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'agent', role: 'agent' }));
      // Ended through replica 2, which writes the room's closed mark.
      expect((await roomApi(sig2.url, room, 'DELETE')).status).toBe(200);
      await new Promise((r) => setTimeout(r, MARK_DELIVERY_MS));
      const late = await clients.open(sig1.wsUrl);
      expect((await late.request('join', { token: await demoToken({ room, identity: 'late', role: 'end_user' }), protocolVersion: 1 })).error?.code).toBe('ROOM_ENDED');
    });
  });
});
