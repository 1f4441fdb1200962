import { createHash, randomBytes } from 'node:crypto';
import type { ContactMetadata, Delivery, DeliveryArtifact } from '../destinations/types.js';

/** What the destinations' tests deliver: deliveries and artifacts held in memory. */

/**
 * An artifact held in memory, read in small chunks as the store hands them out. `onOpen` counts
 * reads.
 */
export function memoryArtifact(fields: { artifactId: string; contentType: string; kind?: string; part?: number }, bytes: Buffer, onOpen: () => void = () => undefined): DeliveryArtifact {
  return {
    artifactId: fields.artifactId,
    kind: fields.kind ?? 'transcript',
    contentType: fields.contentType,
    sizeBytes: bytes.length,
    part: fields.part ?? 0,
    open: async () => {
      onOpen();
      return {
        contentType: fields.contentType,
        size: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        chunks: (async function* () {
          for (let at = 0; at < bytes.length; at += 65_536) yield bytes.subarray(at, Math.min(bytes.length, at + 65_536));
        })(),
      };
    },
  };
}

/** A file of a test delivery: an artifact with its bytes (text/plain unless said). */
export interface TestFile {
  id: string;
  data: Buffer;
  contentType?: string;
  kind?: string;
}

/**
 * A delivery for the destinations' tests, with what `overrides` sets: by default a transcript of
 * room r-1 of tenant demo, 10:00 to 10:05:30 UTC on 14 March 2025, for one end user (external id
 * ext-1), of two files named after the delivery id: `<id>-json` (`{"messages":[]}`) and `<id>-txt`
 * (`hello\n`). `reads()` counts how often its artifacts were opened.
 */
export function delivery(overrides: Partial<Delivery> & { files?: TestFile[] } = {}): Delivery & { reads(): number } {
  const deliveryId = overrides.deliveryId ?? `CV_${randomBytes(6).toString('hex')}`;
  const {
    files = [
      { id: `${deliveryId}-json`, data: Buffer.from('{"messages":[]}'), contentType: 'application/json' },
      { id: `${deliveryId}-txt`, data: Buffer.from('hello\n'), contentType: 'text/plain' },
    ],
    ...fields
  } = overrides;
  let reads = 0;
  return {
    deliveryId,
    kind: 'transcript',
    tenant: 'demo',
    room: 'r-1',
    startedAtMs: Date.UTC(2025, 2, 14, 10, 0, 0),
    endedAtMs: Date.UTC(2025, 2, 14, 10, 5, 30),
    contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: 'ext-1', crmContactId: '' }],
    artifacts: files.map((f) => memoryArtifact({ artifactId: f.id, contentType: f.contentType ?? 'text/plain', kind: f.kind }, f.data, () => reads++)),
    metadata: {},
    ...fields,
    reads: () => reads,
  };
}

/**
 * A contact-center contact's record as events.ts makes it (kind `contact`, no files): contact
 * CT_1 of queue billing, by voice, answered by agent AG_1 after 30 s and handled for 300 s, with
 * a disposition and notes; `metadata` overrides its fields.
 */
export function contactDelivery(overrides: Partial<ContactMetadata> & { deliveryId?: string; crmContactId?: string; externalId?: string } = {}): Delivery {
  const { deliveryId, crmContactId = '', externalId = 'ext-1', ...changes } = overrides;
  const requestedAtMs = Date.UTC(2025, 2, 14, 10, 0, 0);
  const metadata: ContactMetadata = {
    contactId: 'CT_1',
    queueId: 'billing',
    channel: 'voice',
    requestedAtMs,
    connectedAtMs: requestedAtMs + 30_000,
    endedAtMs: requestedAtMs + 330_000,
    waitSeconds: 30,
    handleSeconds: 300,
    agentId: 'AG_1',
    outcome: 'completed',
    transfers: [{ fromAgentId: 'AG_0', toQueueId: 'billing', toAgentId: 'AG_1', warm: true, atMs: requestedAtMs + 60_000 }],
    disposition: 'Refund issued',
    notes: 'Customer asked for a refund.\nSent by email.',
    overflowedFrom: ['general'],
    callback: false,
    ...changes,
  };
  return {
    deliveryId: deliveryId ?? `contact-${metadata.contactId}`,
    kind: 'contact',
    tenant: 'demo',
    room: 'r-1',
    startedAtMs: metadata.requestedAtMs,
    endedAtMs: metadata.endedAtMs,
    contacts: [{ participantId: '', role: 'end_user', externalId, crmContactId }],
    artifacts: [],
    metadata: { ...metadata },
  };
}
