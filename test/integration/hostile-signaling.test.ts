import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { isLiveEntry, DEMO_TENANT, DEMO_TENANT_KEK, buckets, kvKeys } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { mintJoinToken, type MintRequest } from '../../services/signaling/src/auth/tokens.js';
import { TestClients } from '../support/wsClient.js';
import { demoToken, expiringDemoToken } from '../support/tokens.js';
import { deviceCapabilities, opusRtpParameters, vp8RtpParameters } from '../support/rtpParameters.js';

/** A tenant with tight limits, and one whose tokens may hold two live sessions. */
const TIGHT = { name: 'tight', apiKey: 'tight', apiSecret: 'tight-secret-for-tests-only-0123456789', limits: { participantsPerRoom: 2, rooms: 1 } };
const SHARED = { name: 'shared', apiKey: 'shared', apiSecret: 'shared-secret-for-tests-only-012345678', limits: { sessionsPerToken: 2 } };
const tenantsEnv = {
  GATEWAY_TENANTS: JSON.stringify([DEMO_TENANT, TIGHT, SHARED]),
  GATEWAY_TENANT_KEYS: JSON.stringify({ demo: DEMO_TENANT_KEK, tight: Buffer.alloc(32, 1).toString('base64'), shared: Buffer.alloc(32, 2).toString('base64') }),
};
const token = (tenant: typeof TIGHT | typeof SHARED, request: MintRequest) => mintJoinToken(tenant, request).then((t) => t.token);

/** Sends raw bytes over TCP and returns what came back before the server closed or 2 s passed. */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.setTimeout(2_000, () => socket.destroy());
    socket.write(request);
  });
}

/**
 * What an attacker or a broken client can send signaling, against real processes: every finding
 * of the hostile-input review that concerns signaling, and what the README claims of grants,
 * close codes and shutdown.
 */
describe('signaling facing hostile input', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();
  const RESUME_WINDOW_SECONDS = 2;
  const HEARTBEAT_SECONDS = 1;
  const env = {
    ...tenantsEnv,
    SIGNALING_RESUME_WINDOW_SECONDS: String(RESUME_WINDOW_SECONDS),
    SIGNALING_MAX_TRANSPORTS_PER_PARTICIPANT: '2',
    SIGNALING_MAX_CONSUMERS_PER_PARTICIPANT: '3',
    SIGNALING_HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
  };

  const participantRecord = async (tenant: string, room: string, participantId: string) => {
    const entry = await (await new Kvm(nc).open(buckets.participants)).get(kvKeys.participant(tenant, room, participantId));
    return isLiveEntry(entry) ? ParticipantRecord.decode(entry.value) : undefined;
  };
  /** A fresh client joins and answers a ping within 5 s, and /sdk.js answers: the replica is whole. */
  const alive = async (sig: typeof sig1) => {
    const { client } = await clients.join(sig.wsUrl, await demoToken({ room: `alive-${Date.now()}`, identity: 'probe', role: 'end_user' }));
    const pong = await Promise.race([client.request('ping', { clientTimeMs: 1 }), new Promise((_, reject) => setTimeout(() => reject(new Error('no pong')), 5_000))]);
    expect(pong).toHaveProperty('ping');
    expect((await fetch(`${sig.url}/sdk.js`)).status).toBe(200);
    client.close();
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await nc?.close();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  describe('frames that used to end the process', () => {
    it('answers a 10,000-deep token, objects with a non-function toString and NaN with MALFORMED_MESSAGE and stays up', async () => {
      const c = await clients.open(sig1.wsUrl);
      const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
      expect((await c.raw(`{"id":1,"join":{"token":${deep}}}`)).error?.code).toBe('MALFORMED_MESSAGE');
      expect((await c.raw('{"id":2,"join":{"token":{"toString":1}}}')).error?.code).toBe('MALFORMED_MESSAGE');
      expect((await c.raw('{"id":3,"resume":{"resumeToken":{"valueOf":1,"toString":1}}}')).error?.code).toBe('MALFORMED_MESSAGE');
      expect(sig1.running).toBe(true);
      await alive(sig1);
    });

    it('refuses values gRPC or NATS cannot carry before they get there', async () => {
      const { client } = await clients.join(sig1.wsUrl, await demoToken({ room: `values-${Date.now()}`, identity: 'u', role: 'end_user' }));
      const layers = await client.raw('{"id":5,"setPreferredLayers":{"consumerId":"c1","spatialLayer":"NaN"}}');
      expect(layers.error).toMatchObject({ code: 'MALFORMED_MESSAGE' });
      expect(layers.error.message).not.toMatch(/serialization|uint32/i);
      // A CR/LF in the client message id used to reach a NATS header (the duplicate check).
      const chat = await client.request('sendMessage', { text: 'hi', clientMessageId: 'x\r\nNats-Msg-Id: forged' });
      expect(chat.error).toMatchObject({ code: 'MALFORMED_MESSAGE' });
      expect((await client.request('sendMessage', { text: 'hi', clientMessageId: 'fine-1' })).sendMessage.text).toBe('hi');
    });

    it('closes with 4003 after more than 20 malformed frames in a row', async () => {
      const c = await clients.open(sig1.wsUrl);
      for (let i = 0; i < 21; i++) c.ws.send('{not json');
      expect((await c.closed).code).toBe(4003);
      await alive(sig1);
    });
  });

  describe('HTTP requests that used to end the process', () => {
    it('answers a request target that does not parse with 400', async () => {
      const answer = await rawHttp(sig1.port, 'GET //a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
      for (const target of ['http://[', '//', '/%E0%A4%A', '/\u0000']) {
        const reply = await rawHttp(sig1.port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
        expect(reply).toMatch(/^HTTP\/1\.1 (400|404)/);
      }
      expect(sig1.running).toBe(true);
      await alive(sig1);
    });
  });

  describe('grants are enforced per message', () => {
    it('refuses publishing without canPublish and receiving without canSubscribe', async () => {
      const room = `grants-${Date.now()}`;
      const { client: viewer } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'viewer', role: 'end_user', canPublish: false }));
      expect((await viewer.request('createTransport', { direction: 'send' })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
      const recv = (await viewer.request('createTransport', { direction: 'recv' })).createTransport;
      expect(recv.transportId).toBeTruthy();
      expect((await viewer.request('produce', { transportId: recv.transportId, kind: 'audio', source: 'microphone', rtpParameters: opusRtpParameters(1) })).error).toMatchObject({
        code: 'PERMISSION_DENIED',
      });

      const { client: talker } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'talker', role: 'end_user', canSubscribe: false, sources: ['microphone'] }));
      expect((await talker.request('createTransport', { direction: 'recv' })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
      const send = (await talker.request('createTransport', { direction: 'send' })).createTransport;
      expect((await talker.request('produce', { transportId: send.transportId, kind: 'video', source: 'camera', rtpParameters: vp8RtpParameters(2) })).error).toMatchObject({
        code: 'PERMISSION_DENIED',
      });
      const { producerId } = (await talker.request('produce', { transportId: send.transportId, kind: 'audio', source: 'microphone', rtpParameters: opusRtpParameters(3) })).produce;
      expect((await talker.request('consume', { producerId, rtpCapabilities: { codecs: [] }, transportId: send.transportId })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
    });

    it('keeps grants exactly as restrictive after a resume on another replica', async () => {
      const room = `regrants-${Date.now()}`;
      const { client, join } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'viewer', role: 'end_user', canPublish: false, sources: ['camera'] }));
      client.close();
      const again = await clients.open(sig2.wsUrl);
      const resumed = (await again.request('resume', { resumeToken: join.resumeToken })).resume;
      // (proto3 JSON leaves false out)
      expect({ canPublish: false, canRecord: false, ...resumed.grants }).toEqual({ canPublish: false, canSubscribe: true, sources: ['camera'], canRecord: false });
      expect((await again.request('createTransport', { direction: 'send' })).error).toMatchObject({ code: 'PERMISSION_DENIED' });
      expect((await again.request('startRecording', {})).error).toMatchObject({ code: 'PERMISSION_DENIED' });
      expect((await again.request('createTransport', { direction: 'recv' })).createTransport.transportId).toBeTruthy();
    });
  });

  describe('limits', () => {
    it('bounds transports and consumers per participant, one consumer per producer', async () => {
      const room = `limits-${Date.now()}`;
      const { client: publisher } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'pub', role: 'end_user' }));
      const send = (await publisher.request('createTransport', { direction: 'send' })).createTransport;
      const producers = [
        (await publisher.request('produce', { transportId: send.transportId, kind: 'audio', source: 'microphone', rtpParameters: opusRtpParameters(11) })).produce.producerId,
        (await publisher.request('produce', { transportId: send.transportId, kind: 'video', source: 'camera', rtpParameters: vp8RtpParameters(12) })).produce.producerId,
        (await publisher.request('produce', { transportId: send.transportId, kind: 'video', source: 'screen', rtpParameters: vp8RtpParameters(13) })).produce.producerId,
        (await publisher.request('produce', { transportId: send.transportId, kind: 'audio', source: 'screen_audio', rtpParameters: opusRtpParameters(14) })).produce.producerId,
      ];
      const { client: viewer, join } = await clients.join(sig2.wsUrl, await demoToken({ room, identity: 'view', role: 'agent' }));
      const recv = (await viewer.request('createTransport', { direction: 'recv' })).createTransport;
      expect((await viewer.request('createTransport', { direction: 'send' })).createTransport).toBeTruthy();
      expect((await viewer.request('createTransport', { direction: 'recv' })).error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
      // The same producer consumed over and over keeps one consumer.
      for (let i = 0; i < 20; i++)
        expect((await viewer.request('consume', { producerId: producers[0], rtpCapabilities: deviceCapabilities, transportId: recv.transportId })).consume.consumerId).toBeTruthy();
      await waitFor(async () => Object.keys((await participantRecord('demo', room, join.participant.participantId))?.consumers ?? {}).length === 1, 5_000, 'one consumer in the record');
      expect((await viewer.request('consume', { producerId: producers[1], rtpCapabilities: deviceCapabilities, transportId: recv.transportId })).consume).toBeTruthy();
      expect((await viewer.request('consume', { producerId: producers[2], rtpCapabilities: deviceCapabilities, transportId: recv.transportId })).consume).toBeTruthy();
      expect((await viewer.request('consume', { producerId: producers[3], rtpCapabilities: deviceCapabilities, transportId: recv.transportId })).error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
    });

    it('bounds participants per room and rooms per tenant', async () => {
      const room = `full-${Date.now()}`;
      await clients.join(sig1.wsUrl, await token(TIGHT, { room, identity: 'a', role: 'agent' }));
      await clients.join(sig2.wsUrl, await token(TIGHT, { room, identity: 'b', role: 'end_user' }));
      const third = await clients.open(sig1.wsUrl);
      expect((await third.request('join', { token: await token(TIGHT, { room, identity: 'c', role: 'end_user' }) })).error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
      const elsewhere = await clients.open(sig1.wsUrl);
      expect((await elsewhere.request('join', { token: await token(TIGHT, { room: `${room}-2`, identity: 'd', role: 'end_user' }) })).error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
    });

    it("lets a join token hold one live session (or the tenant's number), and frees it when the session ends", async () => {
      const room = `jti-${Date.now()}`;
      const once = await demoToken({ room, identity: 'u', role: 'end_user' });
      const first = await clients.join(sig1.wsUrl, once);
      const copy = await clients.open(sig2.wsUrl);
      expect((await copy.request('join', { token: once })).error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
      await first.client.request('leave', {});
      await clients.join(sig2.wsUrl, once);

      const twice = await token(SHARED, { room, identity: 'u', role: 'end_user' });
      await clients.join(sig1.wsUrl, twice);
      await clients.join(sig2.wsUrl, twice);
      const third = await clients.open(sig1.wsUrl);
      expect((await third.request('join', { token: twice })).error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
    });

    it("lets the token join again at once when its session's replica died", async () => {
      const doomed = await startSignalingProcess({ natsUrl: nats.url, env });
      const room = `dead-${Date.now()}`;
      const once = await demoToken({ room, identity: 'u', role: 'end_user' });
      await clients.join(doomed.wsUrl, once);
      doomed.child.kill('SIGKILL');
      // While the dead replica's heartbeat may still move, the slot is held (a live session keeps
      // its token from a second join)...
      await expect(clients.join(sig1.wsUrl, once)).rejects.toThrow(/LIMIT_EXCEEDED/);
      // ...and it is free once three heartbeats (1 s each here) went by unseen, plus the read
      // that notices: the SDK, joining again with the same token, gets in.
      const GONE_MS = 3 * HEARTBEAT_SECONDS * 1000;
      await new Promise((r) => setTimeout(r, GONE_MS));
      await waitFor(
        async () => {
          await new Promise((r) => setTimeout(r, 300));
          return clients.join(sig1.wsUrl, once).then(() => true);
        },
        GONE_MS + 2 * HEARTBEAT_SECONDS * 1000,
        'the token joins again once its replica is gone',
      );
    });

    it('takes one upload per Smart Action at a time', async () => {
      const room = `uploads-${Date.now()}`;
      const { join: user } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'ext-up', role: 'end_user' }));
      const { client: agent } = await clients.join(sig2.wsUrl, await demoToken({ room, identity: 'agent', role: 'agent' }));
      const actionId = (await agent.request('requestSmartAction', { kind: 'photo' })).requestSmartAction.actionId;
      const url = `${sig1.url}/v1/smart-actions/${actionId}/upload`;
      // A slow upload holds the action: its body trickles in.
      let stop = false;
      const trickle = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (stop) return controller.close();
          await new Promise((r) => setTimeout(r, 100));
          controller.enqueue(new Uint8Array(16));
        },
      });
      const slow = fetch(url, { method: 'POST', headers: { authorization: `Bearer ${user.resumeToken}`, 'content-type': 'image/jpeg' }, body: trickle, duplex: 'half' } as RequestInit);
      await new Promise((r) => setTimeout(r, 500));
      const second = await fetch(`${sig2.url}/v1/smart-actions/${actionId}/upload`, {
        method: 'POST',
        headers: { authorization: `Bearer ${user.resumeToken}`, 'content-type': 'image/jpeg' },
        body: new Uint8Array(100),
      });
      expect(second.status).toBe(429);
      expect((await second.json()).error.code).toBe('LIMIT_EXCEEDED');
      stop = true;
      // The slow one ends (not an image: refused by content), and frees the action.
      expect((await slow).status).toBe(415);
    });

    it('refuses a participant record over its size limit', async () => {
      const { ParticipantStore } = await import('@gateway/cluster');
      const store = await ParticipantStore.open(nc);
      const consumers = Object.fromEntries(Array.from({ length: 2_000 }, (_, i) => [`c${i}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`, `p${i}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`]));
      const record = ParticipantRecord.fromPartial({
        info: { participantId: 'PA_big', identity: 'u', role: 'end_user', joinedAtMs: Date.now(), tracks: [] },
        owner: 'x',
        nodeId: 'n',
        consumers,
        resumeTokenHash: Buffer.alloc(32),
      });
      await expect(store.put('demo', 'big', record)).rejects.toMatchObject({ code: 'LIMIT_EXCEEDED' });
    });

    it('refuses a join token without a jti', async () => {
      const { SignJWT } = await import('jose');
      const now = Math.floor(Date.now() / 1000);
      const noJti = await new SignJWT({ tenant: 'demo', room: 'r', role: 'end_user', grants: { canPublish: true, canSubscribe: true, sources: ['camera'] } })
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('demo')
        .setSubject('u')
        .setExpirationTime(now + 60)
        .sign(new TextEncoder().encode(DEMO_TENANT.apiSecret));
      const c = await clients.open(sig1.wsUrl);
      expect((await c.request('join', { token: noJti })).error).toMatchObject({ code: 'UNAUTHENTICATED' });
      expect((await c.closed).code).toBe(4001);
    });
  });

  describe('resume', () => {
    it("follows one rule on every replica: the join token's expiry does not end a resumable session", async () => {
      const room = `short-${Date.now()}`;
      // A customer minting short-lived join tokens, as they should.
      const token = await expiringDemoToken({ room, identity: 'u', role: 'end_user' }, 1);
      const { client, join } = await clients.join(sig1.wsUrl, token);
      // Refused from between 1 and 2 s after it was minted (expiringDemoToken).
      await new Promise((r) => setTimeout(r, 2_100));
      // Expired for the server (past its exp and the clock tolerance): no join with it any more.
      expect((await (await clients.open(sig1.wsUrl)).request('join', { token })).error).toMatchObject({ code: 'TOKEN_EXPIRED' });
      client.close();
      await waitFor(async () => (await participantRecord('demo', room, join.participant.participantId))?.connected === false, 5_000, 'the drop noted');
      // Resumed on the other replica (which reads the record) and then on the same one.
      const onOther = await clients.open(sig2.wsUrl);
      const resumed = await onOther.request('resume', { resumeToken: join.resumeToken });
      expect(resumed.error).toBeUndefined();
      onOther.close();
      const back = await clients.open(sig2.wsUrl);
      expect((await back.request('resume', { resumeToken: join.resumeToken })).error).toBeUndefined();
    });

    it('refuses a resume once the session is older than its maximum length, on every replica', async () => {
      const short = await startSignalingProcess({ natsUrl: nats.url, env: { ...env, SIGNALING_MAX_SESSION_SECONDS: '2' } });
      try {
        const room = `maxlen-${Date.now()}`;
        const { client, join } = await clients.join(short.wsUrl, await demoToken({ room, identity: 'u', role: 'end_user' }));
        client.close();
        const early = await clients.open(short.wsUrl);
        expect((await early.request('resume', { resumeToken: join.resumeToken })).error).toBeUndefined();
        await new Promise((r) => setTimeout(r, 2_500));
        early.close();
        const late = await clients.open(short.wsUrl);
        expect((await late.request('resume', { resumeToken: join.resumeToken })).error).toMatchObject({ code: 'SESSION_EXPIRED' });
      } finally {
        await short.stop();
      }
    });
  });

  describe('no half-made sessions', () => {
    it('rolls a join back when a later step fails: no record, no slot, no session left', async () => {
      const room = `half-${Date.now()}`;
      // The room's session record is unreadable (as it would be mid-failure): the join cannot
      // record its participant for the CRM and must not go on without it.
      const sessions = await new Kvm(nc).open(buckets.roomSessions);
      await sessions.put(kvKeys.room('demo', room), new Uint8Array([0xff, 0xff, 0xff]));
      const once = await demoToken({ room, identity: 'u', role: 'end_user' });
      const c = await clients.open(sig1.wsUrl);
      const answer = await c.request('join', { token: once });
      expect(answer.error?.code).toBeTruthy();
      expect(answer.join).toBeUndefined();
      const participants = await new Kvm(nc).open(buckets.participants);
      const keys: string[] = [];
      for await (const key of await participants.keys(`demo.${room}.*`)) keys.push(key);
      const live = await Promise.all(keys.map((k) => participants.get(k)));
      expect(live.filter((e) => e && e.operation === 'PUT')).toHaveLength(0);
      // The connection holds no session, and the token's slot was given back.
      expect((await c.request('ping', { clientTimeMs: 1 })).error).toMatchObject({ code: 'NOT_JOINED' });
      await sessions.purge(kvKeys.room('demo', room));
      await clients.join(sig2.wsUrl, once);
    });
  });

  describe('shutdown', () => {
    it('on SIGTERM hands its sessions over and exits 0; the client resumes on another replica unseen', async () => {
      const leaving = await startSignalingProcess({ natsUrl: nats.url, env });
      const room = `term-${Date.now()}`;
      const { client, join } = await clients.join(leaving.wsUrl, await demoToken({ room, identity: 'u', role: 'end_user' }));
      const { client: watcher } = await clients.join(sig2.wsUrl, await demoToken({ room, identity: 'w', role: 'agent' }));
      const exit = leaving.stop('SIGTERM', 15_000);
      expect((await client.closed).code).toBe(4503);
      expect(await exit).toBe(0);
      const again = await clients.open(sig2.wsUrl);
      const resumed = await again.request('resume', { resumeToken: join.resumeToken });
      expect(resumed.resume.participant.participantId).toBe(join.participant.participantId);
      // A handover gone wrong shows as a leave announced by a sweep once the stopped replica
      // counts as gone (its heartbeat still for three beats) or its resume window ended,
      // whichever is later, plus one read of the heartbeats and a second for the hop: wait that long.
      const GONE_MS = 3 * HEARTBEAT_SECONDS * 1000;
      await new Promise((r) => setTimeout(r, Math.max(GONE_MS, RESUME_WINDOW_SECONDS * 1000) + HEARTBEAT_SECONDS * 1000 + 1_000));
      expect(watcher.notifications.some((n) => 'participantLeft' in n)).toBe(false);
    }, 45_000);
  });

  // Last: the media node is killed.
  describe('when the media node dies', () => {
    it('answers with a generic message and a reference, and a resume that fails half-way leaves the session dropped and expiring', async () => {
      const room = `dies-${Date.now()}`;
      const { client: dropped, join } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'u', role: 'end_user' }));
      const { client: asking } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'a', role: 'agent' }));
      const { client: watcher } = await clients.join(sig1.wsUrl, await demoToken({ room, identity: 'w', role: 'agent' }));
      dropped.close();
      await waitFor(async () => (await participantRecord('demo', room, join.participant.participantId))?.connected === false, 5_000, 'the drop noted');
      sfu.child.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 200));

      const answer = await asking.request('createTransport', { direction: 'send' });
      expect(answer.error.code).toBe('UNAVAILABLE');
      expect(answer.error.message).not.toMatch(/127\.0\.0\.1|ECONNREFUSED|No connection|:\d{4,5}/);
      const reference = /reference ([0-9a-f]{12})/.exec(answer.error.message)?.[1];
      expect(reference).toBeTruthy();
      await waitFor(() => sig1.logs.includes(reference!), 2_000, 'the reference in the log');

      // The resume is taken over by the other replica, then fails at the media node.
      const c = await clients.open(sig2.wsUrl);
      expect((await c.request('resume', { resumeToken: join.resumeToken })).error?.code).toBe('UNAVAILABLE');
      c.close();
      // Nobody resumes it: it ends with its 2 s window (well before the node counts as gone), and the room hears it leave.
      await waitFor(() => watcher.notifications.find((n) => n.participantLeft?.participantId === join.participant.participantId), 6_000, 'the dropped participant leaving');
      const left = watcher.notifications.find((n) => n.participantLeft?.participantId === join.participant.participantId)!.participantLeft;
      expect(left.reason).toBe('disconnected');
    }, 30_000);
  });
});
