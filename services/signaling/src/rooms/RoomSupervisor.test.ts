import { describe, expect, it } from 'vitest';
import type { ParticipantRecord, RoomSessionRecord } from '@gateway/proto/gateway/events/v1/events';
import { silentLog } from '../testing/fakes.js';
import { RoomSupervisor, type RoomSupervisorDeps } from './RoomSupervisor.js';

const roomRecord = { sessionId: 'SE_1', startedAtMs: 1, sealedParticipants: new Uint8Array() } as unknown as RoomSessionRecord;

function setUp(present: ParticipantRecord[], stale: ParticipantRecord[] = []) {
  const steps: string[] = [];
  const deps: RoomSupervisorDeps = {
    sessions: { inRoom: () => [], holds: () => false, abandon: async () => undefined, all: () => [] },
    store: { list: async () => present, stale: async () => stale, delete: async (_tenant: string, _room: string, id: string) => void steps.push(`delete ${id}`) },
    directory: {
      node: async () => undefined,
      clientFor: () => undefined,
      forgetPlacement: async () => undefined,
      forgetRoom: async (tenant: string, room: string) => void steps.push(`forgetRoom ${tenant}/${room}`),
    } as unknown as RoomSupervisorDeps['directory'],
    hub: {
      servedRooms: () => [{ tenant: 'demo', room: 'served' }],
      publish: (_tenant: string, room: string, event: { $case: string; value: { participantId?: string } }) => void steps.push(`${event.$case} ${room} ${event.value.participantId ?? ''}`),
    } as unknown as RoomSupervisorDeps['hub'],
    roomSessions: {
      rooms: async () => [],
      claim: async () => (steps.push('claim'), roomRecord),
      current: async () => roomRecord,
      participantsOf: async () => [],
      announce: async (_tenant: string, _room: string, _record: RoomSessionRecord, conversationId: string | undefined) => void steps.push(`announce ${conversationId ?? 'none'}`),
      finished: async () => void steps.push('finished'),
      takeStale: async () => [],
    } as unknown as RoomSupervisorDeps['roomSessions'],
    releaseTokenSlot: async () => undefined,
    roomEnd: {
      nc: undefined as never,
      chat: { read: async () => undefined } as never,
      actions: { list: async () => [], removeAll: async () => void steps.push('removeAll') } as never,
      artifacts: undefined as never,
      log: silentLog,
    },
    sessionFinishStaleMs: 60_000,
    log: silentLog,
  };
  return { supervisor: new RoomSupervisor(deps), steps };
}

const settle = () => new Promise((r) => setTimeout(r, 10));

describe('RoomSupervisor', () => {
  it('ends a room its last participant left: claimed once, announced, placement forgotten', async () => {
    const { supervisor, steps } = setUp([]);
    supervisor.participantGone('demo', 'room-1');
    await settle();
    expect(steps).toEqual(['claim', 'removeAll', 'announce none', 'finished', 'forgetRoom demo/room-1']);
  });

  it('leaves a room with participants alone', async () => {
    const someone = { info: { participantId: 'PA_2' } } as ParticipantRecord;
    const { supervisor, steps } = setUp([someone]);
    supervisor.participantGone('demo', 'room-1');
    await settle();
    expect(steps).toEqual([]);
  });

  it("sweeps a departed replica's participants from the rooms served here, and tells the room", async () => {
    const orphan = { info: { participantId: 'PA_3' }, nodeId: 'sfu-1', tokenId: '' } as unknown as ParticipantRecord;
    const { supervisor, steps } = setUp([orphan], [orphan]);
    supervisor.replicasDeparted();
    await settle();
    expect(steps).toEqual(['delete PA_3', 'participantLeft served PA_3']);
  });
});
