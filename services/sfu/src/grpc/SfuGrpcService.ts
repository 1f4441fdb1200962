import type { types } from 'mediasoup';
import { Counter } from 'prom-client';
import {
  MediaKind,
  SfuService,
  TrackSource,
  TransportDirection,
  type ConsumeRequest,
  type ClosePipeRequest,
  type CreateTapStreamRequest,
  type ImportProducerRequest,
  type OpenPipeRequest,
  type PipeConsumeRequest,
  type PipedProducerChange,
  type SetTapPausedRequest,
  type TapRef,
  type ConsumerRef,
  type ConnectTransportRequest,
  type CreateWebRtcTransportRequest,
  type OpenRoomRequest,
  type ParticipantRef,
  type ProduceRequest,
  type ProducerRef,
  type RoomRef,
  type SetPreferredLayersRequest,
  type TransportRef,
} from '@gateway/proto/gateway/sfu/v1/sfu';
import { ErrorCode, GatewayError, SUBJECT_TOKEN, grpc, unaryHandlers, type Logger } from '@gateway/common';
import type { SfuNode } from '../SfuNode.js';
import type { Room } from '../Room.js';
import { kindName, mediaKind, producerInfo, sourceNames, sourceValues } from './mapping.js';

function badRequest(message: string): GatewayError {
  return new GatewayError(ErrorCode.BAD_REQUEST, message);
}

function roomOf(node: SfuNode, ref: RoomRef | undefined): Room {
  if (!ref || !SUBJECT_TOKEN.test(ref.tenant) || !SUBJECT_TOKEN.test(ref.room)) throw badRequest('a valid room reference is required');
  return node.room(ref.tenant, ref.room);
}

function requireId(value: string, what: string): string {
  if (!value) throw badRequest(`${what} is required`);
  return value;
}

function requireObject<T>(value: { [key: string]: any } | undefined, what: string): T {
  if (!value || typeof value !== 'object') throw badRequest(`${what} is required`);
  return value as T;
}

function tapId(ref: TapRef | undefined): string {
  const id = requireId(ref?.tapId ?? '', 'tapId');
  if (!SUBJECT_TOKEN.test(id)) throw badRequest('tapId must be letters, digits, _ or -');
  return id;
}

/**
 * The SFU's gRPC API (gateway.sfu.v1.Sfu). Every call names the room, and every id is looked
 * up inside that room only, so one tenant can never reach another tenant's media.
 */
export function registerSfuService(server: grpc.Server, node: SfuNode, log: Logger): void {
  const requests = new Counter({
    name: 'gateway_sfu_grpc_requests_total',
    help: 'gRPC requests by method and result code',
    labelNames: ['method', 'code'] as const,
    registers: [node.metrics],
  });
  const transportRef = (ref: TransportRef | undefined) => {
    const room = roomOf(node, ref?.room);
    return { room, transport: room.transport(requireId(ref?.transportId ?? '', 'transportId')) };
  };

  const handlers = {
    async openRoom(req: OpenRoomRequest) {
      if (!req.room) throw badRequest('room is required');
      const { room, created } = await node.openRoom(req.room.tenant, req.room.room);
      return { rtpCapabilities: room.rtpCapabilities as unknown as Record<string, unknown>, created, activeSpeakerParticipantId: room.activeSpeakerParticipantId };
    },
    async closeRoom(req: RoomRef) {
      roomOf(node, req).close('closed');
      return {};
    },
    async createWebRtcTransport(req: CreateWebRtcTransportRequest) {
      const room = roomOf(node, req.room);
      const participantId = requireId(req.participantId, 'participantId');
      const direction =
        req.direction === TransportDirection.TRANSPORT_DIRECTION_SEND ? 'send'
        : req.direction === TransportDirection.TRANSPORT_DIRECTION_RECV ? 'recv'
        : undefined;
      if (!direction) throw badRequest('direction must be SEND or RECV');
      const transport = await room.createWebRtcTransport(participantId, direction);
      return {
        transportId: transport.id,
        iceParameters: transport.iceParameters as unknown as Record<string, unknown>,
        iceCandidates: transport.iceCandidates as unknown as Array<Record<string, unknown>>,
        dtlsParameters: transport.dtlsParameters as unknown as Record<string, unknown>,
      };
    },
    async connectTransport(req: ConnectTransportRequest) {
      const { transport } = transportRef(req.transport);
      const dtlsParameters = requireObject<types.DtlsParameters>(req.dtlsParameters, 'dtlsParameters');
      try {
        await transport.connect({ dtlsParameters });
      } catch (error) {
        throw new GatewayError(ErrorCode.BAD_REQUEST, `connect refused: ${(error as Error).message}`, { cause: error });
      }
      return {};
    },
    async restartIce(req: TransportRef) {
      const { transport } = transportRef(req);
      const iceParameters = await transport.restartIce();
      return { iceParameters: iceParameters as unknown as Record<string, unknown> };
    },
    async getTransportStats(req: TransportRef) {
      const { room, transport } = transportRef(req);
      const stats: Array<Record<string, unknown>> = [];
      for (const s of await transport.getStats()) stats.push({ ...s });
      // Per-stream figures: a send transport carries its participant's producers, a receive
      // transport its consumers (one transport per direction per participant).
      const owner = transport.appData.participantId;
      const streams = transport.appData.direction === 'send' ? room.producers.values() : room.consumers.values();
      for (const stream of streams) {
        if (stream.appData.participantId !== owner) continue;
        for (const s of await stream.getStats()) stats.push({ ...s, [transport.appData.direction === 'send' ? 'producerId' : 'consumerId']: stream.id });
      }
      return { stats };
    },
    async closeTransport(req: TransportRef) {
      transportRef(req).transport.close();
      return {};
    },
    async produce(req: ProduceRequest) {
      const { room } = transportRef(req.transport);
      const source = sourceNames[req.source];
      if (!source) throw badRequest('source is required');
      const kind = kindName(req.kind);
      if (!kind) throw badRequest('kind must be AUDIO or VIDEO');
      const rtpParameters = requireObject<types.RtpParameters>(req.rtpParameters, 'rtpParameters');
      const producer = await room.produce(
        req.transport!.transportId,
        requireId(req.participantId, 'participantId'),
        kind,
        rtpParameters,
        source,
        req.paused,
      );
      return { producerId: producer.id };
    },
    async pauseProducer(req: ProducerRef) {
      await roomOf(node, req.room).producer(requireId(req.producerId, 'producerId')).pause();
      return {};
    },
    async resumeProducer(req: ProducerRef) {
      await roomOf(node, req.room).producer(requireId(req.producerId, 'producerId')).resume();
      return {};
    },
    async closeProducer(req: ProducerRef) {
      roomOf(node, req.room).producer(requireId(req.producerId, 'producerId')).close();
      return {};
    },
    async consume(req: ConsumeRequest) {
      const { room } = transportRef(req.transport);
      const rtpCapabilities = requireObject<types.RtpCapabilities>(req.rtpCapabilities, 'rtpCapabilities');
      const consumer = await room.consume(req.transport!.transportId, requireId(req.producerId, 'producerId'), rtpCapabilities);
      return {
        consumerId: consumer.id,
        producerId: consumer.producerId,
        kind: mediaKind(consumer.kind),
        rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown>,
        type: consumer.type,
        producerPaused: consumer.producerPaused,
        producerParticipantId: room.producer(consumer.producerId).appData.participantId,
        source: sourceValues[consumer.appData.source ?? ''] ?? TrackSource.TRACK_SOURCE_UNSPECIFIED,
      };
    },
    async resumeConsumer(req: ConsumerRef) {
      await roomOf(node, req.room).resumeConsumer(requireId(req.consumerId, 'consumerId'));
      return {};
    },
    async pauseConsumer(req: ConsumerRef) {
      await roomOf(node, req.room).consumer(requireId(req.consumerId, 'consumerId')).pause();
      return {};
    },
    async setPreferredLayers(req: SetPreferredLayersRequest) {
      const consumer = roomOf(node, req.consumer?.room).consumer(requireId(req.consumer?.consumerId ?? '', 'consumerId'));
      await consumer.setPreferredLayers({ spatialLayer: req.spatialLayer, temporalLayer: req.temporalLayer });
      return {};
    },
    async closeConsumer(req: ConsumerRef) {
      roomOf(node, req.room).consumer(requireId(req.consumerId, 'consumerId')).close();
      return {};
    },
    async closeParticipant(req: ParticipantRef) {
      roomOf(node, req.room).closeParticipant(requireId(req.participantId, 'participantId'));
      return {};
    },
    async listProducers(req: RoomRef) {
      return { producers: [...roomOf(node, req).producers.values()].map(producerInfo) };
    },
    async createTapStream(req: CreateTapStreamRequest) {
      const room = roomOf(node, req.tap?.room);
      const id = tapId(req.tap);
      if (!req.ip || !req.port || req.port > 65535 || req.rtcpPort > 65535) throw badRequest('ip and port of the recorder are required');
      const destination = { ip: req.ip, port: req.port, rtcpPort: req.rtcpPort };
      const { consumer, producer } = await room.createTapStream(id, requireId(req.producerId, 'producerId'), destination, node.config.tapListenIp, req.paused);
      return { consumerId: consumer.id, producer: producerInfo(producer), rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown> };
    },
    async setTapPaused(req: SetTapPausedRequest) {
      await roomOf(node, req.tap?.room).setTapPaused(tapId(req.tap), req.paused);
      return {};
    },
    async closeTap(req: TapRef) {
      roomOf(node, req.room).closeTap(tapId(req));
      return {};
    },
    async importProducer(req: ImportProducerRequest) {
      roomOf(node, req.room);
      await node.pipes.importProducer({ ...req, producerId: requireId(req.producerId, 'producerId') });
      return {};
    },
    async openPipe(req: OpenPipeRequest) {
      roomOf(node, req.room);
      return node.pipes.openPipe(req);
    },
    async pipeConsume(req: PipeConsumeRequest) {
      roomOf(node, req.room);
      const { consumer, producer } = await node.pipes.pipeConsume({
        ...req,
        peerNodeId: requireId(req.peerNodeId, 'peerNodeId'),
        producerId: requireId(req.producerId, 'producerId'),
      });
      return { producer: producerInfo(producer), rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown> };
    },
    async pipedProducerChanged(req: PipedProducerChange) {
      roomOf(node, req.room);
      await node.pipes.pipedProducerChanged(req);
      return {};
    },
    async closePipe(req: ClosePipeRequest) {
      roomOf(node, req.room);
      node.pipes.closePipe({ ...req, peerNodeId: requireId(req.peerNodeId, 'peerNodeId') });
      return {};
    },
    async getNodeInfo() {
      return {
        nodeId: node.config.nodeId,
        grpcAddress: node.grpcAddress,
        load: node.load(),
        draining: node.draining,
        updatedAtMs: Date.now(),
        version: '1',
      };
    },
  };

  const implementation = unaryHandlers(handlers, (method, error) => {
    if (error.code === ErrorCode.INTERNAL) log.error({ method, err: error }, 'gRPC handler failed');
  });
  // Count every call by method and outcome.
  for (const [method, handler] of Object.entries(implementation)) {
    implementation[method] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
      (handler as grpc.handleUnaryCall<unknown, unknown>)(call, (error, value) => {
        requests.inc({ method, code: error ? String(error.code) : '0' });
        callback(error, value);
      })) as grpc.UntypedHandleCall;
  }
  server.addService(SfuService, implementation);
}
