import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { DataSubjectAudit } from '@gateway/proto/gateway/events/v1/events';
import { DeviceKeys, ErrorCode, GatewayError, newId, readSubject, streams, subjects, type ArtifactStore, type Keyring, type NatsConnection } from '@gateway/common';
import type { KvContactMaps } from './connectors/ContactMap.js';
import { deliveryOf, openContacts } from './Deliveries.js';
import type { Delivery } from './destinations/types.js';

/** Whom a request is about: the customer's external id, or the id of the contact in their CRM. */
export type DataSubject = { externalId: string; crmContactId?: undefined } | { crmContactId: string; externalId?: undefined };

interface PendingEvent {
  stream: string;
  seq: number;
  delivery: Delivery;
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
  ) {}

  async export(tenant: string, subject: DataSubject): Promise<Record<string, unknown>> {
    const events = await this.pendingOf(tenant, subject);
    const mappings = await this.contactMaps.find(tenant, subject);
    const keys = subject.externalId ? await this.deviceKeys.list(tenant, subject.externalId) : [];
    let artifactCount = 0;
    const deliveries = [];
    for (const { delivery } of events) {
      const artifacts = [];
      for (const artifact of delivery.artifacts) {
        const content = await artifact.read().catch((error: unknown) => {
          if (GatewayError.from(error).code === ErrorCode.NOT_FOUND) return undefined;
          throw error;
        });
        if (!content) continue;
        artifactCount++;
        artifacts.push({ artifactId: artifact.artifactId, kind: artifact.kind, contentType: artifact.contentType, sizeBytes: artifact.sizeBytes, part: artifact.part, contentBase64: content.toString('base64') });
      }
      deliveries.push({
        kind: delivery.kind,
        deliveryId: delivery.deliveryId,
        room: delivery.room,
        startedAt: iso(delivery.startedAtMs),
        endedAt: iso(delivery.endedAtMs),
        // Only the subject's own reference: the others in the room are not theirs to receive.
        contact: delivery.contacts.find((c) => matches(subject, c)),
        metadata: delivery.metadata,
        artifacts,
      });
    }
    await this.audit(tenant, 'export', { deliveries: deliveries.length, artifacts: artifactCount, contactMappings: mappings.length, deviceKeys: keys.length });
    return {
      format: 'gateway.data-subject-export.v1',
      tenant,
      subject,
      generatedAt: new Date().toISOString(),
      pendingDeliveries: deliveries,
      crmContacts: mappings.map((m) => ({ connector: m.connector, crmContactId: m.crmContactId })),
      deviceKeys: keys.map((k) => ({ credentialId: k.id, registeredAt: iso(k.registeredAtMs) })),
    };
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
      deviceKeys = (await this.deviceKeys.list(tenant, subject.externalId)).length;
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
        // A session's participants are sealed: open them to see whom it names.
        const delivery = await openContacts(this.keyring, deliveryOf(message.subject, message.data, this.artifacts));
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
  const externalId = query.get('externalId');
  const crmContactId = query.get('crmContactId');
  if ((externalId === null) === (crmContactId === null) || (externalId ?? crmContactId ?? '').length === 0 || (externalId ?? crmContactId)!.length > 256) {
    throw new GatewayError(ErrorCode.BAD_REQUEST, 'give exactly one of externalId and crmContactId (1-256 characters)');
  }
  return externalId !== null ? { externalId } : { crmContactId: crmContactId! };
}
