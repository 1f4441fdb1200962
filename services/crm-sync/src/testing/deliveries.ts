import { createHash, randomBytes } from 'node:crypto';
import type { Delivery, DeliveryArtifact } from '../destinations/types.js';

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
