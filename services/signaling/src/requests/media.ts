import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { IceServer, TrackInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError, callUnary, mediaKindName, mediaKindOf, trackSourceName, trackSourceOf, type TrackSourceName } from '@gateway/common';
import type { SfuDirectory } from '@gateway/cluster';
import type { RoomHub } from '../rooms/RoomHub.js';
import { callSessionNode } from '../participant/nodeCall.js';
import type { ParticipantSession } from '../participant/ParticipantSession.js';
import { setTrackPaused } from '../participant/tracks.js';
import type { Handlers } from './types.js';

/** What the media requests need besides the participant's session. */
export interface MediaContext {
  /** What one participant may hold on the SFU. */
  limits: { transports: number; producers: number; consumers: number };
  hub: Pick<RoomHub, 'publish'>;
  /** The room's participant records, every replica's: who publishes which producer from which node. */
  participants(tenant: string, room: string): Promise<ParticipantRecord[]>;
  nodes: Pick<SfuDirectory, 'placementOf' | 'node' | 'clientForNode'>;
  /** The participant's TURN servers with fresh credentials (none without TURN). */
  iceServers(session: ParticipantSession): IceServer[];
}

export type MediaCase =
  | 'createTransport'
  | 'connectTransport'
  | 'restartIce'
  | 'getStats'
  | 'produce'
  | 'pauseProducer'
  | 'resumeProducer'
  | 'closeProducer'
  | 'consume'
  | 'resumeConsumer'
  | 'pauseConsumer'
  | 'setPreferredLayers';

type Source = TrackSourceName;
/** Which media kind each source carries, and which granted source allows it. */
const sourceRules: Record<Source, { kind: 'audio' | 'video'; grant: 'camera' | 'microphone' | 'screen' }> = {
  camera: { kind: 'video', grant: 'camera' },
  microphone: { kind: 'audio', grant: 'microphone' },
  screen: { kind: 'video', grant: 'screen' },
  screen_audio: { kind: 'audio', grant: 'screen' },
};

function withinLimit(held: number, limit: number, what: string): void {
  if (held >= limit) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a participant holds at most ${limit} ${what}`);
}

/** Transports, producers and consumers of the participant on its media node. */
export function mediaHandlers(ctx: MediaContext): Handlers<MediaCase> {
  /**
   * A producer published away from the room's home node is imported there before anyone hears
   * of it, so the home node holds every stream of the room: the recorder taps the room there.
   */
  async function shareWithHomeNode(session: ParticipantSession, producerId: string): Promise<void> {
    try {
      const homeId = await ctx.nodes.placementOf(session.tenant, session.room);
      if (!homeId || homeId === session.nodeId) return;
      const [home, self] = await Promise.all([ctx.nodes.node(homeId), ctx.nodes.node(session.nodeId)]);
      if (!home || !self) return;
      const client = ctx.nodes.clientForNode(home);
      await callUnary(client, client.importProducer, { room: session.roomRef(), producerId, origin: { nodeId: self.nodeId, grpcAddress: self.grpcAddress } });
    } catch (error) {
      // The call goes on; only a recording of the room would miss this stream.
      session.log.warn({ err: error, producerId }, "importing a producer into the room's home node failed");
    }
  }

  /**
   * Asks the session's node to import a producer published on another node of the room.
   * False when no participant of the room publishes it from another live node.
   */
  async function importProducer(session: ParticipantSession, producerId: string): Promise<boolean> {
    const records = await ctx.participants(session.tenant, session.room);
    const owner = records.find((r) => r.info?.tracks.some((t) => t.producerId === producerId));
    if (!owner || owner.nodeId === session.nodeId) return false;
    const origin = await ctx.nodes.node(owner.nodeId);
    if (!origin) return false;
    await callSessionNode(session, session.sfu.importProducer, { room: session.roomRef(), producerId, origin: { nodeId: origin.nodeId, grpcAddress: origin.grpcAddress } });
    return true;
  }

  async function setProducerPaused(session: ParticipantSession, requested: string, pause: boolean): Promise<Record<string, never>> {
    await setTrackPaused(session, ctx.hub, requested, pause);
    return {};
  }

  async function setConsumerPaused(session: ParticipantSession, requested: string, pause: boolean): Promise<Record<string, never>> {
    const consumerId = session.ownConsumer(requested);
    await callSessionNode(session, pause ? session.sfu.pauseConsumer : session.sfu.resumeConsumer, { room: session.roomRef(), consumerId });
    return {};
  }

  /** Whether the session may receive the tracks of a participant (one it has not heard of is read from the room's records). */
  function mayReceiveFrom(session: ParticipantSession, participantId: string): Promise<boolean> {
    return session.visibility.seesOrLooksUp(participantId, async (id) => (await ctx.participants(session.tenant, session.room)).find((r) => r.info?.participantId === id)?.info);
  }

  return {
    async createTransport(session, { direction }) {
      if (direction !== 'send' && direction !== 'recv') throw new GatewayError(ErrorCode.BAD_REQUEST, 'direction must be "send" or "recv"');
      if (direction === 'send' && !session.grant.grants.canPublish) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not publish');
      if (direction === 'recv' && !session.grant.grants.canSubscribe) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not subscribe');
      withinLimit(session.transports.size, ctx.limits.transports, 'transports');
      const transport = await callSessionNode(session, session.sfu.createWebRtcTransport, {
        room: session.roomRef(),
        participantId: session.participantId,
        direction: direction === 'send' ? TransportDirection.TRANSPORT_DIRECTION_SEND : TransportDirection.TRANSPORT_DIRECTION_RECV,
      });
      session.transports.add(transport.transportId);
      if (direction === 'recv') session.recvTransportId = transport.transportId;
      void session.persist();
      return {
        transportId: transport.transportId,
        direction,
        iceParameters: transport.iceParameters,
        iceCandidates: transport.iceCandidates,
        dtlsParameters: transport.dtlsParameters,
      };
    },

    async connectTransport(session, request) {
      const transportId = session.ownTransport(request.transportId);
      if (!request.dtlsParameters) throw new GatewayError(ErrorCode.BAD_REQUEST, 'dtlsParameters is required');
      await callSessionNode(session, session.sfu.connectTransport, { transport: { room: session.roomRef(), transportId }, dtlsParameters: request.dtlsParameters });
      return {};
    },

    async restartIce(session, request) {
      const transportId = session.ownTransport(request.transportId);
      const { iceParameters } = await callSessionNode(session, session.sfu.restartIce, { room: session.roomRef(), transportId });
      // A restart may come long after the join: the credentials given then may be past their expiry.
      return { iceParameters, iceServers: ctx.iceServers(session) };
    },

    async getStats(session, request) {
      const transportId = session.ownTransport(request.transportId);
      const { stats } = await callSessionNode(session, session.sfu.getTransportStats, { room: session.roomRef(), transportId });
      return { stats };
    },

    async produce(session, { transportId: requestedTransport, kind, rtpParameters, source, paused }) {
      const rule = sourceRules[source as Source];
      if (!rule) throw new GatewayError(ErrorCode.BAD_REQUEST, 'source must be camera, microphone, screen or screen_audio');
      if (!session.grant.grants.canPublish || !session.grant.grants.sources.includes(rule.grant)) {
        throw new GatewayError(ErrorCode.PERMISSION_DENIED, `this token may not publish ${source}`);
      }
      if (kind !== rule.kind) throw new GatewayError(ErrorCode.BAD_REQUEST, `${source} must be ${rule.kind}`);
      if ([...session.tracks.values()].some((t) => t.source === source)) {
        throw new GatewayError(ErrorCode.ALREADY_EXISTS, `${source} is already published; unpublish it first`);
      }
      if (!rtpParameters) throw new GatewayError(ErrorCode.BAD_REQUEST, 'rtpParameters is required');
      withinLimit(session.tracks.size, ctx.limits.producers, 'published tracks');
      const transportId = session.ownTransport(requestedTransport);
      const { producerId } = await callSessionNode(session, session.sfu.produce, {
        transport: { room: session.roomRef(), transportId },
        participantId: session.participantId,
        kind: mediaKindOf(kind),
        rtpParameters,
        source: trackSourceOf(source),
        paused,
      });
      const track: TrackInfo = { producerId, source, kind, paused };
      session.tracks.set(producerId, track);
      // Stored before anyone hears of it: a participant on another node finds the producer's
      // node in this record when it consumes.
      await session.persist();
      await shareWithHomeNode(session, producerId);
      ctx.hub.publish(session.tenant, session.room, { $case: 'producerAdded', value: { participantId: session.participantId, track } });
      return { producerId };
    },

    pauseProducer: (session, request) => setProducerPaused(session, request.producerId, true),
    resumeProducer: (session, request) => setProducerPaused(session, request.producerId, false),

    async closeProducer(session, request) {
      const producerId = session.ownProducer(request.producerId);
      await callSessionNode(session, session.sfu.closeProducer, { room: session.roomRef(), producerId });
      session.tracks.delete(producerId);
      void session.persist();
      ctx.hub.publish(session.tenant, session.room, { $case: 'producerClosed', value: { participantId: session.participantId, producerId } });
      return {};
    },

    async consume(session, request) {
      if (!session.grant.grants.canSubscribe) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not subscribe');
      const { producerId, rtpCapabilities } = request;
      if (!producerId || !rtpCapabilities) throw new GatewayError(ErrorCode.BAD_REQUEST, 'producerId and rtpCapabilities are required');
      const transportId = request.transportId ? session.ownTransport(request.transportId) : session.receiveTransport();
      // One consumer per producer: a second consume of it (a retry after a timeout, a client
      // that lost track) replaces the first, so repeating it cannot pile consumers up.
      const previous = [...session.consumers].find(([, consumed]) => consumed === producerId)?.[0];
      if (previous) {
        await callSessionNode(session, session.sfu.closeConsumer, { room: session.roomRef(), consumerId: previous }).catch((error: GatewayError) => {
          if (error.code !== ErrorCode.NOT_FOUND) throw error;
        });
        session.consumers.delete(previous);
      }
      withinLimit(session.consumers.size, ctx.limits.consumers, 'received tracks');
      const consumeRequest = { transport: { room: session.roomRef(), transportId }, producerId, rtpCapabilities };
      const consumer = await callSessionNode(session, session.sfu.consume, consumeRequest).catch(async (error: GatewayError) => {
        // A producer of the room's other node: pipe it here, then consume it like a local one.
        if (error.code !== ErrorCode.NOT_FOUND || !(await importProducer(session, producerId))) throw error;
        return callSessionNode(session, session.sfu.consume, consumeRequest);
      });
      // A hidden participant's track (participant/visibility.ts) is as good as absent to those
      // who may not see it; the consumer was created paused, so nothing of it was sent.
      if (!(await mayReceiveFrom(session, consumer.producerParticipantId))) {
        await callSessionNode(session, session.sfu.closeConsumer, { room: session.roomRef(), consumerId: consumer.consumerId }).catch(() => undefined);
        throw new GatewayError(ErrorCode.NOT_FOUND, 'no such producer in this room');
      }
      session.consumers.set(consumer.consumerId, producerId);
      void session.persist();
      return {
        consumerId: consumer.consumerId,
        producerId: consumer.producerId,
        participantId: consumer.producerParticipantId,
        source: trackSourceName(consumer.source) ?? '',
        kind: mediaKindName(consumer.kind) ?? 'video',
        rtpParameters: consumer.rtpParameters,
        type: consumer.type,
        producerPaused: consumer.producerPaused,
      };
    },

    resumeConsumer: (session, request) => setConsumerPaused(session, request.consumerId, false),
    pauseConsumer: (session, request) => setConsumerPaused(session, request.consumerId, true),

    async setPreferredLayers(session, request) {
      const consumerId = session.ownConsumer(request.consumerId);
      await callSessionNode(session, session.sfu.setPreferredLayers, {
        consumer: { room: session.roomRef(), consumerId },
        spatialLayer: request.spatialLayer,
        temporalLayer: request.temporalLayer,
      });
      return {};
    },
  };
}
