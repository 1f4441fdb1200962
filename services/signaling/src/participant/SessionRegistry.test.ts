import { describe, expect, it, vi } from 'vitest';
import { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { JoinGrant } from '../auth/tokens.js';
import type { RoomMember } from '../rooms/RoomHub.js';
import { MemoryParticipantStore, RecordingLink, fakeSfu, grantOf, silentLog } from '../testing/fakes.js';
import { ParticipantSession } from './ParticipantSession.js';
import { SessionRegistry } from './SessionRegistry.js';

function setUp(resumeWindowMs = 60_000) {
  const store = new MemoryParticipantStore();
  const members = new Map<string, RoomMember>();
  const published: Array<RoomEvent['event']> = [];
  const released: string[] = [];
  const gone: string[] = [];
  const revoked: string[] = [];
  const registry = new SessionRegistry({
    replicaId: 'replica-a',
    resumeWindowMs,
    store,
    hub: {
      add: (_tenant, _room, member) => void members.set(member.participantId, member),
      remove: (_tenant, _room, participantId) => void members.delete(participantId),
      publish: (_tenant, _room, event) => void published.push(event),
    },
    releaseTokenSlot: async (session) => void released.push(session.participantId),
    revokeToken: async (session) => void revoked.push(session.participantId),
    participantGone: (tenant, room) => void gone.push(`${tenant}/${room}`),
    log: silentLog,
  });
  const sfu = fakeSfu({ closeParticipant: {} });
  const join = async (participantId = 'PA_1', grant: Partial<JoinGrant> = {}) => {
    const { session } = ParticipantSession.create(registry.persistence, silentLog, participantId, grantOf(grant), 'N1', sfu.client);
    const link = new RecordingLink();
    registry.attach(session, link);
    registry.add(session);
    await session.save();
    return { session, link };
  };
  return { registry, store, members, published, released, revoked, gone, calls: sfu.calls, join };
}

const event = (body: RoomEvent['event'], origin = ''): RoomEvent => RoomEvent.create({ tenant: 'demo', room: 'room-1', atMs: 1, origin, event: body });

describe('SessionRegistry', () => {
  it('ends a session for good: media closed, record deleted, slot released, room told', async () => {
    const { registry, store, members, published, released, gone, calls, join } = setUp();
    const { session } = await join();
    await registry.end(session, 'left');
    expect(calls.map((c) => c.method)).toEqual(['closeParticipant']);
    expect(await store.get('demo', 'room-1', 'PA_1')).toBeUndefined();
    expect(released).toEqual(['PA_1']);
    expect(published).toEqual([{ $case: 'participantLeft', value: { participantId: 'PA_1', reason: 'left' } }]);
    expect(gone).toEqual(['demo/room-1']);
    expect(registry.holds('PA_1')).toBe(false);
    expect(members.size).toBe(0);
    await registry.end(session, 'left');
    expect(released).toEqual(['PA_1']);
  });

  it('removes a session for good: record marked before the socket closes with 4005, token revoked, then media, record and room', async () => {
    const { registry, store, published, revoked, calls, join } = setUp();
    const { session, link } = await join();
    let markedWhenClosed = 0;
    const close = link.close.bind(link);
    link.close = (code, reason) => {
      void store.get('demo', 'room-1', 'PA_1').then((stored) => (markedWhenClosed = stored?.record.removedAtMs ?? -1));
      close(code, reason);
    };
    const removal = await registry.remove(session);
    expect(link.closed).toEqual({ code: CloseCode.CLOSE_CODE_REMOVED, reason: 'removed from the room' });
    expect(removal).toMatchObject({ first: true, otherOwner: undefined });
    expect(revoked).toEqual(['PA_1']);
    expect(registry.holds('PA_1')).toBe(false);
    expect(await store.get('demo', 'room-1', 'PA_1')).toBeDefined();
    await removal.finish();
    expect(markedWhenClosed).toBeGreaterThan(0);
    expect(calls.map((c) => c.method)).toEqual(['closeParticipant']);
    expect(await store.get('demo', 'room-1', 'PA_1')).toBeUndefined();
    expect(published).toEqual([{ $case: 'participantLeft', value: { participantId: 'PA_1', reason: 'removed' } }]);
  });

  it('marks the record of a session another replica took over, names that replica, and leaves a marked record to its remover', async () => {
    const { registry, store, revoked, calls, join } = setUp();
    const { session } = await join();
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await store.put('demo', 'room-1', { ...stored.record, owner: 'replica-b' }, stored.revision);
    const removal = await registry.remove(session);
    expect(removal.otherOwner).toBe('replica-b');
    await removal.finish();
    expect(revoked).toEqual(['PA_1']);

    const second = setUp();
    const { session: other } = await second.join();
    const current = (await second.store.get('demo', 'room-1', 'PA_1'))!;
    await second.store.put('demo', 'room-1', { ...current.record, removedAtMs: 1 }, current.revision);
    const again = await second.registry.remove(other);
    expect(again.first).toBe(false);
    await again.finish();
    expect(second.revoked).toEqual([]);
    expect(second.calls).toEqual([]);
    expect(calls.map((c) => c.method)).toEqual(['closeParticipant']);
  });

  it('a session that finds its record marked removed lets go and closes its socket with 4005', async () => {
    const { registry, store, join } = setUp();
    const { session, link } = await join();
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await store.put('demo', 'room-1', { ...stored.record, owner: 'replica-b', removedAtMs: 1 }, stored.revision);
    await expect(session.save()).rejects.toMatchObject({ code: 'REMOVED' });
    expect(link.closed?.code).toBe(CloseCode.CLOSE_CODE_REMOVED);
    expect(registry.holds('PA_1')).toBe(false);
    expect((await store.get('demo', 'room-1', 'PA_1'))!.record.removedAtMs).toBe(1);
  });

  it('abandons a session whose node is gone: the client is told to rejoin, nothing is closed on the SFU', async () => {
    const { registry, store, published, released, calls, join } = setUp();
    const { session, link } = await join();
    await registry.abandon(session, 'node_gone');
    expect(calls).toEqual([]);
    expect(link.notifications).toEqual([{ $case: 'rejoinRequired', value: { reason: 'node_gone' } }]);
    expect(link.closed?.code).toBe(CloseCode.CLOSE_CODE_REJOIN_REQUIRED);
    expect(await store.get('demo', 'room-1', 'PA_1')).toBeUndefined();
    expect(released).toEqual(['PA_1']);
    expect(published).toEqual([{ $case: 'participantLeft', value: { participantId: 'PA_1', reason: 'node_gone' } }]);
  });

  it('keeps a dropped session for the resume window, then ends it', async () => {
    const { registry, store, released, join } = setUp(30);
    const { session, link } = await join();
    registry.detach(session, link);
    await session.writesSettled();
    expect((await store.get('demo', 'room-1', 'PA_1'))?.record.connected).toBe(false);
    expect(registry.holds('PA_1')).toBe(true);
    await new Promise((r) => setTimeout(r, 120));
    expect(registry.holds('PA_1')).toBe(false);
    expect(released).toEqual(['PA_1']);
    expect(await store.get('demo', 'room-1', 'PA_1')).toBeUndefined();
  });

  it('only forgets a dropped session another replica took over meanwhile', async () => {
    const { registry, store, released, join } = setUp(30);
    const { session, link } = await join();
    registry.detach(session, link);
    await session.writesSettled();
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await store.put('demo', 'room-1', { ...stored.record, owner: 'replica-b', connected: true }, stored.revision);
    await new Promise((r) => setTimeout(r, 120));
    expect(registry.holds('PA_1')).toBe(false);
    expect(released).toEqual([]);
    expect((await store.get('demo', 'room-1', 'PA_1'))?.record.owner).toBe('replica-b');
  });

  it('a resume within the window stops it', async () => {
    const { registry, join } = setUp(30);
    const { session, link } = await join();
    registry.detach(session, link);
    registry.attach(session, new RecordingLink());
    await new Promise((r) => setTimeout(r, 90));
    expect(registry.holds('PA_1')).toBe(true);
  });

  it("relays room events about others, and abandons the session when its node's room closes", async () => {
    const { registry, members, join } = setUp();
    const { link } = await join();
    const member = members.get('PA_1')!;
    const other = { participantId: 'PA_2', identity: 'x', role: 'agent', joinedAtMs: 1, tracks: [], name: '', metadata: '', visibleTo: '' };
    member.onRoomEvent(event({ $case: 'participantJoined', value: other }));
    member.onRoomEvent(event({ $case: 'participantJoined', value: { ...other, participantId: 'PA_1' } }));
    member.onRoomEvent(event({ $case: 'activeSpeaker', value: { participantId: 'PA_2' } as never }, 'N2'));
    member.onRoomEvent(event({ $case: 'roomClosed', value: { reason: 'node_gone', nodeId: 'N2' } }));
    expect(link.notifications).toEqual([{ $case: 'participantJoined', value: other }]);
    member.onRoomEvent(event({ $case: 'roomClosed', value: { reason: 'node_gone', nodeId: 'N1' } }));
    await new Promise((r) => setTimeout(r, 10));
    expect(registry.holds('PA_1')).toBe(false);
    expect(link.closed?.code).toBe(CloseCode.CLOSE_CODE_REJOIN_REQUIRED);
  });

  it('relays connection quality: both sides of oneself, the upstream of others, each only when what this client sees changes', async () => {
    const { members, join } = setUp();
    const { link } = await join();
    const member = members.get('PA_1')!;
    member.onRoomEvent(event({ $case: 'participantJoined', value: { participantId: 'PA_2', identity: 'x', role: 'agent', joinedAtMs: 1, tracks: [], name: '', metadata: '', visibleTo: '' } }));
    link.notifications.length = 0;
    const quality = (participantId: string, upstream: string, downstream: string) =>
      event({ $case: 'connectionQuality', value: { participantId, quality: upstream === 'poor' || downstream === 'poor' ? 'poor' : 'excellent', upstream, downstream } }, 'N1');
    member.onRoomEvent(quality('PA_1', 'excellent', 'poor'));
    member.onRoomEvent(quality('PA_2', 'excellent', 'excellent'));
    // The other's downstream changed: not this client's business, nothing to tell.
    member.onRoomEvent(quality('PA_2', 'excellent', 'poor'));
    member.onRoomEvent(quality('PA_2', 'poor', 'poor'));
    member.onRoomEvent(quality('PA_1', 'excellent', 'poor'));
    expect(link.notifications).toEqual([
      { $case: 'connectionQuality', value: { participantId: 'PA_1', quality: 'poor', upstream: 'excellent', downstream: 'poor' } },
      { $case: 'connectionQuality', value: { participantId: 'PA_2', quality: 'excellent', upstream: 'excellent', downstream: 'unknown' } },
      { $case: 'connectionQuality', value: { participantId: 'PA_2', quality: 'poor', upstream: 'poor', downstream: 'unknown' } },
    ]);
  });

  it('tells a publisher alone which layers of its video are wanted, from the node its producers live on', async () => {
    const { members, join } = setUp();
    const { link } = await join();
    const member = members.get('PA_1')!;
    link.notifications.length = 0;
    const wanted = (participantId: string, maxSpatialLayer: number, origin: string) =>
      event({ $case: 'videoLayersWanted', value: { participantId, producerId: `PR_${participantId}`, maxSpatialLayer } }, origin);
    member.onRoomEvent(wanted('PA_1', 0, 'N1'));
    // Another publisher's layers, or what a node that imported ours counts: not for this client.
    member.onRoomEvent(wanted('PA_2', 2, 'N1'));
    member.onRoomEvent(wanted('PA_1', 2, 'N2'));
    member.onRoomEvent(wanted('PA_1', 1, 'N1'));
    expect(link.notifications).toEqual([
      { $case: 'videoLayersWanted', value: { participantId: 'PA_1', producerId: 'PR_PA_1', maxSpatialLayer: 0 } },
      { $case: 'videoLayersWanted', value: { participantId: 'PA_1', producerId: 'PR_PA_1', maxSpatialLayer: 1 } },
    ]);
  });

  describe('hidden supervisors', () => {
    const person = (participantId: string, role: string, visibleTo: string) => ({ participantId, identity: participantId, role, joinedAtMs: 1, tracks: [], name: '', metadata: '', visibleTo });
    const track = { producerId: 'PR_s', source: 'microphone', kind: 'audio', paused: false };

    it('an end user is told nothing of a monitoring or whispering supervisor: joins, tracks, speech, quality, messages, leaving', async () => {
      const { members, join } = setUp();
      const { link } = await join('PA_u', { role: 'end_user' });
      const member = members.get('PA_u')!;
      for (const [id, visibleTo] of [
        ['PA_m', 'supervisors'],
        ['PA_w', 'agents'],
      ] as const) {
        member.onRoomEvent(event({ $case: 'participantJoined', value: person(id, 'supervisor', visibleTo) }));
        member.onRoomEvent(event({ $case: 'producerAdded', value: { participantId: id, track: { ...track, producerId: `PR_${id}` } } }));
        member.onRoomEvent(event({ $case: 'producerPaused', value: { participantId: id, producerId: `PR_${id}` } }));
        member.onRoomEvent(event({ $case: 'connectionQuality', value: { participantId: id, quality: 'good', upstream: 'good', downstream: 'good' } }, 'N1'));
        member.onRoomEvent(event({ $case: 'dataMessage', value: { participantId: id, topic: 't', payload: 'x', sentAtMs: 1, destinationParticipantIds: [] } }));
        member.onRoomEvent(event({ $case: 'participantLeft', value: { participantId: id, reason: 'left' } }));
      }
      member.onRoomEvent(event({ $case: 'activeSpeaker', value: { participantId: 'PA_w', producerId: 'PR_PA_w' } }, 'N1'));
      // What the server itself sends (the room API's data messages) is everyone's.
      member.onRoomEvent(event({ $case: 'dataMessage', value: { participantId: '', topic: 't', payload: 'x', sentAtMs: 1, destinationParticipantIds: [] } }));
      expect(link.notifications).toEqual([
        { $case: 'activeSpeaker', value: { participantId: '', producerId: '' } },
        { $case: 'dataMessage', value: { participantId: '', topic: 't', payload: 'x', sentAtMs: 1, destinationParticipantIds: [] } },
      ]);
    });

    it("an agent hears a whisper but not a monitor; a supervisor sees both; a barged-in supervisor is everyone's", async () => {
      const { members, join } = setUp();
      const agent = await join('PA_a', { role: 'agent' });
      const supervisor = await join('PA_s', { role: 'supervisor', visibleTo: 'supervisors' });
      const endUser = await join('PA_u', { role: 'end_user' });
      const announce = (value: ReturnType<typeof person>) => {
        for (const id of ['PA_a', 'PA_s', 'PA_u']) members.get(id)!.onRoomEvent(event({ $case: 'participantJoined', value }));
      };
      announce(person('PA_m', 'supervisor', 'supervisors'));
      announce(person('PA_w', 'supervisor', 'agents'));
      announce(person('PA_b', 'supervisor', ''));
      const told = (link: RecordingLink) => link.notifications.map((n) => (n?.$case === 'participantJoined' ? n.value.participantId : n?.$case));
      expect(told(agent.link)).toEqual(['PA_w', 'PA_b']);
      expect(told(supervisor.link)).toEqual(['PA_m', 'PA_w', 'PA_b']);
      expect(told(endUser.link)).toEqual(['PA_b']);
    });

    it('looks up a participant it has not heard of before telling of its track, and tells only if it may see it', async () => {
      const { members, store, join } = setUp();
      const { link } = await join('PA_u', { role: 'end_user' });
      await store.put('demo', 'room-1', { ...(await store.get('demo', 'room-1', 'PA_u'))!.record, info: person('PA_w', 'supervisor', 'agents') });
      await store.put('demo', 'room-1', { ...(await store.get('demo', 'room-1', 'PA_u'))!.record, info: person('PA_a', 'agent', '') });
      const member = members.get('PA_u')!;
      member.onRoomEvent(event({ $case: 'producerAdded', value: { participantId: 'PA_w', track } }));
      member.onRoomEvent(event({ $case: 'producerAdded', value: { participantId: 'PA_a', track: { ...track, producerId: 'PR_a' } } }));
      await vi.waitFor(() => expect(link.notifications).toHaveLength(1));
      await new Promise((r) => setTimeout(r, 20));
      expect(link.notifications).toEqual([{ $case: 'producerAdded', value: { participantId: 'PA_a', track: { ...track, producerId: 'PR_a' } } }]);
    });
  });
});
