import { createHash } from 'node:crypto';
import type { DeliveryArtifact } from './types.js';

/**
 * An artifact held in memory, read in small chunks as the store hands them out: for the
 * destinations' tests. `onOpen` counts reads.
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
