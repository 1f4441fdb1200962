import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import {
  ArtifactStore,
  DEMO_TENANT_KEK,
  DeviceKeys,
  StaticKeyring,
  buckets,
  listEntries,
  openBucket,
  openParticipants,
  sealParticipants,
  streams,
  subjects,
  type SessionParticipant,
} from '@gateway/common';
import { AttachmentReady, DataSubjectAudit, DataSubjectRequest, DataSubjectResult, RoomSessionRecord, SessionEnded } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, PostgresServer, startCrmSyncProcess, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { TestClients } from '../support/wsClient.js';
import { demoToken, twoTenantEnv } from '../support/tokens.js';
import { adminApi } from '../support/crmSync.js';
import { photoWithGps } from '../support/images.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { readTranscripts } from '../support/events.js';
import { metricValue } from '../support/metrics.js';

const CUSTOMER_PASSWORD = 'customer-db-password-0452';

/**
 * Data-subject requests that reach live rooms, against real processes: nats-server, an SFU,
 * signaling, a recorder, crm-sync and a customer's PostgreSQL. An end user is erased during a
 * call (their chat, upload, Smart Action, device key and the room's recording go, and nothing of
 * theirs is handed over when the room ends); their contact details are corrected in a pending
 * event and in a live session, and the destination gets the corrected ones.
 */
describe('data-subject requests reaching live rooms', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let postgres: PostgresServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-dsr-live-'));
  const clients = new TestClients();

  beforeAll(async () => {
    [nats, postgres] = await Promise.all([NatsServer.start(), PostgresServer.start()]);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [sig, recorder, crm] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }),
      startRecorderProcess({ natsUrl: nats.url, workDir, env: { GATEWAY_TENANT_KEYS: twoTenantEnv.GATEWAY_TENANT_KEYS } }),
      startCrmSyncProcess({ natsUrl: nats.url, env: { ...twoTenantEnv, CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1' } }),
    ]);
    nc = await nats.connect();
  }, 90_000);

  afterAll(async () => {
    clients.closeAll();
    await nc?.close();
    await crm?.stop();
    await recorder?.stop();
    await sig?.stop();
    await sfu?.stop();
    await Promise.all([postgres?.stop(), nats?.stop()]);
    rmSync(workDir, { recursive: true, force: true });
  });

  const admin = (target: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(target, init);
  const joined = (token: string) => clients.join(sig.wsUrl, token);
  const cachedChatKeys = async () => (await metricValue(sig.opsPort, 'gateway_signaling_chat_keys_cached')) ?? 0;
  const roomParticipants = async (room: string): Promise<SessionParticipant[]> => {
    const entry = await (await openBucket(nc, buckets.roomSessions)).get(`demo.${room}`);
    const record = RoomSessionRecord.decode(entry!.value);
    return openParticipants(keyring, 'demo', record.sessionId, record.sealedParticipants);
  };
  /** The pending events of a subject whose payload `match` accepts (they wait: no destination yet). */
  const pendingEvents = async <T>(stream: string, subject: string, decode: (data: Uint8Array) => T, match: (event: T) => boolean): Promise<T[]> => {
    const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: subject });
    const found: T[] = [];
    for (let m = await consumer.next({ expires: 1_000 }); m; m = await consumer.next({ expires: 1_000 })) if (match(decode(m.data))) found.push(decode(m.data));
    return found;
  };

  it('erases an end user during a live call, and nothing of theirs is handed over when the room ends', async () => {
    const room = `dsr-${Date.now()}`;
    const subject = await joined(await demoToken({ room, identity: 'ext-live-1', role: 'end_user', phoneNumber: '+14155550123', crmContactId: 'CRM-LIVE-1' }));
    const other = await joined(await demoToken({ room, identity: 'ext-other', role: 'end_user' }));
    const agent = await joined(await demoToken({ room, identity: 'agent-1', role: 'agent', canRecord: true }));
    const send = (await subject.client.request('createTransport', { direction: 'send' })).createTransport;
    await subject.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(2222), source: 'microphone' });
    const recording = (await agent.client.request('startRecording', {})).startRecording;
    expect(recording.recordingId).toMatch(/^RC_/);

    await subject.client.request('sendMessage', { text: 'mine: my card is in the drawer', clientMessageId: 'm1' });
    await other.client.request('sendMessage', { text: 'theirs: hello', clientMessageId: 'o1' });
    await agent.client.request('sendMessage', { text: 'agent: how can I help', clientMessageId: 'a1' });
    const actionId = (await agent.client.request('requestSmartAction', { kind: 'photo', participantId: subject.join.participant.participantId })).requestSmartAction.actionId;
    const uploaded = await fetch(`${sig.url}/v1/smart-actions/${actionId}/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${subject.join.resumeToken}`, 'content-type': 'image/jpeg' },
      body: new Uint8Array(await photoWithGps()),
    });
    expect(uploaded.status).toBe(201);
    const { artifactId } = await uploaded.json();
    const deviceKeys = new DeviceKeys(await openBucket(nc, buckets.deviceKeys));
    await deviceKeys.add('demo', 'ext-live-1', { id: 'cred-live', publicKey: 'AAAA', counter: 0, transports: ['internal'], registeredAtMs: Date.now() });
    const artifacts = await ArtifactStore.open(nc, keyring);
    expect((await artifacts.get('demo', artifactId)).data.length).toBeGreaterThan(0);
    const keysBefore = await cachedChatKeys();
    expect(keysBefore).toBeGreaterThanOrEqual(1);

    const erased = await admin('/v1/data-subjects?externalId=ext-live-1', { method: 'DELETE' });
    expect(erased.status).toBe(200);
    const counts = await erased.json();
    expect(counts).toMatchObject({ deviceKeys: 1, live: { rooms: 1, participants: 1, chatMessages: 1, smartActions: 1, attachments: 1, recordings: 1 } });

    // This replica let go of the conversation's unwrapped key (the next read unwraps it again).
    expect(await cachedChatKeys()).toBe(keysBefore - 1);

    // Gone from the room: chat, upload, action record, device key, recording; their entry marked.
    const late = await joined(await demoToken({ room, identity: 'agent-2', role: 'agent' }));
    expect(late.join.messages.map((m: { identity: string }) => m.identity).sort()).toEqual(['agent-1', 'ext-other']);
    expect(late.join.smartActions ?? []).toEqual([]);
    await expect(artifacts.get('demo', artifactId)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(await listEntries(await openBucket(nc, buckets.smartActions), `demo.${room}.*`)).toEqual([]);
    expect(await deviceKeys.list('demo', 'ext-live-1')).toEqual([]);
    expect(await (await openBucket(nc, buckets.roomRecordings)).get(`demo.${room}`).then((e) => (e?.operation === 'PUT' ? e : null))).toBeNull();
    expect(await (await openBucket(nc, buckets.recordings)).get(`demo.${recording.recordingId}`).then((e) => (e?.operation === 'PUT' ? e : null))).toBeNull();
    const marked = (await roomParticipants(room)).find((p) => p.externalId === 'ext-live-1');
    expect(marked).toMatchObject({ erased: true, phoneNumber: '', crmContactId: '' });

    // What they do afterwards is not kept: the room is not recorded again, nothing is asked of
    // them, they register no device key, and their messages are left out at the end.
    expect((await agent.client.request('startRecording', {})).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    await subject.client.request('sendMessage', { text: 'mine: after erasure', clientMessageId: 'm2' });
    expect((await agent.client.request('requestSmartAction', { kind: 'photo', participantId: subject.join.participant.participantId })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((await subject.client.request('deviceKeyOptions', {})).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    // Joining again (a new participant) does not lift the mark, nor bring their details back.
    const again = await joined(await demoToken({ room, identity: 'ext-live-1', role: 'end_user', phoneNumber: '+14155550123' }));
    await again.client.request('sendMessage', { text: 'mine: after joining again', clientMessageId: 'm3' });
    const entries = (await roomParticipants(room)).filter((p) => p.externalId === 'ext-live-1');
    expect(entries).toHaveLength(2);
    for (const entry of entries) expect(entry).toMatchObject({ erased: true, phoneNumber: '' });

    // The audit has counts, never the person.
    const audits = await pendingEvents(
      streams.audit.name,
      subjects.audit('demo', 'data_subject'),
      (d) => ({ record: DataSubjectAudit.decode(d), bytes: Buffer.from(d) }),
      ({ record }) => record.requestId === counts.requestId,
    );
    expect(audits).toHaveLength(1);
    expect(audits[0]!.record).toMatchObject({ action: 'erase', deviceKeys: 1, live: { rooms: 1, chatMessages: 1, attachments: 1, recordings: 1 } });
    expect(audits[0]!.bytes.includes('ext-live-1')).toBe(false);

    for (const { client } of [subject, again, other, agent, late]) await client.request('leave');
    const transcript = await (await readTranscripts(nc)).forRoom(room, 15_000);
    expect(transcript.contacts.map((c) => c.externalId).sort()).toEqual(['agent-1', 'ext-other']);
    expect(transcript.messageCount).toBe(2);
    expect(transcript.smartActions).toEqual([]);
    for (const artifact of transcript.artifacts) {
      const text = (await artifacts.get('demo', artifact.artifactId)).data.toString();
      expect(text).not.toContain('ext-live-1');
      expect(text).not.toContain('mine:');
    }
    expect(
      await pendingEvents(
        streams.transcripts.name,
        subjects.attachmentReady('demo'),
        (d) => AttachmentReady.decode(d),
        (e) => e.room === room,
      ),
    ).toEqual([]);
    const [ended] = await waitFor(
      async () => {
        const found = await pendingEvents(
          streams.sessions.name,
          subjects.sessionEnded('demo'),
          (d) => SessionEnded.decode(d),
          (e) => e.room === room,
        );
        return found.length > 0 ? found : undefined;
      },
      10_000,
      'the session',
    );
    const people = await openParticipants(keyring, 'demo', ended!.sessionId, ended!.sealedParticipants);
    expect(people.map((p) => p.externalId).sort()).toEqual(['agent-1', 'agent-2', 'ext-other']);
    expect(JSON.stringify(people)).not.toContain('+14155550123');
  });

  it('corrects contact details in a pending event and in a live session, and the destination gets the corrected ones', async () => {
    const room = `rect-${Date.now()}`;
    const user = await joined(await demoToken({ room, identity: 'ext-rect-1', role: 'end_user', phoneNumber: '+14155550100', crmContactId: 'CRM-OLD-1' }));
    const agent = await joined(await demoToken({ room, identity: 'agent-9', role: 'agent' }));
    const sessionId = `SE_rect${Date.now()}`;
    const before: SessionParticipant[] = [
      { participantId: 'PA_r1', role: 'end_user', externalId: 'ext-rect-1', crmContactId: 'CRM-OLD-1', phoneNumber: '+14155550100', deviceIds: [], joinedAtMs: Date.now() - 5_000 },
      { participantId: 'PA_r2', role: 'agent', externalId: 'agent-9', crmContactId: '', phoneNumber: '', deviceIds: [], joinedAtMs: Date.now() - 5_000 },
    ];
    await jetstream(nc).publish(
      subjects.sessionEnded('demo'),
      SessionEnded.encode({
        tenant: 'demo',
        room: 'r-past',
        sessionId,
        startedAtMs: Date.now() - 5_000,
        endedAtMs: Date.now(),
        conversationId: '',
        sealedParticipants: await sealParticipants(keyring, 'demo', sessionId, before),
      }).finish(),
    );

    // Refused before anything changes: no detail, a bad number, not JSON.
    const patch = (body: string, type = 'application/json') => admin('/v1/data-subjects?externalId=ext-rect-1', { method: 'PATCH', body, headers: { 'content-type': type } });
    expect((await patch('{}')).status).toBe(400);
    expect((await patch('{"phoneNumber":"555"}')).status).toBe(400);
    expect((await patch('{"phoneNumber":"+14155550199","admin":true}')).status).toBe(400);
    expect((await patch('phoneNumber=+14155550199', 'text/plain')).status).toBe(415);

    const corrected = await patch(JSON.stringify({ phoneNumber: '+14155550199', crmContactId: 'CRM-NEW-1' }));
    expect(corrected.status).toBe(200);
    expect(await corrected.json()).toMatchObject({ deliveries: 1, live: { rooms: 1, participants: 1 } });
    expect((await roomParticipants(room)).find((p) => p.externalId === 'ext-rect-1')).toMatchObject({ phoneNumber: '+14155550199', crmContactId: 'CRM-NEW-1' });

    // The external id too: the corrected event is corrected again, and what the end user wrote
    // in the live room is handed over under the corrected one.
    await user.client.request('sendMessage', { text: 'hello from the corrected one', clientMessageId: 'r1' });
    const renamed = await patch(JSON.stringify({ externalId: 'ext-rect-2' }));
    expect(await renamed.json()).toMatchObject({ deliveries: 1, live: { rooms: 1, participants: 1 } });
    const audits = await pendingEvents(
      streams.audit.name,
      subjects.audit('demo', 'data_subject'),
      (d) => ({ record: DataSubjectAudit.decode(d), bytes: Buffer.from(d) }),
      ({ record }) => record.action === 'rectify',
    );
    expect(audits.map(({ record }) => record)).toEqual([
      expect.objectContaining({ deliveries: 1, live: expect.objectContaining({ participants: 1 }) }),
      expect.objectContaining({ deliveries: 1, live: expect.objectContaining({ participants: 1 }) }),
    ]);
    for (const { bytes } of audits) for (const detail of ['ext-rect', '+1415555', 'CRM-']) expect(bytes.includes(detail)).toBe(false);

    // The destination gets the corrected details, for the pending session and the live one.
    const connector = { type: 'postgres', config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: CUSTOMER_PASSWORD } };
    expect((await admin('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(connector) })).status).toBe(200);
    await user.client.request('leave');
    await agent.client.request('leave');
    const db = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await db.connect();
    try {
      const contactsOf = (where: string, value: string) =>
        waitFor(
          async () =>
            (await db.query(`select contacts from gateway_sessions where kind = 'session' and ${where} = $1`, [value]).catch(() => undefined))?.rows[0]?.contacts as
              | Array<Record<string, unknown>>
              | undefined,
          15_000,
          `the session row (${where})`,
        );
      for (const contacts of [await contactsOf('delivery_id', sessionId), await contactsOf('room', room)]) {
        expect(contacts.find((c) => c.role === 'end_user')).toMatchObject({ externalId: 'ext-rect-2', phoneNumber: '+14155550199', crmContactId: 'CRM-NEW-1' });
        expect(JSON.stringify(contacts)).not.toContain('+14155550100');
        expect(JSON.stringify(contacts)).not.toContain('ext-rect-1');
      }
      const transcript = await waitFor(
        async () => (await db.query(`select contacts from gateway_sessions where kind = 'transcript' and room = $1`, [room])).rows[0]?.contacts as Array<Record<string, unknown>> | undefined,
        15_000,
        'the transcript row',
      );
      expect(transcript.map((c) => c.externalId).sort()).toEqual(['ext-rect-2']);
      expect((await db.query('select count(*)::int as n from gateway_sessions where delivery_id = $1', [sessionId])).rows[0].n).toBe(1);
    } finally {
      await db.end();
    }
  });

  it('answers malformed data-subject requests with a refusal, and only crm-sync may send them', async () => {
    const asCrm = await nats.connect('crm-sync');
    try {
      const ask = async (payload: Uint8Array, tenant = 'demo') => DataSubjectResult.decode((await asCrm.request(subjects.dataSubjectRequest(tenant), payload, { timeout: 10_000 })).data);
      const valid = { tenant: 'demo', requestId: 'DSR_fuzz', externalId: 'ext-nobody', action: { $case: 'erase' as const, value: {} } };
      expect(await ask(DataSubjectRequest.encode(valid).finish())).toMatchObject({ requestId: 'DSR_fuzz', rooms: 0, errorCode: '' });
      let seed = 7;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const mutations: Array<() => Uint8Array> = [
        () => Buffer.from(Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))),
        () => DataSubjectRequest.encode({ ...valid, tenant: 'globex' }).finish(),
        () => DataSubjectRequest.encode({ ...valid, externalId: '' }).finish(),
        () => DataSubjectRequest.encode({ ...valid, externalId: 'x'.repeat(300) }).finish(),
        () => DataSubjectRequest.encode({ ...valid, requestId: 'a.b>' }).finish(),
        () => DataSubjectRequest.encode({ ...valid, action: undefined }).finish(),
        () => DataSubjectRequest.encode({ ...valid, action: { $case: 'rectify', value: {} } }).finish(),
        () => DataSubjectRequest.encode({ ...valid, action: { $case: 'rectify', value: { phoneNumber: '12' } } }).finish(),
        () => DataSubjectRequest.encode({ ...valid, action: { $case: 'rectify', value: { crmContactId: 'c'.repeat(65) } } }).finish(),
      ];
      for (let i = 0; i < 60; i++) {
        const answer = await ask(mutations[Math.floor(rand() * mutations.length)]!());
        expect(answer.errorCode, `case ${i}`).not.toBe('');
        expect(answer.rooms).toBe(0);
      }
      expect((await fetch(`http://127.0.0.1:${sig.opsPort}/readyz`)).status).toBe(200);
    } finally {
      await asCrm.close();
    }
    // Signaling answers them but may not send one (nor may the recorder).
    nats.expectsViolations = true;
    for (const identity of ['signaling', 'recorder'] as const) {
      const conn = await nats.connect(identity);
      try {
        await expect(conn.request(subjects.dataSubjectRequest('demo'), new Uint8Array(), { timeout: 2_000 })).rejects.toThrow();
      } finally {
        await conn.close().catch(() => undefined);
      }
      await waitFor(() => nats.violations.some((line) => line.includes(`identity ${identity}`) && line.includes(subjects.dataSubjectRequest('demo'))), 5_000, `the refusal of ${identity}`);
    }
  });
});
