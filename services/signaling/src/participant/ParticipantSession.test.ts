import { describe, expect, it } from 'vitest';
import { CloseCode } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, PROTOCOL_VERSION } from '@gateway/common';
import { RecordingLink, fakeSfu, sessionFor, silentLog } from '../testing/fakes.js';
import { ParticipantSession } from './ParticipantSession.js';
import { parseResumeToken } from './resumeToken.js';

describe('ParticipantSession', () => {
  it('writes its record, then writes against the revision it last wrote', async () => {
    const { session, store } = sessionFor();
    await session.save();
    const first = await store.get('demo', 'room-1', 'PA_1');
    expect(first?.record.owner).toBe('replica-a');
    session.transports.add('TR_1');
    await session.persist();
    const second = await store.get('demo', 'room-1', 'PA_1');
    expect(second!.revision).toBeGreaterThan(first!.revision);
    expect(second!.record.transportIds).toEqual(['TR_1']);
  });

  it('lets go, closing the socket as replaced, when another replica owns the record now', async () => {
    const { session, store, lost } = sessionFor();
    const link = new RecordingLink();
    session.attach(link);
    await session.save();
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await store.put('demo', 'room-1', { ...stored.record, owner: 'replica-b' }, stored.revision);
    await session.persist();
    expect(link.closed?.code).toBe(CloseCode.CLOSE_CODE_SESSION_REPLACED);
    expect(lost).toEqual([session]);
    expect((await store.get('demo', 'room-1', 'PA_1'))!.record.owner).toBe('replica-b');
  });

  it('asks the client to rejoin, and does not write the record again, when it was deleted behind its back', async () => {
    const { session, store, lost } = sessionFor();
    const link = new RecordingLink();
    session.attach(link);
    await session.save();
    await store.delete('demo', 'room-1', 'PA_1');
    await session.persist();
    expect(link.notifications).toEqual([{ $case: 'rejoinRequired', value: { reason: 'session_lost' } }]);
    expect(link.closed?.code).toBe(CloseCode.CLOSE_CODE_REJOIN_REQUIRED);
    expect(lost).toEqual([session]);
    expect(await store.get('demo', 'room-1', 'PA_1')).toBeUndefined();
  });

  it('writes again at the current revision when this replica still owns the record', async () => {
    const { session, store, lost } = sessionFor();
    await session.save();
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await store.put('demo', 'room-1', stored.record, stored.revision);
    session.transports.add('TR_2');
    await session.save();
    expect(lost).toEqual([]);
    expect((await store.get('demo', 'room-1', 'PA_1'))!.record.transportIds).toEqual(['TR_2']);
  });

  it('claims a record only at the revision it was read at', async () => {
    const { session, store } = sessionFor();
    await session.save();
    const stored = (await store.get('demo', 'room-1', 'PA_1'))!;
    await expect(session.claim(stored.revision + 5)).rejects.toThrow();
    await expect(session.claim(stored.revision)).resolves.toBeUndefined();
  });

  it('writes nothing once ended; save says so', async () => {
    const { session, store } = sessionFor();
    expect(session.markEnded()).toBe(true);
    expect(session.markEnded()).toBe(false);
    await session.persist();
    expect(store.puts).toBe(0);
    await expect(session.save()).rejects.toMatchObject({ code: ErrorCode.SESSION_EXPIRED });
  });

  it('comes back from its record with its media, grants and resume secret', async () => {
    const { session, resumeToken, store, persistence } = sessionFor();
    session.transports.add('TR_1');
    session.recvTransportId = 'TR_1';
    session.tracks.set('PR_1', { producerId: 'PR_1', source: 'camera', kind: 'video', paused: false });
    session.consumers.set('CO_1', 'PR_9');
    await session.save();
    const { record } = (await store.get('demo', 'room-1', 'PA_1'))!;
    const back = ParticipantSession.fromRecord(persistence, silentLog, 'demo', 'room-1', record, fakeSfu().client);
    const again = back.toRecord();
    expect({
      info: again.info,
      transportIds: again.transportIds,
      recvTransportId: again.recvTransportId,
      consumers: again.consumers,
      nodeId: again.nodeId,
      tokenId: again.tokenId,
      grants: again.grants,
    }).toEqual({
      info: record.info,
      transportIds: ['TR_1'],
      recvTransportId: 'TR_1',
      consumers: { CO_1: 'PR_9' },
      nodeId: 'N1',
      tokenId: 'TK_1',
      grants: record.grants,
    });
    expect(back.grant.grants).toEqual(session.grant.grants);
    expect(back.matchesResumeSecret(parseResumeToken(resumeToken)!.secret)).toBe(true);
    expect(back.matchesResumeSecret('not-it')).toBe(false);
  });

  it('tracks its socket: a new one replaces the old, a detach of another is ignored', () => {
    const { session } = sessionFor();
    const first = new RecordingLink();
    const second = new RecordingLink();
    session.attach(first);
    session.attach(second);
    expect(first.closed?.code).toBe(CloseCode.CLOSE_CODE_SESSION_REPLACED);
    expect(session.detach(first)).toBe(false);
    expect(session.connected).toBe(true);
    expect(session.detach(second)).toBe(true);
    expect(session.connected).toBe(false);
    expect(session.disconnectedAt).toBeGreaterThan(0);
  });

  it("answers a join with the server's protocol version, whatever the client sent", () => {
    const { session } = sessionFor();
    session.clientProtocolVersion = 99;
    const response = session.joinResponse({
      participants: [],
      routerRtpCapabilities: {},
      resumeToken: 't',
      resumeWindowMs: 1,
      iceServers: [],
      recording: undefined,
      messages: [],
      smartActions: [],
      activeSpeakerParticipantId: '',
    });
    expect(response.protocolVersion).toBe(PROTOCOL_VERSION);
  });
});
