import { z } from 'zod';
import type { Request } from '@gateway/proto/gateway/signaling/v1/signaling';
import { MAX_DATA_DESTINATIONS, dataMessagePayload, participantMetadata, participantName, dtlsParametersSchema, rtpCapabilitiesSchema, rtpParametersSchema, schemas } from '@gateway/common';

/**
 * Tokens are printable ASCII of bounded length; whether they are well-formed and valid is the
 * verifier's answer (UNAUTHENTICATED and close 4001, so the client stops and gets a new one).
 */
const jwt = z
  .string()
  .max(8192)
  .regex(/^[\x21-\x7e]*$/, 'must be printable ASCII');
const resumeToken = z
  .string()
  .max(512)
  .regex(/^[\x21-\x7e]*$/, 'must be printable ASCII');
const protocolVersion = schemas.uint32().max(1_000).default(0);
const id = schemas.id();
const optionalId = schemas.optionalId().default('');
const base64url = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9_-]*={0,2}$/, 'must be base64url');

/** A WebAuthn response as browsers serialise it (toJSON of a PublicKeyCredential). */
const webauthnResponse = <R extends z.ZodRawShape>(response: R) =>
  z.object({
    id: base64url(1024).min(1),
    rawId: base64url(1024).min(1),
    type: z.literal('public-key'),
    response: z.object(response),
    authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
    // Extension outputs are small objects of booleans and short values; their shape is the
    // verifier's business, their size is ours (the frame's JSON limits bound it further).
    clientExtensionResults: z.record(z.string().max(64), z.unknown()).default({}),
  });

const registrationResponse = webauthnResponse({
  clientDataJSON: base64url(16_384).min(1),
  attestationObject: base64url(32_768).min(1),
  authenticatorData: base64url(16_384).optional(),
  transports: z
    .array(z.enum(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']))
    .max(8)
    .optional(),
  publicKeyAlgorithm: z.number().int().min(-65_536).max(65_536).optional(),
  publicKey: base64url(4_096).optional(),
});

const authenticationResponse = webauthnResponse({
  clientDataJSON: base64url(16_384).min(1),
  authenticatorData: base64url(16_384).min(1),
  signature: base64url(4_096).min(1),
  userHandle: base64url(1_024).optional(),
});

const empty = z.object({});
const transportRequest = z.object({ transportId: id });
const producerRequest = z.object({ producerId: id });
const consumerRequest = z.object({ consumerId: id });

/**
 * The schema of every request of `gateway.signaling.v1`, in the proto3 JSON mapping clients
 * send (camelCase, defaults may be left out). Types are checked, never coerced: a token that is
 * an array, a `uint32` that is NaN or a string whose `toString` is not a function is refused
 * before any code reads it. Unknown fields are dropped, as protobuf drops them.
 */
export const requestSchemas = {
  join: z.object({ token: jwt, protocolVersion }),
  resume: z.object({ resumeToken, protocolVersion }),
  createTransport: z.object({ direction: z.enum(['send', 'recv']) }),
  connectTransport: z.object({ transportId: id, dtlsParameters: dtlsParametersSchema }),
  restartIce: transportRequest,
  produce: z.object({
    transportId: id,
    kind: z.enum(['audio', 'video']),
    rtpParameters: rtpParametersSchema,
    source: z.enum(['camera', 'microphone', 'screen', 'screen_audio']),
    paused: z.boolean().default(false),
  }),
  pauseProducer: producerRequest,
  resumeProducer: producerRequest,
  closeProducer: producerRequest,
  consume: z.object({ producerId: id, rtpCapabilities: rtpCapabilitiesSchema, transportId: optionalId }),
  resumeConsumer: consumerRequest,
  pauseConsumer: consumerRequest,
  setPreferredLayers: z.object({ consumerId: id, spatialLayer: z.number().int().min(0).max(3).default(0), temporalLayer: z.number().int().min(0).max(3).optional() }),
  getStats: transportRequest,
  ping: z.object({ clientTimeMs: schemas.int64().default(0) }),
  leave: empty,
  startRecording: empty,
  pauseRecording: empty,
  resumeRecording: empty,
  stopRecording: empty,
  // Chat text keeps line breaks and tabs; other control characters are refused. Its length in
  // characters is checked against the configured limit by the chat handler (requests/chat.ts,
  // MESSAGE_TOO_LARGE).
  sendMessage: z.object({ text: schemas.text(64 * 1024, { lines: true }), clientMessageId: schemas.optionalId().default('') }),
  redactMessage: z.object({ messageId: id }),
  requestSmartAction: z.object({ kind: z.enum(['photo', 'screenshot', 'verification']), participantId: optionalId }),
  answerSmartAction: z.object({ actionId: id, decline: z.boolean().default(false), webauthnResponse: authenticationResponse.optional() }),
  deviceKeyOptions: empty,
  registerDeviceKey: z.object({ response: registrationResponse }),
  artifactUrl: z.object({ artifactId: id }),
  updateParticipant: z.object({ name: participantName.optional(), metadata: participantMetadata.optional() }),
  sendData: z.object({ topic: optionalId, payload: dataMessagePayload, destinationParticipantIds: z.array(id).max(MAX_DATA_DESTINATIONS).default([]) }),
} satisfies Record<NonNullable<Request['method']>['$case'], z.ZodType>;
