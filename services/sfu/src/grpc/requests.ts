import { z } from 'zod';
import { MediaKind, PipedProducerEvent, TrackSource, TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { dtlsParametersSchema, jsonShapeProblem, rtpCapabilitiesSchema, rtpParametersSchema, schemas, srtpParametersSchema, type JsonLimits } from '@gateway/common';
import { ipSchema, nodeIdSchema } from '@gateway/cluster';

/**
 * The shape of every request of the SFU's gRPC API, checked before anything is looked up or
 * handed to mediasoup: ids, tenants and rooms by their alphabets, addresses, ports and layers
 * in range, enums among their known values, and the JSON objects (`google.protobuf.Struct`:
 * RTP parameters and capabilities, DTLS and SRTP parameters) first bounded in depth and size,
 * then by mediasoup's shapes. Every field a handler uses comes out of these schemas.
 */

/** mediasoup's negotiation objects are a few kilobytes at most: a few hundred values, a few levels. */
const structLimits: JsonLimits = { maxDepth: 8, maxNodes: 4_000 };

/** A Struct field, bounded in shape before `schema` walks it; absent is refused. */
function struct<S extends z.ZodType>(schema: S) {
  return z
    .unknown()
    .transform((value, ctx): unknown => {
      if (value === undefined || value === null) {
        ctx.addIssue({ code: 'custom', message: 'is required' });
        return z.NEVER;
      }
      const problem = jsonShapeProblem(value, structLimits);
      if (problem) {
        ctx.addIssue({ code: 'custom', message: problem });
        return z.NEVER;
      }
      return value;
    })
    .pipe(schema);
}

const subjectToken = schemas.subjectToken;
const id = schemas.id;
const port = () => z.number().int().min(1, 'must be 1-65535').max(65535, 'must be 1-65535');
/** A required message field: proto3 leaves an absent one undefined. */
const required = <S extends z.ZodType>(schema: S) => z.custom<unknown>((value) => value !== undefined && value !== null, 'is required').pipe(schema);
const oneOf = <T extends number>(values: readonly T[], message: string) => z.number().refine((value): value is T => values.includes(value as T), message);

const roomRef = required(z.object({ tenant: subjectToken(), room: subjectToken() }));
const transportRef = required(z.object({ room: roomRef, transportId: id() }));
const tapRef = required(z.object({ room: roomRef, tapId: id() }));
const producerRef = z.object({ room: roomRef, producerId: id() });
const consumerRef = z.object({ room: roomRef, consumerId: id() });

const direction = oneOf([TransportDirection.TRANSPORT_DIRECTION_SEND, TransportDirection.TRANSPORT_DIRECTION_RECV], 'must be SEND or RECV');
const kind = oneOf([MediaKind.MEDIA_KIND_AUDIO, MediaKind.MEDIA_KIND_VIDEO], 'must be AUDIO or VIDEO');
const source = oneOf(
  [TrackSource.TRACK_SOURCE_CAMERA, TrackSource.TRACK_SOURCE_MICROPHONE, TrackSource.TRACK_SOURCE_SCREEN, TrackSource.TRACK_SOURCE_SCREEN_AUDIO],
  'must be CAMERA, MICROPHONE, SCREEN or SCREEN_AUDIO',
);
const pipedEvent = oneOf(
  [PipedProducerEvent.PIPED_PRODUCER_EVENT_PAUSED, PipedProducerEvent.PIPED_PRODUCER_EVENT_RESUMED, PipedProducerEvent.PIPED_PRODUCER_EVENT_CLOSED],
  'must be PAUSED, RESUMED or CLOSED',
);
/** Simulcast and SVC layers: mediasoup has at most a handful. */
const layer = () => z.number().int().min(0).max(15);

export const pipeEndpointSchema = required(z.object({ ip: ipSchema, port: port(), srtpParameters: struct(srtpParametersSchema) }));
const nodeAddress = required(z.object({ nodeId: nodeIdSchema }));

export const sfuRequestSchemas = {
  openRoom: z.object({ room: roomRef }),
  closeRoom: roomRef,
  createWebRtcTransport: z.object({ room: roomRef, participantId: id(), direction }),
  connectTransport: z.object({ transport: transportRef, dtlsParameters: struct(dtlsParametersSchema) }),
  restartIce: transportRef,
  getTransportStats: transportRef,
  closeTransport: transportRef,
  produce: z.object({ transport: transportRef, participantId: id(), kind, rtpParameters: struct(rtpParametersSchema), source, paused: z.boolean() }),
  pauseProducer: producerRef,
  resumeProducer: producerRef,
  closeProducer: producerRef,
  consume: z.object({ transport: transportRef, producerId: id(), rtpCapabilities: struct(rtpCapabilitiesSchema) }),
  resumeConsumer: consumerRef,
  pauseConsumer: consumerRef,
  setPreferredLayers: z.object({ consumer: required(consumerRef), spatialLayer: layer(), temporalLayer: layer().optional() }),
  closeConsumer: consumerRef,
  closeParticipant: z.object({ room: roomRef, participantId: id() }),
  getNodeInfo: z.object({}),
  listProducers: roomRef,
  createTapStream: z.object({
    tap: tapRef,
    producerId: id(),
    ip: ipSchema,
    port: port(),
    // 0: RTCP on the RTP port.
    rtcpPort: z.union([z.literal(0), port()]),
    paused: z.boolean(),
  }),
  setTapPaused: z.object({ tap: tapRef, paused: z.boolean() }),
  closeTap: z.object({ room: roomRef, tapId: id() }),
  importProducer: z.object({ room: roomRef, producerId: id(), origin: nodeAddress }),
  openPipe: z.object({ room: roomRef, peer: nodeAddress, endpoint: pipeEndpointSchema }),
  pipeConsume: z.object({ room: roomRef, peerNodeId: nodeIdSchema, producerId: id() }),
  pipedProducerChanged: z.object({ room: roomRef, originNodeId: nodeIdSchema, producerId: id(), event: pipedEvent }),
  closePipe: z.object({ room: roomRef, peerNodeId: nodeIdSchema }),
} satisfies Record<string, z.ZodType>;

export type SfuMethod = keyof typeof sfuRequestSchemas;
export type SfuRequest<M extends SfuMethod> = z.output<(typeof sfuRequestSchemas)[M]>;
