import { z } from 'zod';
import { CONNECTION_QUALITIES } from '../media/quality.js';
import { schemas } from './validation.js';

/**
 * Checks of what signaling replicas, SFU nodes and the recorder tell each other over NATS (room
 * events, takeovers) and keep in KV (participant records, room sessions, Smart Actions, chat
 * keys). Protobuf decoding gives the types; these give the bounds: ids and names in their
 * alphabet and length, counts within the limits a real room reaches. A record or event that
 * fails is dropped with a log line by its reader, never trusted.
 */

const id = schemas.id();
const optionalId = schemas.optionalId();
/** Node and replica ids: host names may carry dots. */
const nodeId = z.string().regex(/^[A-Za-z0-9_.-]{1,253}$/, 'must be a node id');
const optionalNodeId = z.union([z.literal(''), nodeId]);
const subjectToken = schemas.subjectToken();
const millis = z.number().int().min(0).max(8.64e15);
const role = z.enum(['agent', 'end_user', 'supervisor', 'observer', '']);
/** The customer's external id of a participant (the token's subject). */
const identity = schemas.text(256);

export const trackInfoSchema = z.object({
  producerId: id,
  source: z.enum(['camera', 'microphone', 'screen', 'screen_audio']),
  kind: z.enum(['audio', 'video']),
  paused: z.boolean(),
});

/** A participant's name on screen: one line of at most 128 characters (may be empty). */
export const participantName = schemas.text(128);
/** An app's own data about a participant, at most 4 KiB of UTF-8 (often JSON; never read by the server). */
export const MAX_PARTICIPANT_METADATA_BYTES = 4 * 1024;
export const participantMetadata = schemas
  .text(MAX_PARTICIPANT_METADATA_BYTES, { lines: true })
  .refine((value) => Buffer.byteLength(value, 'utf8') <= MAX_PARTICIPANT_METADATA_BYTES, `must be at most ${MAX_PARTICIPANT_METADATA_BYTES} bytes of UTF-8`);

export const participantInfoSchema = z.object({
  participantId: id,
  identity,
  role,
  joinedAtMs: millis,
  tracks: z.array(trackInfoSchema).max(16),
  name: participantName,
  metadata: participantMetadata,
  /** '' everyone; a hidden supervisor's audience (services/signaling/src/participant/visibility.ts). */
  visibleTo: z.enum(['', 'agents', 'supervisors']),
});

export const chatMessageSchema = z.object({
  messageId: id,
  participantId: id,
  identity,
  role,
  text: schemas.text(64 * 1024, { lines: true }),
  sentAtMs: millis,
  clientMessageId: optionalId,
  redacted: z.boolean(),
  redactedKinds: z.array(z.string().max(16)).max(8),
  redactedBy: optionalId,
});

export const smartActionSchema = z.object({
  actionId: id,
  kind: z.enum(['photo', 'screenshot', 'verification']),
  state: z.enum(['requested', 'completed', 'declined', 'failed']),
  requestedBy: optionalId,
  participantId: id,
  requestedAtMs: millis,
  completedAtMs: millis,
  artifactId: optionalId,
  contentType: z.string().max(64),
  sizeBytes: z
    .number()
    .int()
    .min(0)
    .max(1 << 30),
  verified: z.boolean(),
  reason: schemas.text(512),
  externalId: identity,
});

const producerRef = z.object({ participantId: id, producerId: id });

/** The largest payload of a data message, in UTF-8 bytes. */
export const MAX_DATA_MESSAGE_BYTES = 16 * 1024;

/** A data message to a room: text (line breaks allowed), at most MAX_DATA_MESSAGE_BYTES of UTF-8. */
export const dataMessagePayload = schemas
  .text(MAX_DATA_MESSAGE_BYTES, { lines: true, min: 1 })
  .refine((value) => Buffer.byteLength(value, 'utf8') <= MAX_DATA_MESSAGE_BYTES, `must be at most ${MAX_DATA_MESSAGE_BYTES} bytes of UTF-8`);

/** At most this many participants named as a data message's destinations. */
export const MAX_DATA_DESTINATIONS = 100;

export const dataMessageSchema = z.object({
  topic: optionalId,
  payload: dataMessagePayload,
  sentAtMs: millis,
  participantId: optionalId,
  destinationParticipantIds: z.array(id).max(MAX_DATA_DESTINATIONS),
});

const quality = z.enum(CONNECTION_QUALITIES as [string, ...string[]]);

/** A participant's connection quality (gateway.signaling.v1.ConnectionQuality): levels by name only. */
export const connectionQualitySchema = z.object({ participantId: id, quality, upstream: quality, downstream: quality });

/** Dynacast (gateway.signaling.v1.VideoLayersWanted): mediasoup's simulcast has at most a handful of layers. */
export const videoLayersWantedSchema = z.object({ participantId: id, producerId: id, maxSpatialLayer: z.number().int().min(0).max(3) });

/** Every case of RoomEvent, as the union ts-proto decodes it to. */
const roomEventCase = z.discriminatedUnion('$case', [
  z.object({ $case: z.literal('participantJoined'), value: participantInfoSchema }),
  z.object({ $case: z.literal('participantLeft'), value: z.object({ participantId: id, reason: z.string().max(32) }) }),
  z.object({ $case: z.literal('producerAdded'), value: z.object({ participantId: id, track: trackInfoSchema }) }),
  z.object({ $case: z.literal('producerPaused'), value: producerRef }),
  z.object({ $case: z.literal('producerResumed'), value: producerRef }),
  z.object({ $case: z.literal('producerClosed'), value: producerRef }),
  z.object({ $case: z.literal('activeSpeaker'), value: z.object({ participantId: optionalId }) }),
  z.object({ $case: z.literal('roomClosed'), value: z.object({ reason: z.string().max(32), nodeId: optionalNodeId }) }),
  z.object({ $case: z.literal('recording'), value: z.object({ recordingId: id, state: z.enum(['started', 'paused', 'resumed', 'stopped']), by: optionalId }) }),
  z.object({ $case: z.literal('chatMessage'), value: chatMessageSchema }),
  z.object({ $case: z.literal('messageRedacted'), value: z.object({ messageId: id, by: optionalId }) }),
  z.object({ $case: z.literal('smartAction'), value: smartActionSchema }),
  z.object({ $case: z.literal('dataMessage'), value: dataMessageSchema }),
  z.object({ $case: z.literal('participantUpdated'), value: participantInfoSchema }),
  z.object({ $case: z.literal('connectionQuality'), value: connectionQualitySchema }),
  z.object({ $case: z.literal('videoLayersWanted'), value: videoLayersWantedSchema }),
]);

export const roomEventSchema = z.object({
  tenant: subjectToken,
  room: subjectToken,
  atMs: millis,
  origin: optionalNodeId,
  event: roomEventCase,
});

export const sessionTakeoverSchema = z.object({ participantId: id, newOwner: nodeId });

export const sessionControlSchema = z.object({
  participantId: id,
  room: subjectToken,
  action: z.discriminatedUnion('$case', [
    z.object({ $case: z.literal('remove'), value: z.object({}) }),
    z.object({ $case: z.literal('mute'), value: z.object({ producerId: id }) }),
    z.object({ $case: z.literal('update'), value: z.object({ name: participantName.optional(), metadata: participantMetadata.optional() }) }),
  ]),
});

export const sessionControlReplySchema = z.object({
  code: z.string().max(32),
  message: z.string().max(512),
  track: trackInfoSchema.optional(),
  participant: participantInfoSchema.optional(),
});

export const participantRecordSchema = z.object({
  info: participantInfoSchema,
  owner: nodeId,
  connected: z.boolean(),
  disconnectedAtMs: millis,
  refreshedAtMs: millis,
  nodeId,
  transportIds: z.array(id).max(16),
  grants: z.object({
    canPublish: z.boolean(),
    canSubscribe: z.boolean(),
    sources: z.array(z.enum(['camera', 'microphone', 'screen'])).max(3),
    canRecord: z.boolean(),
  }),
  tokenExpiresAt: z.number().int().min(0).max(8.64e12),
  resumeTokenHash: z.instanceof(Uint8Array).refine((hash) => hash.length === 32, 'must be a SHA-256'),
  consumers: z.record(id, id).refine((consumers) => Object.keys(consumers).length <= 1_000, 'at most 1,000 consumers'),
  recvTransportId: optionalId,
  tokenId: z.union([z.literal(''), z.string().regex(/^[A-Za-z0-9_-]{1,64}$/)]),
  removedAtMs: millis,
});

export const roomSessionRecordSchema = z.object({
  sessionId: id,
  startedAtMs: millis,
  sealedParticipants: z.string().max(4 * 1024 * 1024),
});

export const chatKeyRecordSchema = z.object({
  conversationId: id,
  kekId: z.string().min(1).max(128),
  // A KMS CiphertextBlob is larger than a static keyring's 60 bytes, and its size is not promised.
  wrappedKey: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z0-9+/=]+$/, 'must be base64'),
  startedAtMs: millis,
});

export const chatSealedSchema = z.object({
  conversationId: id,
  iv: z.instanceof(Uint8Array).refine((iv) => iv.length === 12, 'must be 12 bytes'),
  ciphertext: z.instanceof(Uint8Array).refine((c) => c.length <= 256 * 1024, 'at most 256 KiB'),
  tag: z.instanceof(Uint8Array).refine((tag) => tag.length === 16, 'must be 16 bytes'),
});

/** A phone number in E.164. */
export const e164 = z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be a phone number in E.164 (+14155550132)');
/** A CRM's contact id: bounded as the session record holds it. */
export const crmContactId = z
  .string()
  .max(64)
  .refine((value) => !/[\u0000-\u001f\u007f]/.test(value), 'must hold no control characters');

/** A data-subject request from crm-sync (DataSubjectRequest), as signaling takes it. */
export const dataSubjectRequestSchema = z.object({
  tenant: subjectToken,
  requestId: id,
  externalId: schemas.text(256, { min: 1 }),
  action: z.discriminatedUnion('$case', [
    z.object({ $case: z.literal('erase'), value: z.object({}) }),
    z.object({
      $case: z.literal('rectify'),
      value: z
        .object({
          phoneNumber: z.union([z.literal(''), e164]).optional(),
          crmContactId: crmContactId.optional(),
          externalId: schemas.text(256, { min: 1 }).optional(),
        })
        .refine((fields) => Object.values(fields).some((v) => v !== undefined), 'must correct at least one detail'),
    }),
  ]),
});

/** Signaling's answer (DataSubjectResult), as crm-sync takes it: counts only. */
export const dataSubjectResultSchema = z.object({
  requestId: id,
  rooms: schemas.uint32(),
  participants: schemas.uint32(),
  chatMessages: schemas.uint32(),
  smartActions: schemas.uint32(),
  attachments: schemas.uint32(),
  recordings: schemas.uint32(),
  recordingSegments: schemas.uint32(),
  errorCode: z.string().regex(/^[A-Z_]{0,64}$/),
});
