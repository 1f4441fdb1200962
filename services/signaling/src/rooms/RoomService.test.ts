import { describe, expect, it } from 'vitest';
import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import type { RecorderDirectory } from '@gateway/cluster';
import { ErrorCode, GatewayError } from '@gateway/common';
import { MemoryParticipantStore, silentLog } from '../testing/fakes.js';
import { ROOM_CLOSED_MS, RoomService } from './RoomService.js';

const record = (participantId: string, over: { role?: string; paused?: boolean; joinedAtMs?: number } = {}): ParticipantRecord => ({
  info: {
    participantId,
    identity: `id-${participantId}`,
    role: over.role ?? 'end_user',
    joinedAtMs: over.joinedAtMs ?? 1,
    tracks: [{ producerId: `PR_${participantId}`, source: 'microphone', kind: 'audio', paused: over.paused ?? false }],
    name: '',
    metadata: '',
    visibleTo: '',
  },
  owner: 'replica-a',
  connected: true,
  disconnectedAtMs: 0,
  refreshedAtMs: Date.now(),
  nodeId: 'N1',
  transportIds: [],
  grants: { canPublish: true, canSubscribe: true, sources: ['microphone'], canRecord: false, canUpdateMetadata: false },
  tokenExpiresAt: 0,
  resumeTokenHash: Buffer.alloc(32),
  consumers: {},
  recvTransportId: '',
  tokenId: 'TK_1',
  removedAtMs: 0,
});

async function serviceWith(
  records: Array<[string, string, ParticipantRecord]>,
  options: { remove?: (id: string, store: MemoryParticipantStore) => Promise<void>; stale?: (r: ParticipantRecord) => boolean } = {},
) {
  const store = new MemoryParticipantStore();
  for (const [tenant, room, r] of records) await store.put(tenant, room, r);
  const rooms = async (tenant: string) => {
    const counts = new Map<string, number>();
    for (const key of store.records.keys()) if (key.startsWith(`${tenant}.`)) counts.set(key.split('.')[1]!, (counts.get(key.split('.')[1]!) ?? 0) + 1);
    return counts;
  };
  const published: unknown[] = [];
  const removed: string[] = [];
  const muted: string[] = [];
  const closed: string[] = [];
  const service = new RoomService({
    store: Object.assign(store, { rooms, isStale: async (r: ParticipantRecord) => options.stale?.(r) ?? false }),
    control: {
      remove: async (t, r, id) => {
        removed.push(id);
        await options.remove?.(id, store);
        // A removal that went through takes the record away.
        await store.delete(t, r, id);
      },
      mute: async (_t, _r, id, producerId) => {
        muted.push(`${id}/${producerId}`);
        return { producerId, source: 'microphone', kind: 'audio', paused: true };
      },
      update: async (_t, _r, id, change) => ({
        participantId: id,
        identity: `id-${id}`,
        role: 'end_user',
        joinedAtMs: 1,
        tracks: [],
        name: change.name ?? '',
        metadata: change.metadata ?? '',
        visibleTo: '',
      }),
    },
    hub: { publish: (_t, _r, event) => published.push(event) },
    recorders: {} as RecorderDirectory,
    recordingOptions: () => ({ transcodeMp4: false, skipPausedAudio: false }),
    erasedIn: async () => new Set(),
    closeRoom: async (t, r, forMs) => void closed.push(`${t}/${r}/${forMs}`),
    log: silentLog,
  });
  return { service, store, published, removed, muted, closed };
}

describe('RoomService', () => {
  it("lists a tenant's rooms by name, and a room's participants by joining order, without contact details", async () => {
    const { service } = await serviceWith([
      ['demo', 'b', record('PA_2', { joinedAtMs: 5 })],
      ['demo', 'b', record('PA_1', { role: 'agent', joinedAtMs: 2 })],
      ['demo', 'a', record('PA_3')],
      ['globex', 'c', record('PA_4')],
    ]);
    expect(await service.listRooms('demo')).toEqual([
      { room: 'a', participants: 1 },
      { room: 'b', participants: 2 },
    ]);
    const listed = await service.listParticipants('demo', 'b');
    expect(listed.map((p) => p.participantId)).toEqual(['PA_1', 'PA_2']);
    expect(Object.keys(listed[0]!).sort()).toEqual(['connected', 'identity', 'joinedAtMs', 'metadata', 'name', 'participantId', 'role', 'tracks']);
    expect(listed[1]!.tracks).toEqual([{ trackId: 'PR_PA_2', source: 'microphone', kind: 'audio', muted: false }]);
    await expect(service.listParticipants('globex', 'b')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
  });

  it('mutes only tracks the participant publishes, asking its replica only for a track not muted yet', async () => {
    const { service, muted } = await serviceWith([
      ['demo', 'r', record('PA_1', { paused: true })],
      ['demo', 'r', record('PA_2')],
    ]);
    expect(await service.muteTrack('demo', 'r', 'PA_1', 'PR_PA_1')).toEqual({ trackId: 'PR_PA_1', source: 'microphone', kind: 'audio', muted: true });
    expect(muted).toEqual([]);
    expect(await service.muteTrack('demo', 'r', 'PA_2', 'PR_PA_2')).toEqual({ trackId: 'PR_PA_2', source: 'microphone', kind: 'audio', muted: true });
    expect(muted).toEqual(['PA_2/PR_PA_2']);
    await expect(service.muteTrack('demo', 'r', 'PA_1', 'PR_other')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await expect(service.muteTrack('demo', 'r', 'PA_9', 'PR_PA_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(muted).toEqual(['PA_2/PR_PA_2']);
  });

  it('does not find a participant whose record is stale (its replica is gone) or marked removed, nor asks its replica', async () => {
    const { service, removed, muted } = await serviceWith(
      [
        ['demo', 'r', record('PA_1')],
        ['demo', 'r', { ...record('PA_2'), removedAtMs: 1 }],
        ['demo', 'r', record('PA_3')],
      ],
      { stale: (r) => r.info?.participantId === 'PA_1' },
    );
    await expect(service.removeParticipant('demo', 'r', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await expect(service.muteTrack('demo', 'r', 'PA_1', 'PR_PA_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await expect(service.removeParticipant('demo', 'r', 'PA_2')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(removed).toEqual([]);
    expect(muted).toEqual([]);
    await service.removeParticipant('demo', 'r', 'PA_3');
    expect(removed).toEqual(['PA_3']);
  });

  it('ends a room: joins closed first, everyone removed, newcomers too; one that cannot be reached fails the request after the others are removed', async () => {
    const { service, removed, closed } = await serviceWith(
      [
        ['demo', 'r', record('PA_1')],
        ['demo', 'r', record('PA_2')],
      ],
      {
        // PA_3 joins while the room is being ended.
        remove: async (id, store) => {
          if (id === 'PA_1') await store.put('demo', 'r', record('PA_3'));
        },
      },
    );
    expect(await service.endRoom('demo', 'r')).toBe(3);
    expect(removed.sort()).toEqual(['PA_1', 'PA_2', 'PA_3']);
    expect(closed).toEqual([`demo/r/${ROOM_CLOSED_MS}`]);
    const failing = await serviceWith(
      [
        ['demo', 'r', record('PA_1')],
        ['demo', 'r', record('PA_2')],
      ],
      {
        remove: async (id) => {
          if (id === 'PA_2') throw new GatewayError(ErrorCode.UNAVAILABLE, 'no answer');
        },
      },
    );
    await expect(failing.service.endRoom('demo', 'r')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE, message: '1 of 2 participants could not be removed; try again' });
    expect(failing.removed.sort()).toEqual(['PA_1', 'PA_2']);
  });

  it('ends a room whose participant left between the listing and its removal', async () => {
    const { service, removed } = await serviceWith(
      [
        ['demo', 'r', record('PA_1')],
        ['demo', 'r', record('PA_2')],
      ],
      {
        remove: async (id) => {
          if (id === 'PA_2') throw new GatewayError(ErrorCode.NOT_FOUND, 'no such participant in the room');
        },
      },
    );
    expect(await service.endRoom('demo', 'r')).toBe(2);
    expect(removed.sort()).toEqual(['PA_1', 'PA_2']);
  });

  it('sends a data message to a room that exists, as a room event', async () => {
    const { service, published } = await serviceWith([['demo', 'r', record('PA_1')]]);
    const sent = await service.sendData('demo', 'r', { payload: 'hello' });
    expect(published).toEqual([{ $case: 'dataMessage', value: { topic: '', payload: 'hello', sentAtMs: sent.sentAtMs, participantId: '', destinationParticipantIds: [] } }]);
    await expect(service.sendData('demo', 'nowhere', { payload: 'x' })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(published).toHaveLength(1);
  });
});
