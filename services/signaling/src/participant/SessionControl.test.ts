import { describe, expect, it } from 'vitest';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { SessionControl as ControlMessage, SessionControlReply, type ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
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
  const removed: string[] = [];
  const finished: string[] = [];
  let otherOwner: string | undefined;
  return {
    removed,
    finished,
    /** The replica the next removal reports as having taken the session over. */
    takenOverBy(replica: string) {
      otherOwner = replica;
    },
    get: (id: string) => held.find((s) => s.participantId === id && !s.ended),
    remove: async (session: ParticipantSession) => {
      session.markEnded();
      removed.push(session.participantId);
      return { first: true, otherOwner, finish: async () => void finished.push(session.participantId) };
    },
  };
}

/** A participant store holding `record` (or nothing) for every participant. */
const storeWith = (record?: Partial<ParticipantRecord>) => ({ get: async () => (record ? { record: record as ParticipantRecord, revision: 1 } : undefined) });
const noStore = { get: () => Promise.reject(new Error('not read')) };

describe('SessionControl', () => {
  it('removes a session held here through the registry, asking nobody', async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const sessions = registry(session);
    const { nc, requests } = fakeNats(() => Promise.reject(new Error('not asked')));
    await new SessionControl({ nc, sessions, store: noStore, hub: { publish() {} }, log: silentLog }).remove('demo', 'room-1', 'PA_1');
    expect(sessions.removed).toEqual(['PA_1']);
    expect(requests).toEqual([]);
  });

  it('passes a removal on to a replica that took the session over before it was marked', async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const sessions = registry(session);
    sessions.takenOverBy('replica-b');
    const { nc, requests } = fakeNats(async () => SessionControlReply.encode({ code: '', message: '', track: undefined, participant: undefined }).finish());
    await new SessionControl({ nc, sessions, store: noStore, hub: { publish() {} }, log: silentLog }).remove('demo', 'room-1', 'PA_1');
    await new Promise((r) => setTimeout(r, 10));
    expect(sessions.removed).toEqual(['PA_1']);
    expect(requests).toEqual(['gateway.demo.session.PA_1.control']);
    expect(sessions.finished).toEqual(['PA_1']);
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
      store: noStore,
      hub: { publish: (_t, _r, e) => published.push(e) },
      log: silentLog,
    });
    expect(await control.mute('demo', 'room-1', 'PA_1', 'PR_1')).toEqual({ producerId: 'PR_1', source: 'microphone', kind: 'audio', paused: true });
    expect(sfu.calls.map((c) => c.method)).toEqual(['pauseProducer']);
    expect(published).toEqual([{ $case: 'producerPaused', value: { participantId: 'PA_1', producerId: 'PR_1' } }]);
    expect(link.notifications).toEqual([{ $case: 'trackMuted', value: { producerId: 'PR_1', by: 'server' } }]);
    await expect(control.mute('demo', 'room-1', 'PA_1', 'PR_none')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
  });

  it("asks the holder of a session held elsewhere, on its tenant's subject, and takes its answer or its error as sent", async () => {
    const answers = [
      SessionControlReply.encode({ code: '', message: '', track: { producerId: 'PR_1', source: 'camera', kind: 'video', paused: true }, participant: undefined }).finish(),
      SessionControlReply.encode({ code: 'NOT_FOUND', message: 'no such producer in this session', track: undefined, participant: undefined }).finish(),
      SessionControlReply.encode({ code: 'INTERNAL', message: 'sfu said: boom', track: undefined, participant: undefined }).finish(),
    ];
    const { nc, requests } = fakeNats(async () => answers.shift()!);
    const control = new SessionControl({ nc, sessions: registry(), store: noStore, hub: { publish() {} }, log: silentLog });
    expect((await control.mute('acme', 'r', 'PA_9', 'PR_1')).paused).toBe(true);
    await expect(control.mute('acme', 'r', 'PA_9', 'PR_1')).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    // The requester's HTTP boundary hides an internal message; the hop passes it as it is.
    await expect(control.mute('acme', 'r', 'PA_9', 'PR_1')).rejects.toMatchObject({ code: ErrorCode.INTERNAL, message: 'sfu said: boom' });
    expect(requests).toEqual(['gateway.acme.session.PA_9.control', 'gateway.acme.session.PA_9.control', 'gateway.acme.session.PA_9.control']);
  });

  it('fails UNAVAILABLE when no replica answers, and never acts on a session of another tenant or room', async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const { nc } = fakeNats(() => Promise.reject(new GatewayError(ErrorCode.TIMEOUT, 'timeout')));
    const sessions = registry(session);
    const control = new SessionControl({ nc, sessions, store: storeWith({ removedAtMs: 0 }), hub: { publish() {} }, log: silentLog });
    // Held here, but under the demo tenant's room-1: another tenant or room is asked for elsewhere.
    await expect(control.remove('globex', 'room-1', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    await expect(control.remove('demo', 'room-2', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    await expect(control.mute('demo', 'room-2', 'PA_1', 'PR_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    expect(sessions.removed).toEqual([]);
  });

  it('counts a removal of a participant already gone as done, asking nobody', async () => {
    const { nc, requests } = fakeNats(() => Promise.reject(new Error('not asked')));
    await new SessionControl({ nc, sessions: registry(), store: storeWith(), hub: { publish() {} }, log: silentLog }).remove('demo', 'room-1', 'PA_1');
    expect(requests).toEqual([]);
  });

  it('counts a removal nobody answered as done when the record is gone or marked removed', async () => {
    const { nc } = fakeNats(() => Promise.reject(new GatewayError(ErrorCode.TIMEOUT, 'timeout')));
    const control = (store: { get: () => Promise<unknown> }) => new SessionControl({ nc, sessions: registry(), store: store as typeof noStore, hub: { publish() {} }, log: silentLog });
    // Present when asked for, then gone or marked once the request went unanswered.
    const then = (later?: Partial<ParticipantRecord>) => {
      const reads = [{ record: { removedAtMs: 0 } as ParticipantRecord, revision: 1 }, later ? { record: later as ParticipantRecord, revision: 2 } : undefined];
      return { get: async () => reads.shift() };
    };
    await expect(control(then()).remove('demo', 'room-1', 'PA_1')).resolves.toBeUndefined();
    await expect(control(then({ removedAtMs: 1 })).remove('demo', 'room-1', 'PA_1')).resolves.toBeUndefined();
    await expect(control(storeWith({ removedAtMs: 0 })).remove('demo', 'room-1', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    await expect(control(noStore).remove('demo', 'room-1', 'PA_1')).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
  });

  it("answers only for a session held here whose tenant, participant and room are the message's and the subject's", async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const responses: Array<{ subject: string; reply: SessionControlReply }> = [];
    const message = (subject: string, participantId = 'PA_1', room = 'room-1'): Msg =>
      ({
        subject,
        data: ControlMessage.encode({ participantId, room, action: { $case: 'remove', value: {} } }).finish(),
        respond: (data: Uint8Array) => responses.push({ subject, reply: SessionControlReply.decode(data) }) > 0,
      }) as unknown as Msg;
    const sessions = registry(session);
    const { nc } = fakeNats(
      () => Promise.reject(new Error('not asked')),
      [
        message('gateway.globex.session.PA_1.control'),
        // The subject names another participant than the message (a requester allowed on PA_2's subject only).
        message('gateway.demo.session.PA_2.control'),
        message('gateway.demo.session.PA_2.control', 'PA_2'),
        // Another room of the tenant.
        message('gateway.demo.session.PA_1.control', 'PA_1', 'room-2'),
        message('gateway.demo.session.PA_1.control'),
      ],
    );
    new SessionControl({ nc, sessions, store: noStore, hub: { publish() {} }, log: silentLog }).listen();
    await new Promise((r) => setTimeout(r, 20));
    expect(responses).toEqual([{ subject: 'gateway.demo.session.PA_1.control', reply: { code: '', message: '', track: undefined, participant: undefined } }]);
    expect(sessions.removed).toEqual(['PA_1']);
  });

  it('survives a reply that cannot be sent', async () => {
    const { session } = sessionFor({ participantId: 'PA_1' });
    const failing = {
      subject: 'gateway.demo.session.PA_1.control',
      data: ControlMessage.encode({ participantId: 'PA_1', room: 'room-1', action: { $case: 'remove', value: {} } }).finish(),
      respond: () => {
        throw new Error('connection closed');
      },
    } as unknown as Msg;
    const sessions = registry(session);
    const { nc } = fakeNats(() => Promise.reject(new Error('not asked')), [failing]);
    new SessionControl({ nc, sessions, store: noStore, hub: { publish() {} }, log: silentLog }).listen();
    await new Promise((r) => setTimeout(r, 20));
    expect(sessions.removed).toEqual(['PA_1']);
  });
});
