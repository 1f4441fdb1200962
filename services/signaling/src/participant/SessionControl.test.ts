import { describe, expect, it } from 'vitest';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { SessionControl as ControlMessage, SessionControlReply } from '@gateway/proto/gateway/events/v1/events';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';
import { fakeSfu, RecordingLink, sessionFor, silentLog } from '../testing/fakes.js';
import type { ParticipantSession } from './ParticipantSession.js';
import { SessionControl } from './SessionControl.js';

/** A NATS connection whose requests are answered by `reply` and whose subscription yields `incoming`. */
function fakeNats(reply: (subject: string, data: Uint8Array) => Promise<Uint8Array>, incoming: Msg[] = []) {
  const requests: string[] = [];
  const nc = {
    request: async (subject: string, data: Uint8Array) => {
      requests.push(subject);
      return { data: await reply(subject, data) };
    },
    subscribe: () => ({
      unsubscribe() {},
      async *[Symbol.asyncIterator]() {
        yield* incoming;
      },
    }),
  };
  return { nc: nc as unknown as NatsConnection, requests };
}

function registry(...held: ParticipantSession[]) {
  const ended: Array<{ id: string; reason: string }> = [];
  return {
    ended,
    get: (id: string) => held.find((s) => s.participantId === id),
    end: async (session: ParticipantSession, reason: 'removed') => {
      session.markEnded();
      ended.push({ id: session.participantId, reason });
    },
  };
}

describe('SessionControl', () => {
  it('removes a session held here: ended as removed, its socket closed with 4005 once it is forgotten', async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const link = new RecordingLink();
    session.attach(link);
    const sessions = registry(session);
    const { nc, requests } = fakeNats(() => Promise.reject(new Error('not asked')));
    await new SessionControl({ nc, sessions, hub: { publish() {} }, log: silentLog }).remove('demo', 'room-1', 'PA_1');
    expect(sessions.ended).toEqual([{ id: 'PA_1', reason: 'removed' }]);
    expect(link.closed).toEqual({ code: CloseCode.CLOSE_CODE_REMOVED, reason: 'removed from the room' });
    expect(requests).toEqual([]);
  });

  it('mutes a track held here: paused on the SFU, the room and the participant told', async () => {
    const sfu = fakeSfu({ pauseProducer: {} });
    const { session } = sessionFor({ participantId: 'PA_1', sfu: sfu.client });
    session.tracks.set('PR_1', { producerId: 'PR_1', source: 'microphone', kind: 'audio', paused: false });
    const link = new RecordingLink();
    session.attach(link);
    const published: unknown[] = [];
    const control = new SessionControl({
      nc: fakeNats(() => Promise.reject(new Error('not asked'))).nc,
      sessions: registry(session),
      hub: { publish: (_t, _r, e) => published.push(e) },
      log: silentLog,
    });
    expect(await control.mute('demo', 'room-1', 'PA_1', 'PR_1')).toEqual({ producerId: 'PR_1', source: 'microphone', kind: 'audio', paused: true });
    expect(sfu.calls.map((c) => c.method)).toEqual(['pauseProducer']);
    expect(published).toEqual([{ $case: 'producerPaused', value: { participantId: 'PA_1', producerId: 'PR_1' } }]);
    expect(link.notifications).toEqual([{ $case: 'trackMuted', value: { producerId: 'PR_1', by: 'server' } }]);
    await expect(control.mute('demo', 'room-1', 'PA_1', 'PR_none')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
  });

  it("asks the holder of a session held elsewhere, on its tenant's subject, and takes its answer or its error", async () => {
    const answers = [
      SessionControlReply.encode({ code: '', message: '', track: { producerId: 'PR_1', source: 'camera', kind: 'video', paused: true } }).finish(),
      SessionControlReply.encode({ code: 'NOT_FOUND', message: 'no such producer in this session', track: undefined }).finish(),
    ];
    const { nc, requests } = fakeNats(async () => answers.shift()!);
    const control = new SessionControl({ nc, sessions: registry(), hub: { publish() {} }, log: silentLog });
    expect((await control.mute('acme', 'r', 'PA_9', 'PR_1')).paused).toBe(true);
    await expect(control.mute('acme', 'r', 'PA_9', 'PR_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(requests).toEqual(['gateway.acme.session.PA_9.control', 'gateway.acme.session.PA_9.control']);
  });

  it('fails UNAVAILABLE when no replica answers, and never acts on a session of another tenant or room', async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const { nc } = fakeNats(() => Promise.reject(new GatewayError(ErrorCode.TIMEOUT, 'timeout')));
    const sessions = registry(session);
    const control = new SessionControl({ nc, sessions, hub: { publish() {} }, log: silentLog });
    // Held here, but under the demo tenant's room-1: another tenant or room is asked for elsewhere.
    await expect(control.remove('globex', 'room-1', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    await expect(control.remove('demo', 'room-2', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect(sessions.ended).toEqual([]);
  });

  it("answers for the sessions held here only when the subject's tenant is theirs", async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const responses: Array<{ subject: string; reply: SessionControlReply }> = [];
    const message = (subject: string): Msg =>
      ({
        subject,
        data: ControlMessage.encode({ participantId: 'PA_1', room: 'room-1', action: { $case: 'remove', value: {} } }).finish(),
        respond: (data: Uint8Array) => responses.push({ subject, reply: SessionControlReply.decode(data) }) > 0,
      }) as unknown as Msg;
    const sessions = registry(session);
    const { nc } = fakeNats(() => Promise.reject(new Error('not asked')), [message('gateway.globex.session.PA_1.control'), message('gateway.demo.session.PA_1.control')]);
    new SessionControl({ nc, sessions, hub: { publish() {} }, log: silentLog }).listen();
    await new Promise((r) => setTimeout(r, 20));
    expect(responses).toEqual([{ subject: 'gateway.demo.session.PA_1.control', reply: { code: '', message: '', track: undefined } }]);
    expect(sessions.ended).toEqual([{ id: 'PA_1', reason: 'removed' }]);
  });
});
