import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { buckets, kvKeys } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { type TestClient, TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

/**
 * Signaling against real processes: nats-server, an SFU with a real mediasoup worker, two
 * signaling replicas. Negotiation is exercised up to produce/consume (DTLS needs a browser; the
 * browser test covers media).
 */
describe('signaling with two replicas and a real SFU', () => {
  const RESUME_WINDOW_SECONDS = 3;
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig1: Awaited<ReturnType<typeof startSignalingProcess>>;
  let sig2: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();
  const open = (url: string) => clients.open(url);

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    const env = { SIGNALING_RESUME_WINDOW_SECONDS: String(RESUME_WINDOW_SECONDS), SIGNALING_JOIN_TIMEOUT_SECONDS: '1', SIGNALING_RATE_LIMIT_PER_SECOND: '20', SIGNALING_RATE_LIMIT_BURST: '20' };
    [sig1, sig2] = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([sig1?.stop(), sig2?.stop()]);
    await sfu?.stop();
    await nats?.stop();
  });

  describe('bad input', () => {
    it('answers malformed JSON, unknown methods and oversized frames with codes, and keeps the connection', async () => {
      const c = await open(sig1.wsUrl);
      expect((await c.raw('{oops')).error).toMatchObject({ code: 'MALFORMED_MESSAGE' });
      expect((await c.request('fly')).error).toMatchObject({ code: 'UNKNOWN_METHOD' });
      expect((await c.raw(JSON.stringify({ id: 99, ping: { pad: 'x'.repeat(70_000) } }))).error).toMatchObject({ code: 'FRAME_TOO_LARGE' });
      expect((await c.request('createTransport', { direction: 'send' })).error).toMatchObject({ code: 'NOT_JOINED' });
      expect(c.ws.readyState).toBe(c.ws.OPEN);
    });

    it('closes a frame over the hard limit with 1009, and the service is unaffected', async () => {
      const c = await open(sig1.wsUrl);
      c.ws.send('x'.repeat(2 * 1024 * 1024));
      expect((await c.closed).code).toBe(1009);
      const other = await open(sig1.wsUrl);
      expect((await other.request('ping', { clientTimeMs: 1 })).error).toMatchObject({ code: 'NOT_JOINED' });
    });

    it('rejects bad tokens with 4001 before any room work', async () => {
      const room = `never-${Date.now()}`;
      for (const token of ['', 'garbage', `${(await demoToken({ room, identity: 'x', role: 'agent' })).slice(0, -4)}AAAA`]) {
        const c = await open(sig1.wsUrl);
        const response = await c.request('join', { token });
        expect(response.error.code).toBe('UNAUTHENTICATED');
        expect((await c.closed).code).toBe(4001);
      }
      const nc = await nats.connect();
      const placements = await new Kvm(nc).open(buckets.roomPlacement);
      expect(await placements.get(kvKeys.room('demo', room))).toBeNull();
      await nc.close();
    });

    it('closes a socket that never joins with 4002', async () => {
      const c = await open(sig1.wsUrl);
      expect((await c.closed).code).toBe(4002);
    });

    it('rate-limits a flood, then closes with 4029 when it goes on', async () => {
      const c = await open(sig2.wsUrl);
      const answers = await Promise.all(Array.from({ length: 40 }, () => c.request('ping', { clientTimeMs: 1 })));
      const limited = answers.filter((a) => a.error?.code === 'RATE_LIMITED');
      expect(limited.length).toBeGreaterThan(10);
      expect(limited[0].error.retryAfterMs).toBeGreaterThan(0);
      for (let i = 0; i < 200 && c.ws.readyState === c.ws.OPEN; i++) c.ws.send(JSON.stringify({ id: 1000 + i, ping: {} }));
      expect((await c.closed).code).toBe(4029);
    });
  });

  describe('a room across two replicas', () => {
    let rooms = 0;
    const newRoom = () => `room-${Date.now()}-${++rooms}`;
    // A replica whose dropped session was not resumed announces its leave when the resume
    // window ends; a wrong announcement would come then, after the SFU call and the hop over
    // NATS: watching for two seconds past the window covers both.
    const LEAVE_WOULD_SHOW_MS = RESUME_WINDOW_SECONDS * 1000 + 2_000;
    const noLeaveSeen = async (watcher: TestClient) => {
      await new Promise((r) => setTimeout(r, LEAVE_WOULD_SHOW_MS));
      return !watcher.notifications.some((n) => 'participantLeft' in n);
    };

    /** A customer producing audio through replica 1, and an agent who joined through replica 2 and was announced. */
    async function roomAcrossReplicas() {
      const room = newRoom();
      const a = await open(sig1.wsUrl);
      const joinA = (await a.request('join', { token: await demoToken({ room, identity: 'customer', role: 'end_user', sources: ['microphone'] }) })).join;
      const send = (await a.request('createTransport', { direction: 'send' })).createTransport;
      const producerId: string = (await a.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
      const b = await open(sig2.wsUrl);
      const joinB = (await b.request('join', { token: await demoToken({ room, identity: 'agent', role: 'agent' }) })).join;
      await a.waitForNotification('participantJoined');
      return { room, a, b, joinA, joinB, producerId };
    }

    it('joins, negotiates and announces across replicas', async () => {
      const room = newRoom();
      const a = await open(sig1.wsUrl);
      const joinA = (await a.request('join', { token: await demoToken({ room, identity: 'customer', role: 'end_user', sources: ['microphone'] }) })).join;
      expect(joinA.participant.participantId).toMatch(/^PA_/);
      expect(joinA.routerRtpCapabilities.codecs.length).toBeGreaterThan(2);
      expect(joinA.resumeToken).toBeTruthy();

      const send = (await a.request('createTransport', { direction: 'send' })).createTransport;
      expect(send.iceCandidates).toHaveLength(2);
      const produced = await a.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' });
      const producerId = produced.produce.producerId;
      const forbidden = await a.request('produce', { transportId: send.transportId, kind: 'video', rtpParameters: opusRtpParameters(), source: 'camera' });
      expect(forbidden.error.code).toBe('PERMISSION_DENIED');

      const b = await open(sig2.wsUrl);
      const joinB = (await b.request('join', { token: await demoToken({ room, identity: 'agent', role: 'agent' }) })).join;
      expect(joinB.participants).toHaveLength(1);
      expect(joinB.participants[0]).toMatchObject({ participantId: joinA.participant.participantId, role: 'end_user', tracks: [{ producerId, source: 'microphone', kind: 'audio' }] });
      const joined = await a.waitForNotification('participantJoined');
      expect(joined.participantId).toBe(joinB.participant.participantId);

      await b.request('createTransport', { direction: 'recv' });
      const consumed = await b.request('consume', { producerId, rtpCapabilities: joinB.routerRtpCapabilities });
      expect(consumed.consume).toMatchObject({ producerId, participantId: joinA.participant.participantId, source: 'microphone', kind: 'audio' });
      expect((await b.request('resumeConsumer', { consumerId: consumed.consume.consumerId })).error).toBeUndefined();
      // Ids of other sessions are not this session's to touch.
      expect((await b.request('closeProducer', { producerId })).error.code).toBe('NOT_FOUND');
    });

    it('resumes a session on the other replica without anyone seeing it leave', async () => {
      const { a, b, joinA, producerId } = await roomAcrossReplicas();
      a.close();
      const a2 = await open(sig2.wsUrl);
      const resumed = (await a2.request('resume', { resumeToken: joinA.resumeToken })).resume;
      expect(resumed.participant.participantId).toBe(joinA.participant.participantId);
      expect(resumed.participant.tracks).toEqual([expect.objectContaining({ producerId })]);
      expect(resumed.transportIds).toHaveLength(1);
      // The resumed session is fully usable on the new replica.
      expect((await a2.request('pauseProducer', { producerId })).error).toBeUndefined();
      expect((await b.waitForNotification('producerPaused')).producerId).toBe(producerId);
      expect(await noLeaveSeen(b)).toBe(true);
    }, 30_000);

    it('resumes on the other replica the moment the socket drops, while the old replica still notes the drop', async () => {
      const { a, b, joinA, producerId } = await roomAcrossReplicas();
      // The old replica may write the dropped state into the record while the new one claims
      // it (more likely on a loaded machine); every resume must still succeed.
      let client = a;
      let token = joinA.resumeToken;
      for (let i = 0; i < 20; i++) {
        // The new socket is open before the old one drops, so the resume races the drop.
        const next = await open(i % 2 === 0 ? sig2.wsUrl : sig1.wsUrl);
        client.close();
        const resumed = await next.request('resume', { resumeToken: token });
        expect(resumed.error).toBeUndefined();
        expect(resumed.resume.participant.participantId).toBe(joinA.participant.participantId);
        client = next;
        token = resumed.resume.resumeToken;
      }
      // Still one usable session, and nobody saw it leave.
      expect((await client.request('pauseProducer', { producerId })).error).toBeUndefined();
      expect((await client.request('resumeProducer', { producerId })).error).toBeUndefined();
      expect(await noLeaveSeen(b)).toBe(true);
    }, 30_000);

    it('refuses a forged resume token and one whose window has passed', async () => {
      const { room, b, joinA } = await roomAcrossReplicas();
      const forged = await open(sig1.wsUrl);
      const parts = joinA.resumeToken.split('.');
      parts[3] = 'x'.repeat(parts[3].length);
      expect((await forged.request('resume', { resumeToken: parts.join('.') })).error.code).toBe('UNAUTHENTICATED');

      const leaver = await open(sig1.wsUrl);
      const join = (await leaver.request('join', { token: await demoToken({ room, identity: 'temp', role: 'end_user' }) })).join;
      leaver.close();
      const left = await waitFor(() => b.notifications.find((n) => n.participantLeft?.participantId === join.participant.participantId), 8_000, 'participantLeft after the window');
      expect(left.participantLeft.reason).toBe('disconnected');
      const late = await open(sig1.wsUrl);
      expect((await late.request('resume', { resumeToken: join.resumeToken })).error.code).toBe('SESSION_EXPIRED');
    });

    // Ends the file's only SFU, so it runs last; the token test after it needs no media node.
    it('tells clients to rejoin when the SFU node disappears', async () => {
      const { room, a, b } = await roomAcrossReplicas();
      await sfu.stop('SIGKILL');
      const [closedA, closedB] = await Promise.all([a.closed, b.closed]);
      expect(closedA.code).toBe(4010);
      expect(closedB.code).toBe(4010);
      expect(b.notifications.some((n) => 'rejoinRequired' in n)).toBe(true);
      // With no media node left, a new join is refused with a clear error.
      const c = await open(sig1.wsUrl);
      expect((await c.request('join', { token: await demoToken({ room, identity: 'late', role: 'agent' }) })).error.code).toBe('ROOM_UNAVAILABLE');
    });
  });

  it('mints tokens over HTTP for the tenant authenticated with its secret', async () => {
    const auth = `Basic ${Buffer.from('demo:demo-secret-for-local-development-only').toString('base64')}`;
    const post = (body: unknown, authorization = auth) =>
      fetch(`${sig1.url}/v1/tokens`, { method: 'POST', headers: { authorization, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const ok = await post({ room: 'r1', identity: 'alice', role: 'agent', ttlSeconds: 60 });
    expect(ok.status).toBe(200);
    const { token, expiresAt } = (await ok.json()) as { token: string; expiresAt: number };
    expect(token.split('.')).toHaveLength(3);
    expect(expiresAt - Date.now() / 1000).toBeLessThanOrEqual(61);
    expect((await post({ room: 'r1', identity: 'alice', role: 'agent' }, `Basic ${Buffer.from('demo:wrong').toString('base64')}`)).status).toBe(401);
    const bad = await post({ room: 'bad room', identity: 'alice', role: 'boss' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
  });
});
