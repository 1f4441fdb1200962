import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { SessionEnded } from '@gateway/proto/gateway/events/v1/events';
import { streams, subjects } from '@gateway/common';
import { NatsServer, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { DEMO_TENANT } from '../../services/signaling/src/config.js';
import { basicAuth } from '../support/crmSync.js';
import { readEvents } from '../support/events.js';
import { metricValue } from '../support/metrics.js';
import { OpenApiContract, specFiles } from '../support/openapi.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { GLOBEX_TENANT, demoToken, globexToken, twoTenantEnv } from '../support/tokens.js';
import { type TestClient, TestClients } from '../support/wsClient.js';

type Caller = typeof DEMO_TENANT | typeof GLOBEX_TENANT | 'nobody' | 'forged';

/**
 * The room API (docs/http-api.md) against real processes: nats-server, an SFU, a recorder and two
 * signaling replicas, so that a participant held by one replica is reached through the other.
 * Every answer is checked against docs/openapi/signaling.yaml as it arrives.
 */
describe('the room API', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-room-api-'));
  const clients = new TestClients();
  const contract = OpenApiContract.load(specFiles.signaling);

  /** A call to the room API of a replica, checked against the contract. */
  const api = (base: string, target: string, options: { method?: string; as?: Caller; json?: unknown; body?: string; headers?: Record<string, string> } = {}) => {
    const as = options.as ?? DEMO_TENANT;
    const headers: Record<string, string> = { ...options.headers };
    if (as === 'forged') headers.authorization = `Basic ${Buffer.from(`${DEMO_TENANT.apiKey}:${GLOBEX_TENANT.apiSecret}`).toString('base64')}`;
    else if (as !== 'nobody') headers.authorization = basicAuth(as);
    return contract.fetch(base, target, { method: options.method ?? 'GET', headers, json: options.json, body: options.body });
  };
  /** A participant of the demo tenant joined through `url`. */
  const join = async (url: string, room: string, identity: string, role: 'agent' | 'end_user', extra: Record<string, unknown> = {}) => {
    const { client, join } = await clients.join(url, await demoToken({ room, identity, role, ...extra }));
    return { client, id: join.participant.participantId as string };
  };
  /** Publishes a microphone (no real media: the SFU has a producer). */
  const publishMicrophone = async (client: TestClient): Promise<string> => {
    const send = (await client.request('createTransport', { direction: 'send' })).createTransport;
    return (await client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
  };
  /** Waits until the room API shows the participant connected (or away). */
  const waitForConnected = (base: string, room: string, participantId: string, connected: boolean) =>
    waitFor(
      async () => {
        const listed = (await api(base, `/v1/rooms/${room}/participants`)).body.participants as Array<{ participantId: string; connected: boolean }>;
        return listed.find((p) => p.participantId === participantId)?.connected === connected || undefined;
      },
      5_000,
      `participant ${participantId} ${connected ? 'connected' : 'away'}`,
    );
  const count = (client: TestClient, kind: string) => client.notifications.filter((n) => kind in n).length;
  const settle = () => new Promise((r) => setTimeout(r, 500));

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [sig1, sig2, recorder] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }),
      startSignalingProcess({ natsUrl: nats.url, env: twoTenantEnv }),
      startRecorderProcess({ natsUrl: nats.url, workDir, env: { RECORDER_CPU_BUDGET: '0.1', GATEWAY_TENANT_KEYS: twoTenantEnv.GATEWAY_TENANT_KEYS } }),
    ]);
    nc = await nats.connect();
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await nc?.close();
    await recorder?.stop();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('refuses every route without the tenant credentials, and changes nothing', async () => {
    const room = `auth-${Date.now()}`;
    const { client, id } = await join(sig1.wsUrl, room, 'u-1', 'end_user');
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/v1/rooms'],
      ['DELETE', `/v1/rooms/${room}`],
      ['GET', `/v1/rooms/${room}/participants`],
      ['DELETE', `/v1/rooms/${room}/participants/${id}`],
      ['POST', `/v1/rooms/${room}/participants/${id}/tracks/PR_x/mute`],
      ['POST', `/v1/rooms/${room}/recording`],
      ['DELETE', `/v1/rooms/${room}/recording`],
      ['POST', `/v1/rooms/${room}/data`, { payload: 'hi' }],
    ];
    for (const [method, target, json] of routes) {
      for (const as of ['nobody', 'forged'] as const) {
        const answer = await api(sig1.url, target, { method, as, json });
        expect(answer.status, `${method} ${target} as ${as}`).toBe(401);
        expect(answer.body.error.code).toBe('UNAUTHENTICATED');
        expect(answer.headers.get('www-authenticate')).toBe('Basic realm="gateway"');
      }
    }
    await settle();
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    expect(count(client, 'dataMessage')).toBe(0);
    expect((await api(sig2.url, `/v1/rooms/${room}/participants`)).body.participants.map((p: { participantId: string }) => p.participantId)).toEqual([id]);
  });

  it('lists rooms and participants, each tenant its own, without contact details', async () => {
    const room = `list-${Date.now()}`;
    const globexRoom = `glist-${Date.now()}`;
    const agent = await join(sig1.wsUrl, room, 'agent-7', 'agent', { name: 'Ann, Support', metadata: '{"team":"billing"}' });
    const user = await join(sig2.wsUrl, room, 'ext-42', 'end_user', { phoneNumber: '+14155550132', crmContactId: 'CRM-0042' });
    const producerId = await publishMicrophone(user.client);
    await clients.join(sig2.wsUrl, await globexToken({ room: globexRoom, identity: 'g-1', role: 'end_user' }));

    const demoRooms = (await api(sig2.url, '/v1/rooms')).body.rooms;
    expect(demoRooms).toContainEqual({ room, participants: 2 });
    expect(demoRooms.map((r: { room: string }) => r.room)).not.toContain(globexRoom);
    const globexRooms = (await api(sig1.url, '/v1/rooms', { as: GLOBEX_TENANT })).body.rooms;
    expect(globexRooms).toEqual([{ room: globexRoom, participants: 1 }]);

    const listed = await api(sig1.url, `/v1/rooms/${room}/participants`);
    expect(listed.status).toBe(200);
    expect(listed.body.room).toBe(room);
    expect(listed.body.participants).toEqual([
      { participantId: agent.id, identity: 'agent-7', role: 'agent', name: 'Ann, Support', metadata: '{"team":"billing"}', joinedAtMs: expect.any(Number), connected: true, tracks: [] },
      {
        participantId: user.id,
        identity: 'ext-42',
        role: 'end_user',
        name: '',
        metadata: '',
        joinedAtMs: expect.any(Number),
        connected: true,
        tracks: [{ trackId: producerId, source: 'microphone', kind: 'audio', muted: false }],
      },
    ]);
    const text = JSON.stringify(listed.body);
    expect(text).not.toContain('4155550132');
    expect(text).not.toContain('CRM-0042');

    // Another tenant sees none of it, whatever it names.
    expect((await api(sig1.url, `/v1/rooms/${room}/participants`, { as: GLOBEX_TENANT })).status).toBe(404);
    expect((await api(sig1.url, `/v1/rooms/${globexRoom}/participants`)).status).toBe(404);

    // The contract check fails on a deliberate violation of this real answer: a field it does not document.
    const leaked = structuredClone(listed.body);
    leaked.participants[1].phoneNumber = '+14155550132';
    const problems = contract.problems({ method: 'GET', target: `/v1/rooms/${room}/participants`, status: 200, headers: listed.headers, body: leaked });
    expect(problems.join('\n')).toMatch(/must NOT have additional properties \(phoneNumber\)/);
  });

  it('mutes a track of a participant held by the other replica; the participant and the room are told', async () => {
    const room = `mute-${Date.now()}`;
    const agent = await join(sig1.wsUrl, room, 'agent-1', 'agent');
    const user = await join(sig2.wsUrl, room, 'ext-1', 'end_user');
    const producerId = await publishMicrophone(user.client);
    const target = `/v1/rooms/${room}/participants/${user.id}/tracks/${producerId}/mute`;

    // Another tenant cannot, and nothing happens.
    expect((await api(sig1.url, target, { method: 'POST', as: GLOBEX_TENANT })).body.error.code).toBe('NOT_FOUND');
    expect((await api(sig1.url, `/v1/rooms/${room}/participants/${user.id}/tracks/PR_none/mute`, { method: 'POST' })).body.error.code).toBe('NOT_FOUND');
    await settle();
    expect(count(user.client, 'trackMuted')).toBe(0);

    const muted = await api(sig1.url, target, { method: 'POST' });
    expect(muted.status).toBe(200);
    expect(muted.body).toEqual({ track: { trackId: producerId, source: 'microphone', kind: 'audio', muted: true } });
    expect(await user.client.waitForNotification('trackMuted')).toEqual({ producerId, by: 'server' });
    expect(await agent.client.waitForNotification('producerPaused')).toEqual({ participantId: user.id, producerId });
    const listed = (await api(sig2.url, `/v1/rooms/${room}/participants`)).body.participants;
    expect(listed.find((p: { participantId: string }) => p.participantId === user.id).tracks[0].muted).toBe(true);
    // Again: nothing more happens.
    expect((await api(sig2.url, target, { method: 'POST' })).body.track.muted).toBe(true);
    await settle();
    expect([count(user.client, 'trackMuted'), count(agent.client, 'producerPaused')]).toEqual([1, 1]);
  });

  it('renames a participant held by the other replica and sets its metadata; the room is told, a resume keeps it', async () => {
    const room = `rename-${Date.now()}`;
    const agent = await join(sig1.wsUrl, room, 'agent-1', 'agent', { name: 'Ann' });
    const user = await join(sig2.wsUrl, room, 'ext-1', 'end_user');
    const target = `/v1/rooms/${room}/participants/${user.id}`;

    // Another tenant, a bad body or nothing to change: refused, and nobody is told anything.
    expect((await api(sig1.url, target, { method: 'PATCH', as: GLOBEX_TENANT, json: { name: 'Sam' } })).body.error.code).toBe('NOT_FOUND');
    for (const json of [{}, { name: 'two\nlines' }, { metadata: 'x'.repeat(4097) }, { name: 'Sam', role: 'agent' }]) {
      expect((await api(sig1.url, target, { method: 'PATCH', json })).body.error.code, JSON.stringify(json)).toBe('BAD_REQUEST');
    }
    await settle();
    expect(count(agent.client, 'participantUpdated')).toBe(0);

    // The end user's token does not allow renaming itself; the customer's backend may.
    const updated = await api(sig1.url, target, { method: 'PATCH', json: { name: 'Sam Lee', metadata: '{"tier":"gold"}' } });
    expect(updated.status).toBe(200);
    expect(updated.body.participant).toMatchObject({ participantId: user.id, identity: 'ext-1', name: 'Sam Lee', metadata: '{"tier":"gold"}' });
    expect(await agent.client.waitForNotification('participantUpdated')).toMatchObject({ participantId: user.id, name: 'Sam Lee', metadata: '{"tier":"gold"}' });
    // Only the name: the metadata stays.
    expect((await api(sig2.url, target, { method: 'PATCH', json: { name: 'Sam' } })).body.participant).toMatchObject({ name: 'Sam', metadata: '{"tier":"gold"}' });
    const listed = (await api(sig1.url, `/v1/rooms/${room}/participants`)).body.participants;
    expect(listed.find((p: { participantId: string }) => p.participantId === user.id)).toMatchObject({ name: 'Sam', metadata: '{"tier":"gold"}' });
  });

  it('sends a data message to everyone on both replicas; a bad one is refused and sends nothing', async () => {
    const room = `data-${Date.now()}`;
    const a = await join(sig1.wsUrl, room, 'agent-1', 'agent');
    const b = await join(sig2.wsUrl, room, 'ext-1', 'end_user');
    const target = `/v1/rooms/${room}/data`;
    const refused: Array<[string, { json?: unknown; body?: string; headers?: Record<string, string> }, number, string]> = [
      ['no payload', { json: {} }, 400, 'BAD_REQUEST'],
      ['an empty payload', { json: { payload: '' } }, 400, 'BAD_REQUEST'],
      ['a field not in the schema', { json: { payload: 'x', to: 'everyone' } }, 400, 'BAD_REQUEST'],
      ['a payload over 16 KiB', { json: { payload: 'é'.repeat(8_193) } }, 400, 'BAD_REQUEST'],
      ['a control character', { json: { payload: 'a\u0000b' } }, 400, 'BAD_REQUEST'],
      ['a bad topic', { json: { payload: 'x', topic: 'a.b' } }, 400, 'BAD_REQUEST'],
      ['a payload of another type', { json: { payload: { toString: 'x' } } }, 400, 'BAD_REQUEST'],
      ['not JSON', { body: '{"payload":', headers: { 'content-type': 'application/json' } }, 400, 'MALFORMED_MESSAGE'],
      ['not JSON by media type', { body: '{"payload":"x"}', headers: { 'content-type': 'text/plain' } }, 415, 'UNSUPPORTED_CONTENT'],
      ['a body over its limit', { json: { payload: 'x'.repeat(40_000) } }, 413, 'FRAME_TOO_LARGE'],
      ['a query', { json: { payload: 'x' } }, 400, 'BAD_REQUEST'],
    ];
    for (const [what, request, status, code] of refused) {
      const answer = await api(sig1.url, what === 'a query' ? `${target}?to=all` : target, { method: 'POST', ...request });
      expect([answer.status, answer.body.error.code], what).toEqual([status, code]);
    }
    expect((await api(sig1.url, target, { method: 'POST', as: GLOBEX_TENANT, json: { payload: 'x' } })).status).toBe(404);

    const sent = await api(sig1.url, target, { method: 'POST', json: { topic: 'crm-update', payload: 'case 123\nupdated' } });
    expect(sent.status).toBe(202);
    expect(sent.body).toEqual({ sentAtMs: expect.any(Number), participants: 2 });
    for (const { client } of [a, b]) expect(await client.waitForNotification('dataMessage')).toEqual({ topic: 'crm-update', payload: 'case 123\nupdated', sentAtMs: sent.body.sentAtMs });
    await settle();
    // Only the good one arrived, once.
    expect([count(a.client, 'dataMessage'), count(b.client, 'dataMessage')]).toEqual([1, 1]);
    // Not chat: nothing was stored for the room's conversation.
    expect(count(a.client, 'message')).toBe(0);
    // The replica counts each operation by outcome.
    expect(await metricValue(sig1.opsPort, 'gateway_signaling_room_api_requests_total', { operation: 'sendData', code: 'OK' })).toBe(1);
    expect(await metricValue(sig1.opsPort, 'gateway_signaling_room_api_requests_total', { operation: 'sendData', code: 'UNSUPPORTED_CONTENT' })).toBe(1);
  });

  it('starts and stops recording as an agent would; everyone is told', async () => {
    const room = `rec-${Date.now()}`;
    const user = await join(sig2.wsUrl, room, 'ext-1', 'end_user');
    await publishMicrophone(user.client);
    expect((await api(sig1.url, `/v1/rooms/${room}/recording`, { method: 'DELETE' })).body.error.code).toBe('NOT_FOUND');
    expect((await api(sig1.url, `/v1/rooms/${room}/recording`, { method: 'POST', as: GLOBEX_TENANT })).status).toBe(404);

    const started = await api(sig1.url, `/v1/rooms/${room}/recording`, { method: 'POST' });
    expect(started.status).toBe(201);
    expect(started.body).toEqual({ recordingId: expect.stringMatching(/^RC_/), state: 'started' });
    expect(await user.client.waitForNotification('recording', 10_000)).toMatchObject({ recordingId: started.body.recordingId, state: 'started' });
    expect((await api(sig2.url, `/v1/rooms/${room}/recording`, { method: 'POST' })).body.error.code).toBe('ALREADY_EXISTS');

    const stopped = await api(sig2.url, `/v1/rooms/${room}/recording`, { method: 'DELETE' });
    expect([stopped.status, stopped.body]).toEqual([200, { recordingId: started.body.recordingId, state: 'stopped' }]);
  }, 90_000);

  it('removes a participant held by the other replica for good: closed with 4005, the room told, its token joins no more', async () => {
    const room = `rm-${Date.now()}`;
    const agent = await join(sig1.wsUrl, room, 'agent-1', 'agent');
    const token = await demoToken({ room, identity: 'ext-1', role: 'end_user' });
    const { client: userClient, join: joined } = await clients.join(sig2.wsUrl, token);
    const user = { client: userClient, id: joined.participant.participantId as string };
    const elsewhere = await join(sig1.wsUrl, `${room}-b`, 'agent-2', 'agent');
    expect((await api(sig1.url, `/v1/rooms/${room}/participants/${agent.id}`, { method: 'DELETE', as: GLOBEX_TENANT })).status).toBe(404);
    expect((await api(sig1.url, `/v1/rooms/${room}/participants/PA_nobody`, { method: 'DELETE' })).status).toBe(404);
    expect((await api(sig1.url, `/v1/rooms/${room}/participants/${user.id}`, { method: 'DELETE', json: {} })).body.error.code).toBe('BAD_REQUEST');
    // A participant of another room of the tenant, named under this one: not found, and still in its own room.
    expect((await api(sig1.url, `/v1/rooms/${room}/participants/${elsewhere.id}`, { method: 'DELETE' })).status).toBe(404);
    await settle();
    expect(elsewhere.client.ws.readyState).toBe(elsewhere.client.ws.OPEN);
    expect((await api(sig2.url, `/v1/rooms/${room}-b/participants`)).body.participants.map((p: { participantId: string }) => p.participantId)).toEqual([elsewhere.id]);

    const removed = await api(sig1.url, `/v1/rooms/${room}/participants/${user.id}`, { method: 'DELETE' });
    expect([removed.status, removed.body]).toEqual([204, undefined]);
    expect(await user.client.closed).toEqual({ code: 4005, reason: 'removed from the room' });
    expect(await agent.client.waitForNotification('participantLeft')).toEqual({ participantId: user.id, reason: 'removed' });
    expect((await api(sig2.url, `/v1/rooms/${room}/participants`)).body.participants.map((p: { participantId: string }) => p.participantId)).toEqual([agent.id]);
    expect((await api(sig2.url, `/v1/rooms/${room}/participants/${user.id}`, { method: 'DELETE' })).status).toBe(404);
    expect(agent.client.ws.readyState).toBe(agent.client.ws.OPEN);

    // Neither its session nor its join token brings it back, on either replica.
    for (const url of [sig1.wsUrl, sig2.wsUrl]) {
      const again = await clients.open(url);
      expect(['SESSION_EXPIRED', 'REMOVED']).toContain((await again.request('resume', { resumeToken: joined.resumeToken, protocolVersion: 1 })).error.code);
      const rejoin = await clients.open(url);
      expect((await rejoin.request('join', { token, protocolVersion: 1 })).error.code).toBe('REMOVED');
      expect((await rejoin.closed).code).toBe(4005);
    }
    await settle();
    expect((await api(sig1.url, `/v1/rooms/${room}/participants`)).body.participants.map((p: { participantId: string }) => p.participantId)).toEqual([agent.id]);
  });

  it('removes a participant whose client is away within its resume window: it comes back neither with its session nor its token', async () => {
    const room = `away-${Date.now()}`;
    const agent = await join(sig1.wsUrl, room, 'agent-1', 'agent');
    const token = await demoToken({ room, identity: 'ext-1', role: 'end_user' });
    const { client, join: joined } = await clients.join(sig2.wsUrl, token);
    const userId = joined.participant.participantId as string;
    client.close();
    await waitForConnected(sig1.url, room, userId, false);

    expect((await api(sig1.url, `/v1/rooms/${room}/participants/${userId}`, { method: 'DELETE' })).status).toBe(204);
    expect(await agent.client.waitForNotification('participantLeft')).toEqual({ participantId: userId, reason: 'removed' });
    const back = await clients.open(sig1.wsUrl);
    expect(['SESSION_EXPIRED', 'REMOVED']).toContain((await back.request('resume', { resumeToken: joined.resumeToken, protocolVersion: 1 })).error.code);
    // What the SDK does next (SESSION_EXPIRED): join with its token. Refused for good.
    const rejoin = await clients.open(sig2.wsUrl);
    expect((await rejoin.request('join', { token, protocolVersion: 1 })).error.code).toBe('REMOVED');
    expect((await api(sig1.url, `/v1/rooms/${room}/participants`)).body.participants.map((p: { participantId: string }) => p.participantId)).toEqual([agent.id]);
  });

  it('a removal racing a resume on the other replica ends removed', async () => {
    for (let round = 0; round < 6; round++) {
      const room = `race-${round}-${Date.now()}`;
      const agent = await join(sig1.wsUrl, room, 'agent-1', 'agent');
      const token = await demoToken({ room, identity: 'ext-1', role: 'end_user' });
      const { client, join: joined } = await clients.join(sig2.wsUrl, token);
      const userId = joined.participant.participantId as string;
      client.close();
      await waitForConnected(sig1.url, room, userId, false);

      // sig2 holds the away session; sig1 both takes it over (resume) and is asked to remove it.
      const resumer = await clients.open(sig1.wsUrl);
      await new Promise((r) => setTimeout(r, round * 3));
      const [removal, resumed] = await Promise.all([
        api(sig1.url, `/v1/rooms/${room}/participants/${userId}`, { method: 'DELETE' }),
        // A socket closed before the answer (4005) is an answer too.
        Promise.race([resumer.request('resume', { resumeToken: joined.resumeToken, protocolVersion: 1 }), resumer.closed.then((closed): Record<string, any> => ({ closed }))]),
      ]);
      expect(removal.status, `round ${round}`).toBe(204);
      if (resumed.closed) expect(resumed.closed.code, `round ${round}`).toBe(4005);
      else if (resumed.error) expect(['REMOVED', 'SESSION_EXPIRED'], `round ${round}`).toContain(resumed.error.code);
      else {
        const closed = await Promise.race([resumer.closed, new Promise<{ code: number }>((r) => setTimeout(() => r({ code: -1 }), 5_000))]);
        expect(closed.code, `round ${round}: a resumed client is closed as removed`).toBe(4005);
      }
      // Whatever the order: not in the room, and the token joins no more.
      await waitFor(
        async () => (await api(sig2.url, `/v1/rooms/${room}/participants`)).body.participants.every((p: { participantId: string }) => p.participantId !== userId) || undefined,
        5_000,
        `round ${round}: ${userId} gone`,
      );
      const rejoin = await clients.open(sig2.wsUrl);
      expect((await rejoin.request('join', { token, protocolVersion: 1 })).error.code, `round ${round}`).toBe('REMOVED');
      agent.client.close();
    }
  }, 60_000);

  it('ends a room: everyone removed on both replicas, and the room ends as when the last one leaves', async () => {
    const room = `end-${Date.now()}`;
    const sessions = await readEvents(nc, streams.sessions.name, subjects.sessionEnded('demo'), (d) => SessionEnded.decode(d));
    const a = await join(sig1.wsUrl, room, 'agent-1', 'agent');
    const b = await join(sig2.wsUrl, room, 'ext-1', 'end_user');
    expect((await api(sig1.url, `/v1/rooms/${room}`, { method: 'DELETE', as: GLOBEX_TENANT })).status).toBe(404);
    await settle();
    expect(a.client.ws.readyState).toBe(a.client.ws.OPEN);

    const ended = await api(sig2.url, `/v1/rooms/${room}`, { method: 'DELETE' });
    expect([ended.status, ended.body]).toEqual([200, { room, removed: 2 }]);
    expect((await a.client.closed).code).toBe(4005);
    expect((await b.client.closed).code).toBe(4005);
    expect((await sessions.next((e) => e.room === room, `session.ended of ${room}`)).tenant).toBe('demo');
    expect((await api(sig1.url, '/v1/rooms')).body.rooms.map((r: { room: string }) => r.room)).not.toContain(room);
    expect((await api(sig1.url, `/v1/rooms/${room}/participants`)).status).toBe(404);
    expect((await api(sig1.url, `/v1/rooms/${room}`, { method: 'DELETE' })).status).toBe(404);
    // For a while the room takes nobody, not even with a fresh token (ROOM_ENDED).
    const late = await clients.open(sig1.wsUrl);
    expect((await late.request('join', { token: await demoToken({ room, identity: 'ext-2', role: 'end_user' }), protocolVersion: 1 })).error.code).toBe('ROOM_ENDED');
    expect((await late.closed).code).toBe(4005);
  });

  it('mints join tokens as documented, for the caller only', async () => {
    const minted = await api(sig1.url, '/v1/tokens', { method: 'POST', json: { room: 'r1', identity: 'ext-1', role: 'end_user', ttlSeconds: 60, phoneNumber: '+14155550132' } });
    expect(minted.status).toBe(200);
    expect(minted.body.expiresAt).toBeGreaterThan(Date.now() / 1000);
    expect((await api(sig1.url, '/v1/tokens', { method: 'POST', json: { room: 'r1', identity: 'x', role: 'root' } })).body.error.code).toBe('BAD_REQUEST');
    expect((await api(sig1.url, '/v1/tokens', { method: 'POST', body: '{', headers: { 'content-type': 'application/json' } })).body.error.code).toBe('MALFORMED_MESSAGE');
    const refused = await api(sig1.url, '/v1/tokens', { method: 'POST', as: 'forged', json: { room: 'r1', identity: 'x', role: 'agent' } });
    expect([refused.status, refused.headers.get('www-authenticate')]).toEqual([401, 'Basic realm="gateway"']);
    // The room API's rules: the media type, no query, a bounded shape; credentials before the method.
    const body = JSON.stringify({ room: 'r1', identity: 'x', role: 'agent' });
    expect((await api(sig1.url, '/v1/tokens', { method: 'POST', body, headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect((await api(sig1.url, '/v1/tokens?ttl=5', { method: 'POST', json: { room: 'r1', identity: 'x', role: 'agent' } })).body.error.code).toBe('BAD_REQUEST');
    expect((await api(sig1.url, '/v1/tokens', { method: 'POST', json: { room: 'r1', identity: 'x', role: 'agent', deviceIds: [[[['deep']]]] } })).body.error.code).toBe('BAD_REQUEST');
    expect((await api(sig1.url, '/v1/tokens', { method: 'GET', as: 'nobody' })).status).toBe(401);
  });

  it('answers a method a resource does not take with 405 METHOD_NOT_ALLOWED and what it takes', async () => {
    const cases: Array<[string, string, string]> = [
      ['PUT', '/v1/rooms', 'GET'],
      ['GET', '/v1/rooms/r1', 'DELETE'],
      ['POST', '/v1/rooms/r1/participants', 'GET'],
      ['PATCH', '/v1/rooms/r1/recording', 'POST, DELETE'],
      ['GET', '/v1/rooms/r1/data', 'POST'],
      ['GET', '/v1/rooms/r1/participants/PA_1/tracks/PR_1/mute', 'POST'],
      ['GET', '/v1/tokens', 'POST'],
    ];
    for (const [method, target, allow] of cases) {
      const answer = await api(sig1.url, target, { method });
      expect([answer.status, answer.body.error.code, answer.headers.get('allow')], `${method} ${target}`).toEqual([405, 'METHOD_NOT_ALLOWED', allow]);
    }
    const upload = await contract.fetch(sig1.url, '/v1/smart-actions/SA_1/upload', { method: 'GET' });
    expect([upload.status, upload.body.error.code, upload.headers.get('allow')]).toEqual([405, 'METHOD_NOT_ALLOWED', 'POST']);
    // Paths that are no resource, and parameters outside their alphabet.
    expect((await fetch(`${sig1.url}/v1/rooms/r1/nothing`, { headers: { authorization: basicAuth(DEMO_TENANT) } })).status).toBe(404);
    const badRoom = await api(sig1.url, '/v1/rooms/a%2Eb/participants');
    expect([badRoom.status, badRoom.body.error.code]).toEqual([400, 'BAD_REQUEST']);
    expect((await api(sig1.url, '/v1/rooms?limit=5')).body.error.code).toBe('BAD_REQUEST');
  });
});
