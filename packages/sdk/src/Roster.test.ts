import { describe, expect, it } from 'vitest';
import { ParticipantInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { Roster, type RemoteTrackSink } from './Roster.js';

const info = (participantId: string, producerIds: string[] = []) =>
  ParticipantInfo.fromJSON({ participantId, identity: participantId, role: 'agent', joinedAtMs: '1', tracks: producerIds.map((producerId) => ({ producerId, source: 'camera', kind: 'video' })) });

function roster() {
  const log: string[] = [];
  const tracks: RemoteTrackSink = {
    add: (participantId, track) => void log.push(`add:${participantId}:${track.producerId}`),
    dropTracksOf: (participantId, keep) => void log.push(`drop:${participantId}${keep ? `:keep ${[...keep].join(',')}` : ''}`),
  };
  const emit = (event: string, participant: { id: string }) => void log.push(`${event}:${participant.id}`);
  return { roster: new Roster({ tracks, emit: emit as never }), log };
}

describe('Roster', () => {
  it('announces arrivals and departures once, and hands their tracks on', () => {
    const { roster: r, log } = roster();
    r.upsert(info('PA_a', ['PR_1']));
    r.upsert(info('PA_a', ['PR_1']));
    r.remove('PA_a');
    r.remove('PA_a');
    expect(log).toEqual(['participantJoined:PA_a', 'add:PA_a:PR_1', 'add:PA_a:PR_1', 'drop:PA_a', 'participantLeft:PA_a']);
    expect(r.others.size).toBe(0);
  });

  it('reconciles with a snapshot: who left, who came, which tracks remain', () => {
    const { roster: r, log } = roster();
    r.upsert(info('PA_a', ['PR_1']));
    r.upsert(info('PA_b'));
    log.length = 0;
    r.reconcile([info('PA_a', ['PR_2']), info('PA_c')]);
    expect(log).toEqual(['drop:PA_b', 'participantLeft:PA_b', 'add:PA_a:PR_2', 'drop:PA_a:keep PR_2', 'participantJoined:PA_c', 'drop:PA_c:keep ']);
    expect([...r.others.keys()]).toEqual(['PA_a', 'PA_c']);
  });

  it('keeps our former sessions ours after a rejoin, never someone else', () => {
    const { roster: r, log } = roster();
    r.setLocal(info('PA_me1'), new Map(), new Map());
    r.setLocal(info('PA_me2'), new Map(), new Map());
    expect(r.local.id).toBe('PA_me2');
    expect(r.local.isLocal).toBe(true);
    expect(r.isOwn('PA_me1')).toBe(true);
    expect(r.participantOf('PA_me1')).toBe(r.local);
    // byId is this session only (a recording's `by`, the active speaker).
    expect(r.byId('PA_me1')).toBeUndefined();
    expect(r.byId('PA_me2')).toBe(r.local);
    expect(r.othersIn([info('PA_me1'), info('PA_a')]).map((p) => p.participantId)).toEqual(['PA_a']);
    r.upsert(info('PA_me1'));
    expect(log).toEqual([]);
    expect(r.participantOf('')).toBeUndefined();
  });
});
