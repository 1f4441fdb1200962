import { describe, expect, it, vi } from 'vitest';
import type { Participant, RecordingEvent } from '../types.js';
import { remoteAgent } from '../testing/roomHelpers.js';
import { Recording, type RecordingContext } from './Recording.js';

const agent: Participant = remoteAgent();

function recording() {
  const events: RecordingEvent[] = [];
  const stateAfter: Record<string, string> = { startRecording: 'started', pauseRecording: 'paused', resumeRecording: 'resumed', stopRecording: 'stopped' };
  const request = vi.fn(async (method: string) => ({ recordingId: 'RC_1', state: stateAfter[method], by: 'PA_a' }));
  const context = {
    signaling: { request },
    participantById: (id: string) => (id === agent.id ? agent : undefined),
    emit: (_event: 'recording', event: RecordingEvent) => void events.push(event),
  } as unknown as RecordingContext;
  return { recording: new Recording(context), events, request };
}

describe('Recording', () => {
  it('tells of each change of state once, with who did it', () => {
    const { recording: r, events } = recording();
    r.update({ recordingId: 'RC_1', state: 'started', by: 'PA_a' });
    r.update({ recordingId: 'RC_1', state: 'started', by: 'PA_a' });
    r.update({ recordingId: 'RC_1', state: 'paused', by: 'PA_gone' });
    expect(events).toEqual([
      { recordingId: 'RC_1', state: 'started', by: agent },
      { recordingId: 'RC_1', state: 'paused', by: undefined },
    ]);
    expect(r.current).toBe(events[1]);
  });

  it('reports a recording that ended while away as stopped, once; nothing when there was none', () => {
    const { recording: r, events } = recording();
    r.update(undefined);
    expect(events).toEqual([]);
    r.update({ recordingId: 'RC_1', state: 'started', by: 'PA_a' });
    r.update(undefined);
    r.update(undefined);
    expect(events.map((e) => `${e.recordingId}:${e.state}:${e.by?.id ?? 'system'}`)).toEqual(['RC_1:started:PA_a', 'RC_1:stopped:system']);
  });

  it("answers the controls with the server's status, leaving the event to the notification", async () => {
    const { recording: r, events, request } = recording();
    await expect(r.start()).resolves.toEqual({ recordingId: 'RC_1', state: 'started', by: agent });
    await expect(r.pause()).resolves.toMatchObject({ state: 'paused' });
    await expect(r.stop()).resolves.toMatchObject({ state: 'stopped' });
    expect(request.mock.calls.map((c) => c[0])).toEqual(['startRecording', 'pauseRecording', 'stopRecording']);
    expect(events).toEqual([]);
  });
});
