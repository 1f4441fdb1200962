import type { types } from 'mediasoup';
import { Counter, type Registry } from 'prom-client';
import { SfuService, TransportDirection, type NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import {
  ErrorCode,
  GatewayError,
  type grpc,
  parseWith,
  unaryHandlers,
  withCheckedDecoding,
  type GrpcAccess,
  type GrpcService,
  type Logger,
  mediaKindName,
  mediaKindOf,
  trackSourceName,
  trackSourceOf,
} from '@gateway/common';
import type { SfuConfig } from '../config.js';
import type { Room } from '../Room.js';
import type { PipeCoordinator } from '../PipeCoordinator.js';
import { producerInfo } from './mapping.js';
import { sfuRequestSchemas, type SfuMethod, type SfuRequest } from './requests.js';

/** What the gRPC API needs of its node (SfuNode is one): the API never depends on the node class. */
export interface SfuApiNode {
  readonly config: Pick<SfuConfig, 'nodeId' | 'grpcTls' | 'pipe' | 'tapListenIp'>;
  readonly grpcAddress: string;
  readonly draining: boolean;
  /** Where the API's own metrics (requests by method and code) go. */
  readonly metrics: Registry;
  readonly pipes: Pick<PipeCoordinator, 'importProducer' | 'openPipe' | 'pipeConsume' | 'pipedProducerChanged' | 'closePipe'>;
  load(): NodeLoad;
  /** The room, or NOT_FOUND. */
  room(tenant: string, name: string): Room;
  openRoom(tenant: string, name: string): Promise<{ room: Room; created: boolean }>;
  /** Whether `ip` is the RTP address of a live recorder node. */
  isRecorderAddress(ip: string): Promise<boolean>;
}

const signaling = ['signaling'] as const satisfies readonly GrpcService[];
const taps = ['recorder', 'signaling'] as const satisfies readonly GrpcService[];
const nodes = ['sfu'] as const satisfies readonly GrpcService[];

/**
 * Which services may call each method, by the identity in their certificates: the rooms and
 * their media belong to signaling, recording taps to the recorder (and signaling), pipes to the
 * other SFU nodes. `unaryHandlers` applies it before a request is read; a method without an
 * entry would not compile, and is refused at run time.
 */
export const sfuAccess = {
  openRoom: signaling,
  closeRoom: signaling,
  createWebRtcTransport: signaling,
  connectTransport: signaling,
  restartIce: signaling,
  getTransportStats: signaling,
  closeTransport: signaling,
  produce: signaling,
  pauseProducer: signaling,
  resumeProducer: signaling,
  closeProducer: signaling,
  consume: signaling,
  resumeConsumer: signaling,
  pauseConsumer: signaling,
  setPreferredLayers: signaling,
  closeConsumer: signaling,
  closeParticipant: signaling,
  importProducer: signaling,
  getNodeInfo: ['signaling', 'recorder', 'sfu'],
  listProducers: taps,
  createTapStream: taps,
  setTapPaused: taps,
  closeTap: taps,
  openPipe: nodes,
  pipeConsume: nodes,
  pipedProducerChanged: nodes,
  closePipe: nodes,
} as const satisfies Record<SfuMethod, readonly GrpcService[]>;

/**
 * Runs an operation on mediasoup objects that a concurrent call (a close, the room ending) may
 * close under it: failing because one of them closed meanwhile is NOT_FOUND, like asking after
 * the close, not an unexpected failure.
 */
async function whileOpen<T>(targets: Array<{ closed: boolean }>, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    // mediasoup delivers the worker's "closed" notifications a turn of the event loop after the
    // responses that came with them: give them that turn before judging.
    for (let turn = 0; turn < 3 && !targets.some((target) => target.closed); turn++) await new Promise((resolve) => setImmediate(resolve));
    if (targets.some((target) => target.closed)) throw new GatewayError(ErrorCode.NOT_FOUND, 'it was closed meanwhile', { cause: error });
    throw error;
  }
}

/** gRPC method names as they appear in messages: OpenPipe, CreateTapStream, ... */
const methodName = (method: string) => method[0]!.toUpperCase() + method.slice(1);

/**
 * The SFU's gRPC API (gateway.sfu.v1.Sfu). Every call names the room, and every id is looked
 * up inside that room only, so one tenant can never reach another tenant's media. Each request
 * is checked against its schema (requests.ts) before anything is looked up; the handlers get
 * only what passed.
 */
export function registerSfuService(server: grpc.Server, node: SfuApiNode, log: Logger): void {
  const requests = new Counter({
    name: 'gateway_sfu_grpc_requests_total',
    help: 'gRPC requests by method and result code',
    labelNames: ['method', 'code'] as const,
    registers: [node.metrics],
  });
  const room = (ref: { tenant: string; room: string }) => node.room(ref.tenant, ref.room);
  const transportOf = (ref: { room: { tenant: string; room: string }; transportId: string }) => {
    const found = room(ref.room);
    return { room: found, transport: found.transport(ref.transportId) };
  };

  const checked: { [M in SfuMethod]: (req: SfuRequest<M>) => Promise<object> } = {
    async openRoom(req) {
      const { room: opened, created } = await node.openRoom(req.room.tenant, req.room.room);
      return { rtpCapabilities: opened.rtpCapabilities as unknown as Record<string, unknown>, created, activeSpeakerParticipantId: opened.activeSpeakerParticipantId };
    },
    async closeRoom(req) {
      room(req).close('closed');
      return {};
    },
    async createWebRtcTransport(req) {
      const direction = req.direction === TransportDirection.TRANSPORT_DIRECTION_SEND ? 'send' : 'recv';
      const found = room(req.room);
      const transport = await whileOpen([found], () => found.createWebRtcTransport(req.participantId, direction));
      return {
        transportId: transport.id,
        iceParameters: transport.iceParameters as unknown as Record<string, unknown>,
        iceCandidates: transport.iceCandidates as unknown as Array<Record<string, unknown>>,
        dtlsParameters: transport.dtlsParameters as unknown as Record<string, unknown>,
      };
    },
    async connectTransport(req) {
      const { transport } = transportOf(req.transport);
      try {
        await whileOpen([transport], () => transport.connect({ dtlsParameters: req.dtlsParameters as types.DtlsParameters }));
      } catch (error) {
        if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) throw error;
        // mediasoup's words stay in the cause, for the logs.
        throw new GatewayError(ErrorCode.BAD_REQUEST, 'the transport refused the DTLS parameters (or is connected already)', { cause: error });
      }
      return {};
    },
    async restartIce(req) {
      const { transport } = transportOf(req);
      const iceParameters = await whileOpen([transport], () => transport.restartIce());
      return { iceParameters: iceParameters as unknown as Record<string, unknown> };
    },
    async getTransportStats(req) {
      const { room: found, transport } = transportOf(req);
      const stats: Array<Record<string, unknown>> = [];
      for (const s of await whileOpen([transport], () => transport.getStats())) stats.push({ ...s });
      // Per-stream figures: a send transport carries its participant's producers, a receive
      // transport its consumers (one transport per direction per participant).
      const owner = transport.appData.participantId;
      const streams = transport.appData.direction === 'send' ? [...found.producers.values()] : [...found.consumers.values()];
      for (const stream of streams) {
        if (stream.appData.participantId !== owner) continue;
        for (const s of await whileOpen([transport, stream], () => stream.getStats())) stats.push({ ...s, [transport.appData.direction === 'send' ? 'producerId' : 'consumerId']: stream.id });
      }
      return { stats };
    },
    async closeTransport(req) {
      transportOf(req).transport.close();
      return {};
    },
    async produce(req) {
      const { room: found, transport } = transportOf(req.transport);
      const producer = await whileOpen([found, transport], () =>
        found.produce(req.transport.transportId, req.participantId, mediaKindName(req.kind)!, req.rtpParameters as types.RtpParameters, trackSourceName(req.source)!, req.paused),
      );
      return { producerId: producer.id };
    },
    async pauseProducer(req) {
      const producer = room(req.room).producer(req.producerId);
      await whileOpen([producer], () => producer.pause());
      return {};
    },
    async resumeProducer(req) {
      const producer = room(req.room).producer(req.producerId);
      await whileOpen([producer], () => producer.resume());
      return {};
    },
    async closeProducer(req) {
      room(req.room).producer(req.producerId).close();
      return {};
    },
    async consume(req) {
      const { room: found, transport } = transportOf(req.transport);
      const producer = found.producer(req.producerId);
      const consumer = await whileOpen([found, transport, producer], () => found.consume(req.transport.transportId, req.producerId, req.rtpCapabilities as types.RtpCapabilities));
      return {
        consumerId: consumer.id,
        producerId: consumer.producerId,
        kind: mediaKindOf(consumer.kind),
        rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown>,
        type: consumer.type,
        producerPaused: consumer.producerPaused,
        producerParticipantId: producer.appData.participantId,
        source: trackSourceOf(consumer.appData.source),
      };
    },
    async resumeConsumer(req) {
      const found = room(req.room);
      const consumer = found.consumer(req.consumerId);
      await whileOpen([consumer], () => found.resumeConsumer(req.consumerId));
      return {};
    },
    async pauseConsumer(req) {
      const consumer = room(req.room).consumer(req.consumerId);
      await whileOpen([consumer], () => consumer.pause());
      return {};
    },
    async setPreferredLayers(req) {
      const found = room(req.consumer.room);
      const consumer = found.consumer(req.consumer.consumerId);
      await whileOpen([consumer], () => found.setPreferredLayers(consumer.id, { spatialLayer: req.spatialLayer, temporalLayer: req.temporalLayer }));
      return {};
    },
    async closeConsumer(req) {
      room(req.room).consumer(req.consumerId).close();
      return {};
    },
    async closeParticipant(req) {
      room(req.room).closeParticipant(req.participantId);
      return {};
    },
    async listProducers(req) {
      return { producers: [...room(req).producers.values()].map(producerInfo) };
    },
    async createTapStream(req) {
      const found = room(req.tap.room);
      // A room's media goes to recorder nodes only: the address must be one the recorder
      // registry holds, whatever the caller says.
      if (!(await node.isRecorderAddress(req.ip))) {
        throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'taps go only to the RTP address of a registered recorder node');
      }
      const destination = { ip: req.ip, port: req.port, rtcpPort: req.rtcpPort };
      const tapped = found.producer(req.producerId);
      const { consumer, producer } = await whileOpen([found, tapped], () => found.taps.createStream(req.tap.tapId, req.producerId, destination, node.config.tapListenIp, req.paused));
      return { consumerId: consumer.id, producer: producerInfo(producer), rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown> };
    },
    async setTapPaused(req) {
      const found = room(req.tap.room);
      await whileOpen([found], () => found.taps.setPaused(req.tap.tapId, req.paused));
      return {};
    },
    async closeTap(req) {
      room(req.room).taps.close(req.tapId);
      return {};
    },
    async importProducer(req) {
      room(req.room);
      await node.pipes.importProducer(req);
      return {};
    },
    async openPipe(req) {
      room(req.room);
      return node.pipes.openPipe(req);
    },
    async pipeConsume(req) {
      room(req.room);
      const { consumer, producer } = await node.pipes.pipeConsume(req);
      return { producer: producerInfo(producer), rtpParameters: consumer.rtpParameters as unknown as Record<string, unknown> };
    },
    async pipedProducerChanged(req) {
      room(req.room);
      await node.pipes.pipedProducerChanged(req);
      return {};
    },
    async closePipe(req) {
      room(req.room);
      node.pipes.closePipe(req);
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
        pipeIp: node.config.pipe.announcedAddress ?? node.config.pipe.listenIp,
      };
    },
  };

  // Each handler gets its request only once it has passed the method's schema: a bad one is
  // INVALID_ARGUMENT naming the field (never echoing its value), and nothing else happens.
  const handlers = Object.fromEntries(
    (Object.keys(checked) as SfuMethod[]).map((method) => [
      method,
      (request: unknown) => (checked[method] as (req: unknown) => Promise<object>)(parseWith(sfuRequestSchemas[method], request, `${methodName(method)} request`)),
    ]),
  ) as { [M in SfuMethod]: (request: unknown) => Promise<object> };
  const access: GrpcAccess<typeof handlers> = sfuAccess;

  const implementation = unaryHandlers(handlers, { access, requireIdentity: node.config.grpcTls !== undefined, log });
  // Count every call by method and outcome.
  for (const [method, handler] of Object.entries(implementation)) {
    implementation[method] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) =>
      (handler as grpc.handleUnaryCall<unknown, unknown>)(call, (error, value) => {
        requests.inc({ method, code: error ? String(error.code) : '0' });
        callback(error, value);
      })) as grpc.UntypedHandleCall;
  }
  server.addService(withCheckedDecoding(SfuService), implementation);
}
