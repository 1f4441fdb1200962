import type { Writable } from 'node:stream';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import {
  AttachmentReady,
  DataSubjectAudit,
  DataSubjectRequest,
  DataSubjectResult,
  RecordingReady,
  SessionEnded,
  TranscriptReady,
  type ContactReference,
} from '@gateway/proto/gateway/events/v1/events';
import { ContactRecord } from '@gateway/proto/gateway/routing/v1/routing';
import {
  type DeviceKeys,
  ErrorCode,
  GatewayError,
  crmContactId as crmContactIdSchema,
  dataSubjectResultSchema,
  decodeChecked,
  e164,
  isWellFormed,
  newId,
  openParticipants,
  readSubject,
  webhookEventSchema,
  sealParticipants,
  streams,
  subjects,
  type ArtifactStore,
  type DeviceKey,
  type Keyring,
  type Logger,
  type NatsConnection,
} from '@gateway/common';
import type { Confirmations } from './Confirmations.js';
import type { KvContactMaps } from './connectors/ContactMap.js';
import { base64Of } from './destinations/streaming.js';
import type { ArtifactContent, Delivery } from './destinations/types.js';
import { deliveryOf, openContacts } from './events.js';

/** Whom a request is about: the customer's external id, or the id of the contact in their CRM. */
export type DataSubject = { externalId: string; crmContactId?: undefined } | { crmContactId: string; externalId?: undefined };

interface PendingEvent {
  stream: string;
  seq: number;
  subject: string;
  data: Uint8Array;
  delivery: Delivery;
}

/** What live rooms held of the subject (erase) or had corrected (rectify): counts only. */
export type LiveCounts = Omit<DataSubjectResult, 'requestId' | 'errorCode'>;

/** Contact details a rectification corrects; each only when given. */
export interface Corrections {
  phoneNumber?: string;
  crmContactId?: string;
  externalId?: string;
}

/**
 * A rectification's body: the details to correct, at least one. A phone number in E.164 (or ""
 * to remove it), a CRM contact id as the session record holds it, an external id as join tokens
 * carry it.
 */
export const correctionsSchema = z
  .object({
    phoneNumber: z.union([z.literal(''), e164]).optional(),
    crmContactId: crmContactIdSchema.refine(isWellFormed, 'must be well-formed Unicode').optional(),
    externalId: z.string().min(1).max(256).refine(isWellFormed, 'must be well-formed Unicode').optional(),
  })
  .strict()
  .refine((c) => c.phoneNumber !== undefined || c.crmContactId !== undefined || c.externalId !== undefined, 'give at least one of phoneNumber, crmContactId and externalId');

/**
 * How long an erasure or a rectification waits for the signaling replica serving it: it walks
 * every live room of the tenant and may discard a recording (which waits for its capture to end).
 */
const LIVE_REQUEST_TIMEOUT_MS = 30_000;

/** A device key as read back from KV (written by signaling): checked before it is exported. */
const deviceKeySchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,1024}$/),
  registeredAtMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

/** The request's subject, from the query: exactly one of the two, each 1-256 characters of well-formed text. */
export const dataSubjectQuerySchema = z.union([
  z.object({ externalId: z.string().min(1).max(256).refine(isWellFormed), crmContactId: z.undefined().optional() }).strict(),
  z.object({ crmContactId: z.string().min(1).max(256).refine(isWellFormed), externalId: z.undefined().optional() }).strict(),
]);

/** An export being written: what it holds is known; its artifacts are streamed as it is written. */
export interface DataSubjectExport {
  writeTo(out: Writable): Promise<void>;
}

/** The subjects of a tenant's events crm-sync holds until they are delivered. */
const pendingSubjects = (tenant: string) =>
  [
    [streams.recordings.name, subjects.recordingReady(tenant)],
    [streams.transcripts.name, subjects.transcriptReady(tenant)],
    [streams.transcripts.name, subjects.attachmentReady(tenant)],
    [streams.sessions.name, subjects.sessionEnded(tenant)],
    [streams.sessions.name, subjects.contactEnded(tenant)],
  ] as const;

/**
 * Data-subject requests (access, portability, erasure, rectification) for one tenant:
 * everything the platform holds about an end user that is waiting for delivery (recordings,
 * transcripts, attachments and session records they took part in, with their bytes and the
 * app's contact details, and the records of their contact-center contacts), the CRM contact ids
 * cached for them, and their registered device keys.
 * Export returns it as one JSON bundle; erase deletes all of it (artifacts crypto-shredded) and
 * its pending events; rectify corrects their contact details. Each leaves an audit record with
 * counts only, never the person.
 */
export class DataSubjects {
  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly artifacts: ArtifactStore,
    private readonly contactMaps: KvContactMaps,
    private readonly deviceKeys: DeviceKeys,
    private readonly keyring: Keyring,
    private readonly confirmations: Confirmations,
    private readonly log?: Logger,
  ) {}

  /**
   * Gathers what is held about the subject; the export is then written as JSON whose artifacts
   * are base64 streamed block by block from the store, so a recording of gigabytes passes through
   * in constant memory. Audited once written (or cut short), with what it held.
   */
  async export(tenant: string, subject: DataSubject): Promise<DataSubjectExport> {
    const events = await this.pendingOf(tenant, subject);
    const mappings = await this.contactMaps.find(tenant, subject);
    const keys = subject.externalId ? this.checkedDeviceKeys(await this.deviceKeys.list(tenant, subject.externalId).catch(() => undefined)) : [];
    return {
      writeTo: async (out) => {
        let artifactCount = 0;
        let deliveryCount = 0;
        try {
          const head = JSON.stringify({ format: 'gateway.data-subject-export.v1', tenant, subject, generatedAt: new Date().toISOString() });
          await write(out, `${head.slice(0, -1)},"pendingDeliveries":[`);
          for (const [index, { delivery }] of events.entries()) {
            const described = JSON.stringify({
              kind: delivery.kind,
              deliveryId: delivery.deliveryId,
              room: delivery.room,
              startedAt: iso(delivery.startedAtMs),
              endedAt: iso(delivery.endedAtMs),
              // Only the subject's own reference: the others in the room are not theirs to receive.
              contact: delivery.contacts.find((c) => matches(subject, c)),
              metadata: delivery.metadata,
            });
            await write(out, `${index > 0 ? ',' : ''}${described.slice(0, -1)},"artifacts":[`);
            let written = 0;
            for (const artifact of delivery.artifacts) {
              const content: ArtifactContent | undefined = await artifact.open().catch((error: unknown) => {
                if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) return undefined;
                throw error;
              });
              if (!content) continue;
              const entry = JSON.stringify({ artifactId: artifact.artifactId, kind: artifact.kind, contentType: artifact.contentType, sizeBytes: content.size, part: artifact.part });
              await write(out, `${written > 0 ? ',' : ''}${entry.slice(0, -1)},"contentBase64":"`);
              for await (const block of base64Of(content.chunks)) await write(out, block);
              await write(out, '"}');
              written++;
              artifactCount++;
            }
            await write(out, ']}');
            deliveryCount++;
          }
          const tail = JSON.stringify({
            crmContacts: mappings.map((m) => ({ connector: m.connector, crmContactId: m.crmContactId })),
            deviceKeys: keys.map((k) => ({ credentialId: k.id, registeredAt: iso(k.registeredAtMs) })),
          });
          await write(out, `],${tail.slice(1)}`);
        } finally {
          await this.audit(tenant, 'export', { deliveries: deliveryCount, artifacts: artifactCount, contactMappings: mappings.length, deviceKeys: keys.length });
        }
      },
    };
  }

  /** Device keys that are what they should be; others are left out, with a log line. */
  private checkedDeviceKeys(keys: unknown): DeviceKey[] {
    if (!Array.isArray(keys)) {
      this.log?.warn('a device key record is unreadable; left out of the export');
      return [];
    }
    return keys.filter((key): key is DeviceKey => {
      const valid = deviceKeySchema.safeParse(key).success;
      if (!valid) this.log?.warn('a device key is unreadable; left out of the export');
      return valid;
    });
  }

  /**
   * Erases everything held about the subject. Live rooms first (by external id): their sessions
   * are marked, so what the subject produces from now on is not kept, and what the rooms held
   * goes; then the pending events, which then include anything a room ended meanwhile
   * announced. When no signaling replica answers, the rest is still erased and audited, and the
   * request fails UNAVAILABLE: repeating it is safe.
   */
  async erase(tenant: string, subject: DataSubject): Promise<{ requestId: string; deliveries: number; artifacts: number; contactMappings: number; deviceKeys: number; live?: LiveCounts }> {
    const requestId = newId('DSR');
    const live = subject.externalId ? await this.askLiveRooms(tenant, requestId, subject.externalId, { $case: 'erase', value: {} }) : undefined;
    const events = await this.pendingOf(tenant, subject);
    let artifacts = 0;
    for (const { stream, seq, delivery } of events) {
      for (const artifact of delivery.artifacts) {
        await this.artifacts.delete(tenant, artifact.artifactId);
        artifacts++;
      }
      await this.jsm.streams.deleteMessage(stream, seq, true).catch(() => undefined);
    }
    if (subject.externalId) await this.erasePendingWebhooks(tenant, subject.externalId);
    const mappings = await this.contactMaps.find(tenant, subject);
    await this.contactMaps.removeKeys(mappings.map((m) => m.key));
    let deviceKeys = 0;
    if (subject.externalId) {
      deviceKeys = this.checkedDeviceKeys(await this.deviceKeys.list(tenant, subject.externalId).catch(() => undefined)).length;
      await this.deviceKeys.removeAll(tenant, subject.externalId);
    }
    const counts = { deliveries: events.length, artifacts, contactMappings: mappings.length, deviceKeys };
    const liveCounts = live instanceof GatewayError ? undefined : live;
    await this.audit(tenant, 'erase', counts, liveCounts, requestId);
    if (live instanceof GatewayError) throw live;
    return { requestId, ...counts, ...(liveCounts ? { live: liveCounts } : {}) };
  }

  /**
   * Corrects the subject's contact details held until delivery: in pending events (a corrected
   * copy is published, keeping the delivery id, so a destination that took the earlier one
   * updates or keeps one record; then the earlier one is removed and any confirmations of it
   * cleared, so every destination is sent the corrected one), and in live rooms' session
   * records. Cached CRM contact ids of the subject go when the CRM contact id or the external id
   * changes (they are looked up again). Audited with counts only.
   */
  async rectify(tenant: string, subject: DataSubject, corrections: Corrections): Promise<{ requestId: string; deliveries: number; contactMappings: number; live?: LiveCounts }> {
    const requestId = newId('DSR');
    const live = subject.externalId ? await this.askLiveRooms(tenant, requestId, subject.externalId, { $case: 'rectify', value: corrections }) : undefined;
    const events = await this.pendingOf(tenant, subject);
    const js = jetstream(this.nc);
    // In stream order, so the corrected events keep their order among themselves.
    for (const event of events.sort((a, b) => (a.stream === b.stream ? a.seq - b.seq : a.stream < b.stream ? -1 : 1))) {
      const corrected = await this.corrected(tenant, event, subject, corrections);
      await js.publish(event.subject, corrected, { msgID: `${requestId}.${event.stream}.${event.seq}`, timeout: 10_000 });
      await this.jsm.streams.deleteMessage(event.stream, event.seq, true).catch(() => undefined);
      await this.confirmations.clear(tenant, event.delivery.deliveryId);
    }
    let mappings: Array<{ key: string }> = [];
    if (corrections.crmContactId !== undefined || corrections.externalId !== undefined) {
      mappings = await this.contactMaps.find(tenant, subject);
      await this.contactMaps.removeKeys(mappings.map((m) => m.key));
    }
    const counts = { deliveries: events.length, artifacts: 0, contactMappings: mappings.length, deviceKeys: 0 };
    const liveCounts = live instanceof GatewayError ? undefined : live;
    await this.audit(tenant, 'rectify', counts, liveCounts, requestId);
    if (live instanceof GatewayError) throw live;
    return { requestId, deliveries: counts.deliveries, contactMappings: counts.contactMappings, ...(liveCounts ? { live: liveCounts } : {}) };
  }

  /** A pending event's bytes with the subject's details corrected. */
  private async corrected(tenant: string, event: PendingEvent, subject: DataSubject, corrections: Corrections): Promise<Uint8Array> {
    const fix = <T extends { externalId: string; crmContactId: string }>(contact: T): T =>
      matches(subject, contact)
        ? {
            ...contact,
            ...(corrections.crmContactId !== undefined ? { crmContactId: corrections.crmContactId } : {}),
            ...(corrections.externalId !== undefined ? { externalId: corrections.externalId } : {}),
          }
        : contact;
    const fixAll = (contacts: ContactReference[]) => contacts.map(fix);
    switch (event.delivery.kind) {
      case 'session': {
        const ended = SessionEnded.decode(event.data);
        const participants = await openParticipants(this.keyring, tenant, ended.sessionId, ended.sealedParticipants);
        const fixed = participants.map((p) => (matches(subject, p) ? { ...fix(p), ...(corrections.phoneNumber !== undefined ? { phoneNumber: corrections.phoneNumber } : {}) } : p));
        return SessionEnded.encode({ ...ended, sealedParticipants: await sealParticipants(this.keyring, tenant, ended.sessionId, fixed) }).finish();
      }
      case 'transcript': {
        const ready = TranscriptReady.decode(event.data);
        return TranscriptReady.encode({ ...ready, contacts: fixAll(ready.contacts) }).finish();
      }
      case 'attachment': {
        const ready = AttachmentReady.decode(event.data);
        return AttachmentReady.encode({ ...ready, contact: ready.contact ? fix(ready.contact) : undefined }).finish();
      }
      case 'recording': {
        const ready = RecordingReady.decode(event.data);
        return RecordingReady.encode({ ...ready, contacts: fixAll(ready.contacts) }).finish();
      }
      case 'contact': {
        // The record names its end user by the customer's references only.
        const record = ContactRecord.decode(event.data);
        const fixed = fix({ externalId: record.endUser, crmContactId: record.crmContactId });
        return ContactRecord.encode({ ...record, endUser: fixed.externalId, crmContactId: fixed.crmContactId }).finish();
      }
    }
  }

  /**
   * Asks the signaling replicas (one answers) to erase or correct what live rooms hold of the
   * end user; waits at most the bound. A failure is returned, not thrown, so the caller finishes
   * its own part first.
   */
  private async askLiveRooms(tenant: string, requestId: string, externalId: string, action: NonNullable<DataSubjectRequest['action']>): Promise<LiveCounts | GatewayError> {
    const unreachable = (cause?: unknown) =>
      new GatewayError(ErrorCode.UNAVAILABLE, `live rooms could not be reached (request ${requestId}); what else was held is done: repeat the request`, { cause });
    let reply;
    try {
      reply = await this.nc.request(subjects.dataSubjectRequest(tenant), DataSubjectRequest.encode({ tenant, requestId, externalId, action }).finish(), { timeout: LIVE_REQUEST_TIMEOUT_MS });
    } catch (error) {
      return unreachable(error);
    }
    let result: DataSubjectResult;
    try {
      result = decodeChecked(DataSubjectResult, reply.data, dataSubjectResultSchema, 'data-subject result');
    } catch (error) {
      return unreachable(error);
    }
    if (result.requestId !== requestId || result.errorCode !== '') return unreachable(new Error(`signaling answered ${result.errorCode || 'another request'}`));
    const { requestId: _answered, errorCode: _code, ...counts } = result;
    return counts;
  }

  /**
   * Webhook events not yet posted that name the subject (a join carries the identity, their
   * external id, and their name): erased with the rest, so not even the tenant's own backend is
   * told of them afterwards.
   */
  private async erasePendingWebhooks(tenant: string, externalId: string): Promise<void> {
    for (const filter of [subjects.webhookEvent(tenant), subjects.webhookDelivery(tenant, '*')]) {
      for await (const message of readSubject(jetstream(this.nc), this.jsm, streams.webhooks.name, filter)) {
        let event: ReturnType<typeof webhookEventSchema.parse> | undefined;
        try {
          event = webhookEventSchema.parse(JSON.parse(new TextDecoder().decode(message.data)));
        } catch {
          continue; // The sender erases what it cannot read.
        }
        if (event.type === 'participant.joined' && event.data.participant.identity === externalId) {
          await this.jsm.streams.deleteMessage(streams.webhooks.name, message.seq, true).catch(() => undefined);
        }
      }
    }
  }

  /** The tenant's undelivered events that name the subject. */
  private async pendingOf(tenant: string, subject: DataSubject): Promise<PendingEvent[]> {
    const found: PendingEvent[] = [];
    for (const [stream, filter] of pendingSubjects(tenant)) {
      for await (const message of readSubject(jetstream(this.nc), this.jsm, stream, filter)) {
        let delivery: Delivery;
        try {
          // A session's participants are sealed: open them to see whom it names.
          delivery = await openContacts(this.keyring, deliveryOf(message.subject, message.data, this.artifacts));
        } catch (error) {
          // A malformed event is terminated by the deliveries; it names no one we could tell.
          if (GatewayError.from(error).code !== ErrorCode.MALFORMED_MESSAGE) throw error;
          this.log?.warn({ stream, seq: message.seq }, 'a malformed event is left out of a data-subject request');
          continue;
        }
        if (delivery.tenant === tenant && delivery.contacts.some((c) => matches(subject, c))) found.push({ stream, seq: message.seq, subject: message.subject, data: message.data, delivery });
      }
    }
    return found;
  }

  private async audit(
    tenant: string,
    action: 'export' | 'erase' | 'rectify',
    counts: { deliveries: number; artifacts: number; contactMappings: number; deviceKeys: number },
    live?: LiveCounts,
    requestId = newId('DSR'),
  ): Promise<string> {
    const record = DataSubjectAudit.encode({ tenant, requestId, action, atMs: Date.now(), ...counts, live: live ? { requestId, errorCode: '', ...live } : undefined }).finish();
    await jetstream(this.nc).publish(subjects.audit(tenant, 'data_subject'), record, { msgID: requestId });
    return requestId;
  }
}

function matches(subject: DataSubject, contact: { externalId: string; crmContactId: string }): boolean {
  return subject.externalId !== undefined ? contact.externalId === subject.externalId : contact.crmContactId === subject.crmContactId;
}

function iso(ms: number): string | undefined {
  return ms > 0 ? new Date(ms).toISOString() : undefined;
}

/** Reads the subject from a request's query: exactly one of externalId and crmContactId. */
export function dataSubjectOf(query: URLSearchParams): DataSubject {
  const keys = [...query.keys()];
  const fields: Record<string, string> = {};
  // Each at most once, and nothing else.
  if (new Set(keys).size === keys.length) for (const [key, value] of query) fields[key] = value;
  const parsed = keys.length === new Set(keys).size ? dataSubjectQuerySchema.safeParse(fields) : undefined;
  if (!parsed?.success) throw new GatewayError(ErrorCode.BAD_REQUEST, 'give exactly one of externalId and crmContactId (1-256 characters)');
  return parsed.data.externalId !== undefined ? { externalId: parsed.data.externalId } : { crmContactId: parsed.data.crmContactId! };
}

const clientGone = () => new GatewayError(ErrorCode.UNAVAILABLE, 'the client went away during the export');

/** Writes and waits while the client's buffer is full (its pace, not ours, sets what is held). */
async function write(out: Writable, chunk: string): Promise<void> {
  if (out.destroyed) throw clientGone();
  if (out.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(clientGone());
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', onClose);
  });
}
