import type { ArtifactStore, Logger } from '@gateway/common';
import { sleepBackoff } from '@gateway/common';

/**
 * Deletes a recording's segments once they are assembled (or useless). A delete that fails is
 * retried a few times, then left: the segment belongs to no running recording any more, so the
 * residue sweep (docs/data-lifecycle.md) removes it, and its data key goes first, so the bytes
 * left are unreadable meanwhile.
 */
export async function deleteSegments(segments: ArtifactStore, tenant: string, list: ReadonlyArray<{ objectId: string }>, log: Logger): Promise<void> {
  let failed = 0;
  for (const segment of list) {
    for (let attempt = 1; ; attempt++) {
      try {
        await segments.delete(tenant, segment.objectId);
        break;
      } catch (error) {
        if (attempt >= 3) {
          failed++;
          log.warn({ err: error, objectId: segment.objectId }, 'deleting a segment failed; the residue sweep removes it');
          break;
        }
        await sleepBackoff(attempt, { initialMs: 200, maxMs: 5_000 });
      }
    }
  }
  if (failed > 0) log.warn({ failed, segments: list.length }, 'segments left for the residue sweep');
}
