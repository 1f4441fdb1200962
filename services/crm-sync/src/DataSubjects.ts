import type { Writable } from 'node:stream';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { DataSubjectAudit } from '@gateway/proto/gateway/events/v1/events';
import { DeviceKeys, ErrorCode, GatewayError, isWellFormed, newId, readSubject, streams, subjects, type ArtifactStore, type DeviceKey, type Keyring, type Logger, type NatsConnection } from '@gateway/common';
import type { KvContactMaps } from './connectors/ContactMap.js';
import { base64Of } from './destinations/streaming.js';
import type { ArtifactContent, Delivery } from './destinations/types.js';
import { deliveryOf, openContacts } from './events.js';

/** Whom a request is about: the customer's external id, or the id of the contact in their CRM. */
export type DataSubject = { externalId: string; crmContactId?: undefined } | { crmContactId: string; externalId?: undefined };

interface PendingEvent {
  stream: string;
  seq: number;
  delivery: Delivery;
}

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
const pendingSubjects = (tenant: string) => [
  [streams.recordings.name, subjects.recordingReady(tenant)],
  [streams.transcripts.name, subjects.transcriptReady(tenant)],
  [streams.transcripts.name, subjects.attachmentReady(tenant)],
  [streams.sessions.name, subjects.sessionEnded(tenant)],
] as const;

/**
 * Data-subject requests (access, portability, erasure) for one tenant: everything the platform
 * holds about an end user that is waiting for delivery (recordings, transcripts, attachments and
 * session records they took part in, with their bytes and the app's contact details), the CRM contact ids cached for them, and their
 * registered device keys. Export returns it as one JSON bundle; erase deletes all of it
 * (artifacts crypto-shredded) and its pending events. Either leaves an audit record with counts
 * only, never the person.
 */
export class DataSubjects {
  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly artifacts: ArtifactStore,
    private readonly contactMaps: KvContactMaps,
    private readonly deviceKeys: DeviceKeys,
    private readonly keyring: Keyring,
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

  async erase(tenant: string, subject: DataSubject): Promise<{ requestId: string; deliveries: number; artifacts: number; contactMappings: number; deviceKeys: number }> {
    const events = await this.pendingOf(tenant, subject);
    let artifacts = 0;
    for (const { stream, seq, delivery } of events) {
      for (const artifact of delivery.artifacts) {
        await this.artifacts.delete(tenant, artifact.artifactId);
        artifacts++;
      }
      await this.jsm.streams.deleteMessage(stream, seq, true).catch(() => undefined);
    }
    const mappings = await this.contactMaps.find(tenant, subject);
    await this.contactMaps.removeKeys(mappings.map((m) => m.key));
    let deviceKeys = 0;
    if (subject.externalId) {
      deviceKeys = this.checkedDeviceKeys(await this.deviceKeys.list(tenant, subject.externalId).catch(() => undefined)).length;
      await this.deviceKeys.removeAll(tenant, subject.externalId);
    }
    const counts = { deliveries: events.length, artifacts, contactMappings: mappings.length, deviceKeys };
    const requestId = await this.audit(tenant, 'erase', counts);
    return { requestId, ...counts };
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
        if (delivery.tenant === tenant && delivery.contacts.some((c) => matches(subject, c))) found.push({ stream, seq: message.seq, delivery });
      }
    }
    return found;
  }

  private async audit(tenant: string, action: 'export' | 'erase', counts: { deliveries: number; artifacts: number; contactMappings: number; deviceKeys: number }): Promise<string> {
    const requestId = newId('DSR');
    const record = DataSubjectAudit.encode({ tenant, requestId, action, atMs: Date.now(), ...counts }).finish();
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
