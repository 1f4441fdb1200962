import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connect, type Room, type WebSocketConstructor } from '../../packages/sdk/src/index.js';
import { NatsServer, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { nodeConnectOptions } from '../../packages/sdk/src/testing/roomHelpers.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { demoToken, expiringDemoToken } from '../support/tokens.js';
import { TestClients } from '../support/wsClient.js';

/**
 * The SDK's session (running in Node: `ws`, mediasoup-client's FakeHandler) against real
 * processes, with the short-lived join tokens customers are told to mint: a call outlives its
 * token across a network drop, and joins again with a fresh one when it must.
 */
describe('an SDK session with a short-lived join token', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let sig: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();
  const rooms: Room[] = [];
  const RESUME_WINDOW_SECONDS = 2;
  const TOKEN_TTL_SECONDS = 1;

  /** While set, the SDK's sockets cannot reach signaling (a network that is down). */
  let offline = false;
  class FlakyWebSocket extends WebSocket {
    constructor(url: string) {
      super(offline ? 'ws://127.0.0.1:9/ws' : url);
    }
  }

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    sig = await startSignalingProcess({ natsUrl: nats.url, env: { SIGNALING_RESUME_WINDOW_SECONDS: String(RESUME_WINDOW_SECONDS) } });
  }, 90_000);

  afterEach(async () => {
    offline = false;
    for (const room of rooms.splice(0)) await room.leave();
    clients.closeAll();
  });

  afterAll(async () => {
    await sig?.stop();
    await sfu?.stop();
    await nats?.stop();
  });

  /** Joins through the SDK with a token that expires in a second (for the server); records the connection events. */
  async function joinShortLived(room: string, extra: Parameters<typeof nodeConnectOptions>[2] = {}) {
    const token = await expiringDemoToken({ room, identity: 'customer', role: 'end_user' }, TOKEN_TTL_SECONDS);
    const joined = await connect(nodeConnectOptions(sig.url, token, { WebSocket: FlakyWebSocket as unknown as WebSocketConstructor, ...extra }));
    rooms.push(joined);
    const events: string[] = [];
    joined.on('reconnecting', () => events.push('reconnecting'));
    joined.on('reconnected', ({ resumed }) => events.push(resumed ? 'resumed' : 'rejoined'));
    joined.on('disconnected', ({ reason, error }) => events.push(`disconnected:${reason}:${error?.code ?? ''}`));
    // The token is past its expiry (at most a second after TOKEN_TTL_SECONDS): a join with it is refused from now on.
    await new Promise((r) => setTimeout(r, TOKEN_TTL_SECONDS * 1000 + 1_100));
    const probe = await clients.open(sig.wsUrl);
    expect((await probe.request('join', { token, protocolVersion: 1 })).error).toMatchObject({ code: 'TOKEN_EXPIRED' });
    return { room: joined, events };
  }

  /** Cuts the network for longer than the resume window, so the session cannot be resumed. */
  async function cutPastResumeWindow(room: Room): Promise<void> {
    offline = true;
    room._debugDropSocket();
    await new Promise((r) => setTimeout(r, RESUME_WINDOW_SECONDS * 1000 + 1_500));
    offline = false;
  }

  it('resumes after a network drop once the join token has expired: the same session', async () => {
    const { room, events } = await joinShortLived(`sdk-resume-${Date.now()}`);
    const participantId = room.localParticipant.id;
    room._debugDropSocket();
    await waitFor(async () => events.includes('resumed') || events.some((e) => e.startsWith('disconnected')), 15_000, 'the reconnection');
    expect(events).toEqual(['reconnecting', 'resumed']);
    expect(room.localParticipant.id).toBe(participantId);
    expect(room.state).toBe('connected');
  }, 30_000);

  it('joins again with a fresh token from tokenProvider when the session can no longer be resumed', async () => {
    const name = `sdk-rejoin-${Date.now()}`;
    const provided: string[] = [];
    const tokenProvider = async () => {
      const fresh = await demoToken({ room: name, identity: 'customer', role: 'end_user', ttlSeconds: 60 });
      provided.push(fresh);
      return fresh;
    };
    const { room, events } = await joinShortLived(name, { tokenProvider });
    const before = room.localParticipant.id;
    // Someone in the room sees the new session arrive.
    const agent = await clients.join(sig.wsUrl, await demoToken({ room: name, identity: 'agent', role: 'agent' }));
    await cutPastResumeWindow(room);
    await waitFor(async () => events.includes('rejoined') || events.some((e) => e.startsWith('disconnected')), 20_000, 'the reconnection');
    expect(events).toEqual(['reconnecting', 'rejoined']);
    expect(provided).toHaveLength(1);
    expect(room.localParticipant.id).not.toBe(before);
    await waitFor(async () => agent.client.notifications.some((n) => n.participantJoined?.participantId === room.localParticipant.id), 5_000, 'the agent told of the new session');
  }, 40_000);

  it('without a tokenProvider, gives up when the session cannot be resumed and the token has expired', async () => {
    const { room, events } = await joinShortLived(`sdk-expired-${Date.now()}`);
    await cutPastResumeWindow(room);
    await waitFor(async () => events.length >= 2, 20_000, 'the outcome of the reconnection');
    expect(events).toEqual(['reconnecting', 'disconnected:unauthenticated:TOKEN_EXPIRED']);
    rooms.splice(rooms.indexOf(room), 1);
  }, 40_000);

  it('shows a participant joining later a track muted before they came, and the same producer when it is unmuted', async () => {
    const name = `sdk-muted-${Date.now()}`;
    const { client: a } = await clients.join(sig.wsUrl, await demoToken({ room: name, identity: 'customer', role: 'end_user', sources: ['microphone'] }));
    const send = (await a.request('createTransport', { direction: 'send' })).createTransport;
    const producerId: string = (await a.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
    expect((await a.request('pauseProducer', { producerId })).error).toBeUndefined();
    // An SDK participant joining now sees the microphone muted, and is told when it comes back.
    const token = await demoToken({ room: name, identity: 'agent', role: 'agent' });
    const agent = await connect(nodeConnectOptions(sig.url, token));
    rooms.push(agent);
    const mutes: string[] = [];
    agent.on('trackUnmuted', ({ source, publication }) => mutes.push(`unmuted:${source}:${publication.trackId}`));
    await waitFor(async () => agent.participants.size === 1, 5_000, 'the customer in the room');
    const customer = [...agent.participants.values()][0]!;
    expect(customer.publications.get('microphone')).toMatchObject({ trackId: producerId, muted: true });
    expect((await a.request('resumeProducer', { producerId })).error).toBeUndefined();
    await waitFor(async () => mutes.length > 0, 5_000, 'the unmute');
    expect(mutes).toEqual([`unmuted:microphone:${producerId}`]);
    expect(customer.publications.get('microphone')!.muted).toBe(false);
  }, 30_000);
});
