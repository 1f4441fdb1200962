import { z } from 'zod';
import { AttachmentReady, RecordingReady, SessionEnded, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import type { Artifact } from '@gateway/proto/gateway/recorder/v1/recorder';
import { Channel, ContactRecord } from '@gateway/proto/gateway/routing/v1/routing';
import { ErrorCode, GatewayError, decodeChecked, isWellFormed, openParticipants, parseWith, schemas, type ArtifactSpace, type ArtifactStore, type Keyring } from '@gateway/common';
import type { ContactMetadata, Delivery, DeliveryArtifact } from './destinations/types.js';

/**
 * The events crm-sync takes from NATS, checked before anything is done with them: anyone who can
 * publish on a subject can put anything there, and a delivery does real work (decrypting,
 * uploading, deleting) by what the event names. Ids and tenants by character set and length,
 * counts and sizes in range, and the tenant of the event equal to the tenant of its subject.
 */

const tenant = schemas.subjectToken;
/** The customer's own references (external ids, CRM ids): free text, bounded. */
const reference = () => z.string().max(256).refine(isWellFormed, 'must be well-formed Unicode');
const millis = () => z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const word = () => z.string().regex(/^[a-z_]{1,32}$/, 'must be 1-32 lowercase letters or _');

const contactSchema = z.object({
  participantId: schemas.optionalId(),
  role: z.enum(['end_user', 'agent', '']),
  externalId: reference(),
  crmContactId: reference(),
});

const artifactSchema = z.object({
  artifactId: schemas.id(),
  kind: word(),
  contentType: z.string().regex(/^[a-z]{1,32}\/[a-z0-9.+-]{1,100}$/i, 'must be a media type'),
  participantId: schemas.optionalId(),
  sizeBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  durationMs: z.number().int().safe(),
  part: z.number().int().min(0).max(10_000),
});

/** Artifacts of one event: a recording of many streams split in parts stays far below this. */
const MAX_ARTIFACTS = 2_000;

const recordingReadySchema = z.object({
  recording: z.object({
    recordingId: schemas.id(),
    tenant: tenant(),
    room: tenant(),
    state: z.number().int().min(0).max(100),
    startedAtMs: millis(),
    endedAtMs: millis(),
    pauses: z.array(z.object({ startMs: millis(), endMs: millis() })).max(10_000),
    artifacts: z.array(artifactSchema).max(MAX_ARTIFACTS),
    failureReason: z.string().max(1_000).refine(isWellFormed, 'must be well-formed Unicode'),
  }),
  contacts: z.array(contactSchema).max(1_000),
});

const transcriptReadySchema = z.object({
  tenant: tenant(),
  room: tenant(),
  conversationId: schemas.id(),
  artifacts: z.array(artifactSchema).max(MAX_ARTIFACTS),
  messageCount: schemas.uint32(),
  startedAtMs: millis(),
  endedAtMs: millis(),
  contacts: z.array(contactSchema).max(1_000),
  smartActions: z.array(z.object({ actionId: schemas.id(), kind: word(), state: word(), verified: z.boolean(), completedAtMs: millis() })).max(1_000),
});

const attachmentReadySchema = z.object({
  tenant: tenant(),
  room: tenant(),
  conversationId: schemas.optionalId(),
  action: z.object({ actionId: schemas.id(), kind: word(), requestedAtMs: millis(), completedAtMs: millis() }),
  artifact: artifactSchema,
  contact: contactSchema.optional(),
});

export const sessionEndedSchema = z.object({
  tenant: tenant(),
  room: tenant(),
  sessionId: schemas.id(),
  startedAtMs: millis(),
  endedAtMs: millis(),
  conversationId: schemas.optionalId(),
  // Opened (and checked again) with the tenant's key just before delivery.
  sealedParticipants: z
    .string()
    .min(1)
    .max(1024 * 1024)
    .refine(isSealedValue, 'must be a sealed value'),
});

/**
 * A contact-center contact's record, from routing. Its delivery id is `contact-<contactId>`, so
 * the contact id is at most 56 characters: the delivery id stays one of ours (1-64).
 */
const contactRecordSchema = z.object({
  tenant: tenant(),
  contactId: z.string().regex(/^[A-Za-z0-9_-]{1,56}$/, 'must be 1-56 letters, digits, _ or -'),
  queueId: schemas.id(),
  channel: z.union([z.literal(Channel.CHANNEL_VOICE), z.literal(Channel.CHANNEL_VIDEO), z.literal(Channel.CHANNEL_CHAT)]),
  endUser: reference().pipe(z.string().min(1)),
  requestedAtMs: millis(),
  connectedAtMs: millis(),
  endedAtMs: millis(),
  waitSeconds: schemas.uint32(),
  handleSeconds: schemas.uint32(),
  agentId: schemas.optionalId(),
  outcome: z.enum(['completed', 'abandoned', 'expired']),
  transfers: z.array(z.object({ fromAgentId: schemas.id(), toQueueId: schemas.id(), toAgentId: schemas.optionalId(), warm: z.boolean(), atMs: millis() })).max(50),
  disposition: schemas.text(64),
  notes: schemas.text(2_000, { lines: true }),
  room: z.union([z.literal(''), tenant()]),
  overflowedFrom: z.array(schemas.id()).max(50),
  callback: z.boolean(),
  crmContactId: reference(),
});

const channels: Record<number, ContactMetadata['channel']> = { [Channel.CHANNEL_VOICE]: 'voice', [Channel.CHANNEL_VIDEO]: 'video', [Channel.CHANNEL_CHAT]: 'chat' };

export const sealedValueSchema = z.object({
  wrapped: z.object({ kekId: z.string().min(1).max(256), value: z.string().min(1).max(1024) }),
  value: z
    .string()
    .min(1)
    .max(1024 * 1024),
});

/** A sealed value's JSON shape: what openJson takes apart. */
function isSealedValue(text: string): boolean {
  try {
    return sealedValueSchema.safeParse(JSON.parse(text)).success;
  } catch {
    return false;
  }
}

/** `gateway.<tenant>.<event>`: the subjects crm-sync takes, with the tenant they name. */
const EVENT_SUBJECT = /^gateway\.([A-Za-z0-9_-]{1,64})\.(recording\.ready|transcript\.ready|attachment\.ready|session\.ended|contact\.ended)$/;

/** Marks "the artifact is gone", so that it is never confused with another NOT_FOUND. */
function artifactGone(error: unknown, artifactId: string): GatewayError {
  return new GatewayError(ErrorCode.NOT_FOUND, 'the artifact is gone', { cause: error, details: { artifactGone: true, artifactId } });
}

/** Takes the seconds one artifact's reader spent waiting on the artifact store (opening it, its chunks). */
export type ReadObserver = (seconds: number) => void;

function artifactOf(store: ArtifactStore, tenantName: string, a: Artifact, space: ArtifactSpace, observeRead?: ReadObserver): DeliveryArtifact {
  return {
    artifactId: a.artifactId,
    kind: a.kind,
    contentType: a.contentType,
    sizeBytes: a.sizeBytes,
    part: a.part,
    space,
    open: async () => {
      const opening = performance.now();
      let content;
      try {
        content = await store.open(tenantName, a.artifactId, space);
      } catch (error) {
        if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) throw artifactGone(error, a.artifactId);
        throw error;
      }
      let waitedMs = performance.now() - opening;
      const source = content.chunks[Symbol.asyncIterator]();
      return {
        ...content,
        chunks: (async function* () {
          let done = false;
          let failed = false;
          try {
            for (;;) {
              // Only the wait for the store counts: the destination's time between chunks is its own.
              const asked = performance.now();
              const step = await source.next();
              waitedMs += performance.now() - asked;
              if (step.done) break;
              yield step.value;
            }
            done = true;
          } catch (error) {
            done = true;
            failed = true;
            // Deleted under the read: gone all the same.
            if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) throw artifactGone(error, a.artifactId);
            throw error;
          } finally {
            // A reader that stops early (it has the bytes it wanted) releases the store's read, its consumer.
            if (!done) await source.return?.();
            if (!failed) observeRead?.(waitedMs / 1000);
          }
        })(),
      };
    },
  };
}

const mismatch = () => new GatewayError(ErrorCode.MALFORMED_MESSAGE, "the event's tenant is not its subject's");

/**
 * The events crm-sync takes, checked and decoded into one shape. Throws MALFORMED_MESSAGE for
 * anything that is not exactly such an event (the caller terminates it). `observeRead` is told
 * how long each artifact's read waited on the store (the delivery metrics' `read` stage).
 */
export function deliveryOf(subject: string, data: Uint8Array, artifacts: ArtifactStore, observeRead?: ReadObserver): Delivery {
  const match = EVENT_SUBJECT.exec(subject);
  if (!match) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'not an event crm-sync takes');
  const [, subjectTenant, event] = match as unknown as [string, string, string];
  if (event === 'recording.ready') {
    const { recording, contacts } = decodeChecked(RecordingReady, data, recordingReadySchema, 'recording.ready');
    if (!recording) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'recording.ready without a recording');
    if (recording.tenant !== subjectTenant) throw mismatch();
    return {
      deliveryId: recording.recordingId,
      kind: 'recording',
      tenant: recording.tenant,
      room: recording.room,
      startedAtMs: recording.startedAtMs,
      endedAtMs: recording.endedAtMs,
      contacts,
      artifacts: recording.artifacts.map((a) => artifactOf(artifacts, recording.tenant, a, 'recordings', observeRead)),
      metadata: { state: recording.state, pauses: recording.pauses.map((p) => ({ startMs: p.startMs, endMs: p.endMs })), failureReason: recording.failureReason || undefined },
    };
  }
  if (event === 'transcript.ready') {
    const ready = decodeChecked(TranscriptReady, data, transcriptReadySchema, 'transcript.ready');
    if (ready.tenant !== subjectTenant) throw mismatch();
    return {
      deliveryId: ready.conversationId,
      kind: 'transcript',
      tenant: ready.tenant,
      room: ready.room,
      startedAtMs: ready.startedAtMs,
      endedAtMs: ready.endedAtMs,
      contacts: ready.contacts,
      artifacts: ready.artifacts.map((a) => artifactOf(artifacts, ready.tenant, a, 'conversations', observeRead)),
      metadata: {
        messageCount: ready.messageCount,
        smartActions: ready.smartActions.map((a) => ({ actionId: a.actionId, kind: a.kind, state: a.state, verified: a.verified, completedAtMs: a.completedAtMs })),
      },
    };
  }
  if (event === 'attachment.ready') {
    const ready = decodeChecked(AttachmentReady, data, attachmentReadySchema, 'attachment.ready');
    if (!ready.artifact || !ready.action) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'attachment.ready without its artifact');
    if (ready.tenant !== subjectTenant) throw mismatch();
    return {
      deliveryId: ready.artifact.artifactId,
      kind: 'attachment',
      tenant: ready.tenant,
      room: ready.room,
      startedAtMs: ready.action.requestedAtMs,
      endedAtMs: ready.action.completedAtMs,
      contacts: ready.contact ? [ready.contact] : [],
      artifacts: [artifactOf(artifacts, ready.tenant, ready.artifact, 'conversations', observeRead)],
      metadata: { conversationId: ready.conversationId, actionId: ready.action.actionId, actionKind: ready.action.kind },
    };
  }
  if (event === 'contact.ended') return contactDelivery(decodeChecked(ContactRecord, data, contactRecordSchema, 'contact.ended'), subjectTenant);
  const ended = decodeChecked(SessionEnded, data, sessionEndedSchema, 'session.ended');
  if (ended.tenant !== subjectTenant) throw mismatch();
  return {
    deliveryId: ended.sessionId,
    kind: 'session',
    tenant: ended.tenant,
    room: ended.room,
    startedAtMs: ended.startedAtMs,
    endedAtMs: ended.endedAtMs,
    contacts: [],
    sealedContacts: { sessionId: ended.sessionId, sealed: ended.sealedParticipants },
    artifacts: [],
    metadata: { conversationId: ended.conversationId || undefined },
  };
}

/** A contact's record as a delivery: the end user by the customer's references, the rest as its metadata. */
function contactDelivery(record: ContactRecord, subjectTenant: string): Delivery {
  if (record.tenant !== subjectTenant) throw mismatch();
  const metadata: ContactMetadata = {
    contactId: record.contactId,
    queueId: record.queueId,
    channel: channels[record.channel]!,
    requestedAtMs: record.requestedAtMs,
    connectedAtMs: record.connectedAtMs || undefined,
    endedAtMs: record.endedAtMs,
    waitSeconds: record.waitSeconds,
    handleSeconds: record.handleSeconds,
    agentId: record.agentId || undefined,
    outcome: record.outcome as ContactMetadata['outcome'],
    transfers: record.transfers.map((t) => ({ fromAgentId: t.fromAgentId, toQueueId: t.toQueueId, toAgentId: t.toAgentId || undefined, warm: t.warm, atMs: t.atMs })),
    disposition: record.disposition || undefined,
    notes: record.notes || undefined,
    overflowedFrom: record.overflowedFrom,
    callback: record.callback,
  };
  return {
    deliveryId: `contact-${record.contactId}`,
    kind: 'contact',
    tenant: record.tenant,
    room: record.room,
    startedAtMs: record.requestedAtMs,
    endedAtMs: record.endedAtMs,
    contacts: [{ participantId: '', role: 'end_user', externalId: record.endUser, crmContactId: record.crmContactId }],
    artifacts: [],
    metadata: { ...metadata },
  };
}

/** What a session's sealed participants must be once opened. */
const openedParticipantsSchema = z
  .array(
    z.object({
      participantId: schemas.id(),
      role: z.enum(['end_user', 'agent']),
      externalId: reference(),
      crmContactId: reference(),
      phoneNumber: z.union([z.literal(''), z.string().regex(/^\+[1-9]\d{6,14}$/)]),
      deviceIds: z.array(reference()).max(5),
    }),
  )
  .max(1_000);

/** A session's participants, opened with the tenant's key and checked: the delivery's contacts. */
export async function openContacts(keyring: Keyring, delivery: Delivery): Promise<Delivery> {
  if (!delivery.sealedContacts) return delivery;
  const opened = await openParticipants(keyring, delivery.tenant, delivery.sealedContacts.sessionId, delivery.sealedContacts.sealed);
  const participants = parseWith(openedParticipantsSchema, opened, "the session's participants", ErrorCode.MALFORMED_MESSAGE);
  const contacts = participants.map((p) => ({
    participantId: p.participantId,
    role: p.role,
    externalId: p.externalId,
    crmContactId: p.crmContactId,
    ...(p.phoneNumber ? { phoneNumber: p.phoneNumber } : {}),
    ...(p.deviceIds.length ? { deviceIds: p.deviceIds } : {}),
  }));
  return { ...delivery, contacts, sealedContacts: undefined };
}
