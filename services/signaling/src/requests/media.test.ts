import { describe, expect, it } from 'vitest';
import type { ParticipantRecord, RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { MediaKind, TrackSource, TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';
import { fakeSfu, sessionFor } from '../testing/fakes.js';
import { mediaHandlers, type MediaContext } from './media.js';

let produced = 0;

/** A participant's record in the room, as the store lists it. */
function recordOf(participantId: string, over: { visibleTo?: string; role?: string; nodeId?: string; tracks?: TrackInfo[] } = {}): ParticipantRecord {
  return {
    info: { participantId, identity: 'x', role: over.role ?? 'agent', joinedAtMs: 1, tracks: over.tracks ?? [], name: '', metadata: '', visibleTo: over.visibleTo ?? '' },
    owner: 'r',
    connected: true,
    disconnectedAtMs: 0,
    refreshedAtMs: Date.now(),
    nodeId: over.nodeId ?? 'N1',
    transportIds: [],
    grants: undefined,
    tokenExpiresAt: 0,
    resumeTokenHash: Buffer.alloc(0),
    consumers: {},
    recvTransportId: '',
    tokenId: '',
    removedAtMs: 0,
  };
}

function setUp(options: { answers?: Record<string, unknown>; grant?: NonNullable<Parameters<typeof sessionFor>[0]>['grant']; participants?: ParticipantRecord[]; nodes?: MediaContext['nodes'] } = {}) {
  // The first transport of a test is TR_send or TR_recv, later ones are numbered.
  let transports = 0;
  const sfu = fakeSfu({
    createWebRtcTransport: (request: { direction: TransportDirection }) => ({
      transportId: `${request.direction === TransportDirection.TRANSPORT_DIRECTION_SEND ? 'TR_send' : 'TR_recv'}${transports++ || ''}`,
      iceParameters: {},
      iceCandidates: [],
      dtlsParameters: {},
    }),
    connectTransport: {},
    restartIce: { iceParameters: { usernameFragment: 'u2' } },
    produce: () => ({ producerId: `PR_${++produced}` }),
    closeProducer: {},
    pauseProducer: {},
    resumeProducer: {},
    closeConsumer: {},
    consume: (request: { producerId: string }) => ({
      consumerId: `CO_${request.producerId}_${Math.random().toString(36).slice(2, 6)}`,
      producerId: request.producerId,
      kind: MediaKind.MEDIA_KIND_VIDEO,
      rtpParameters: {},
      type: 'simple',
      producerPaused: false,
      producerParticipantId: 'PA_2',
      source: TrackSource.TRACK_SOURCE_CAMERA,
    }),
    ...options.answers,
  });
  const { session, store } = sessionFor({ sfu: sfu.client, grant: options.grant });
  const published: Array<RoomEvent['event']> = [];
  const handlers = mediaHandlers({
    limits: { transports: 2, producers: 2, consumers: 2 },
    hub: { publish: (_tenant, _room, event) => void published.push(event) },
    iceServers: (s) => [{ urls: ['turn:turn.example:3478?transport=udp'], username: `1:${s.participantId}`, credential: 'c' }],
    // By default the room holds the one other participant the fake SFU's consumers come from.
    participants: async () => options.participants ?? [recordOf('PA_2')],
    // The room's home is this session's node unless a test says otherwise.
    nodes: options.nodes ?? {
      placementOf: async () => 'N1',
      node: async () => undefined,
      clientForNode: () => {
        throw new Error('not used');
      },
    },
  });
  return { handlers, session, store, calls: sfu.calls, published };
}

const rtp = { codecs: [] };

describe('media requests', () => {
  it("create transports on the session's node within the token's grants and the limit", async () => {
    const { handlers, session, store, calls } = setUp({ grant: { grants: { canPublish: false, canSubscribe: true, sources: [], canRecord: false, canUpdateMetadata: false } } });
    await expect(handlers.createTransport(session, { direction: 'send' })).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    expect(calls).toEqual([]);
    const recv = await handlers.createTransport(session, { direction: 'recv' });
    expect(recv).toMatchObject({ transportId: 'TR_recv', direction: 'recv' });
    expect(calls[0]).toMatchObject({
      method: 'createWebRtcTransport',
      request: { room: { tenant: 'demo', room: 'room-1' }, participantId: 'PA_1', direction: TransportDirection.TRANSPORT_DIRECTION_RECV },
    });
    expect(session.recvTransportId).toBe('TR_recv');
    await session.writesSettled();
    expect((await store.get('demo', 'room-1', 'PA_1'))?.record.transportIds).toEqual(['TR_recv']);
    await handlers.createTransport(session, { direction: 'recv' });
    await expect(handlers.createTransport(session, { direction: 'recv' })).rejects.toMatchObject({ code: ErrorCode.LIMIT_EXCEEDED });
  });

  it("restart ICE on an own transport with the session's fresh TURN servers", async () => {
    const { handlers, session } = setUp();
    await handlers.createTransport(session, { direction: 'recv' });
    await expect(handlers.restartIce(session, { transportId: 'TR_other' })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(await handlers.restartIce(session, { transportId: 'TR_recv' })).toEqual({
      iceParameters: { usernameFragment: 'u2' },
      iceServers: [{ urls: ['turn:turn.example:3478?transport=udp'], username: '1:PA_1', credential: 'c' }],
    });
  });

  it('publish a granted source on an own transport, stored before the room hears of it', async () => {
    produced = 0;
    const { handlers, session, store, published } = setUp();
    await handlers.createTransport(session, { direction: 'send' });
    await expect(handlers.produce(session, { transportId: 'TR_send', kind: 'audio', rtpParameters: rtp, source: 'camera', paused: false })).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    await expect(handlers.produce(session, { transportId: 'TR_other', kind: 'video', rtpParameters: rtp, source: 'camera', paused: false })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await expect(handlers.produce(session, { transportId: 'TR_send', kind: 'audio', rtpParameters: rtp, source: 'screen_audio', paused: false }).then(() => 'ok')).resolves.toBe('ok');
    expect(await handlers.produce(session, { transportId: 'TR_send', kind: 'video', rtpParameters: rtp, source: 'camera', paused: false })).toEqual({ producerId: 'PR_2' });
    await expect(handlers.produce(session, { transportId: 'TR_send', kind: 'video', rtpParameters: rtp, source: 'camera', paused: false })).rejects.toMatchObject({ code: ErrorCode.ALREADY_EXISTS });
    expect((await store.get('demo', 'room-1', 'PA_1'))?.record.info?.tracks.map((t) => t.source)).toContain('camera');
    expect(published.at(-1)).toEqual({ $case: 'producerAdded', value: { participantId: 'PA_1', track: { producerId: 'PR_2', source: 'camera', kind: 'video', paused: false } } });
  });

  it('refuses a source the token does not grant', async () => {
    const { handlers, session, calls } = setUp({ grant: { grants: { canPublish: true, canSubscribe: true, sources: ['microphone'], canRecord: false, canUpdateMetadata: false } } });
    await expect(handlers.produce(session, { transportId: 'TR_send', kind: 'video', rtpParameters: rtp, source: 'screen', paused: false })).rejects.toMatchObject({
      code: ErrorCode.PERMISSION_DENIED,
    });
    expect(calls).toEqual([]);
  });

  it("pause and close only the session's own producers, telling the room", async () => {
    const { handlers, session, store, published } = setUp();
    await expect(handlers.pauseProducer(session, { producerId: 'PR_x' })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    session.tracks.set('PR_1', { producerId: 'PR_1', source: 'camera', kind: 'video', paused: false });
    // The room hears of the pause only once the record says it (a late joiner lists the record).
    const storedWhenHeard: Array<boolean | undefined> = [];
    const hub = published.push.bind(published);
    published.push = (...events) => {
      void store.get('demo', 'room-1', 'PA_1').then((stored) => storedWhenHeard.push(stored?.record.info?.tracks[0]?.paused));
      return hub(...events);
    };
    await handlers.pauseProducer(session, { producerId: 'PR_1' });
    expect(session.tracks.get('PR_1')?.paused).toBe(true);
    await handlers.resumeProducer(session, { producerId: 'PR_1' });
    await session.writesSettled();
    await new Promise((r) => setTimeout(r, 10));
    expect(storedWhenHeard).toEqual([true, false]);
    published.push = hub;
    await handlers.closeProducer(session, { producerId: 'PR_1' });
    expect(session.tracks.size).toBe(0);
    expect(published.map((e) => e?.$case)).toEqual(['producerPaused', 'producerResumed', 'producerClosed']);
  });

  it('consume once per producer: a repeated consume replaces the first consumer', async () => {
    const { handlers, session, calls } = setUp();
    await expect(handlers.consume(session, { producerId: 'PR_9', rtpCapabilities: rtp, transportId: '' })).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    await handlers.createTransport(session, { direction: 'recv' });
    const first = await handlers.consume(session, { producerId: 'PR_9', rtpCapabilities: rtp, transportId: '' });
    expect(first).toMatchObject({ producerId: 'PR_9', participantId: 'PA_2', source: 'camera', kind: 'video' });
    const second = await handlers.consume(session, { producerId: 'PR_9', rtpCapabilities: rtp, transportId: '' });
    expect(calls.filter((c) => c.method === 'closeConsumer').map((c) => c.request.consumerId)).toEqual([first.consumerId]);
    expect([...session.consumers.keys()]).toEqual([second.consumerId]);
  });

  it('imports a producer of another node of the room before consuming it there', async () => {
    let imported = false;
    const other = recordOf('PA_2', { nodeId: 'N2', tracks: [{ producerId: 'PR_far', source: 'camera', kind: 'video', paused: false }] });
    const { handlers, session, calls } = setUp({
      participants: [other],
      nodes: {
        placementOf: async () => 'N1',
        node: async (id: string) => ({ nodeId: id, grpcAddress: `${id}:1` }) as never,
        clientForNode: () => {
          throw new Error('not used');
        },
      },
      answers: {
        importProducer: () => ((imported = true), {}),
        consume: (request: { producerId: string }) =>
          imported
            ? {
                consumerId: 'CO_far',
                producerId: request.producerId,
                kind: MediaKind.MEDIA_KIND_VIDEO,
                rtpParameters: {},
                type: 'pipe',
                producerPaused: false,
                producerParticipantId: 'PA_2',
                source: TrackSource.TRACK_SOURCE_CAMERA,
              }
            : new GatewayError(ErrorCode.NOT_FOUND, 'no such producer'),
      },
    });
    session.transports.add('TR_recv');
    session.recvTransportId = 'TR_recv';
    expect(await handlers.consume(session, { producerId: 'PR_far', rtpCapabilities: rtp, transportId: '' })).toMatchObject({ consumerId: 'CO_far' });
    expect(calls.map((c) => c.method)).toEqual(['consume', 'importProducer', 'consume']);
    expect(calls[1]!.request).toMatchObject({ producerId: 'PR_far', origin: { nodeId: 'N2', grpcAddress: 'N2:1' } });
  });

  it("refuses the track of a participant hidden from the consumer's role as if it did not exist, and closes what the node made of it", async () => {
    const whispering = [recordOf('PA_2', { role: 'supervisor', visibleTo: 'agents' })];
    const endUser = setUp({ participants: whispering, grant: { role: 'end_user' } });
    endUser.session.transports.add('TR_recv');
    endUser.session.recvTransportId = 'TR_recv';
    const refused = await endUser.handlers.consume(endUser.session, { producerId: 'PR_w', rtpCapabilities: rtp, transportId: '' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(GatewayError);
    expect((refused as GatewayError).code).toBe(ErrorCode.NOT_FOUND);
    expect(endUser.calls.map((c) => c.method)).toEqual(['consume', 'closeConsumer']);
    expect(endUser.session.consumers.size).toBe(0);

    const agent = setUp({ participants: whispering, grant: { role: 'agent' } });
    agent.session.transports.add('TR_recv');
    agent.session.recvTransportId = 'TR_recv';
    expect(await agent.handlers.consume(agent.session, { producerId: 'PR_w', rtpCapabilities: rtp, transportId: '' })).toMatchObject({ participantId: 'PA_2' });
  });
});
