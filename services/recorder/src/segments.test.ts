import { describe, expect, it } from 'vitest';
import { createLogger, type ArtifactStore } from '@gateway/common';
import { deleteSegments } from './segments.js';

/** A store whose deletes fail a given number of times per segment before they work. */
function flakyStore(failures: Record<string, number>) {
  const deleted: string[] = [];
  const store = {
    async delete(_tenant: string, id: string) {
      if ((failures[id] ?? 0) > 0) {
        failures[id]!--;
        throw new Error('NATS timeout');
      }
      deleted.push(id);
    },
  } as unknown as ArtifactStore;
  return { store, deleted };
}

describe('deleteSegments', () => {
  const log = createLogger('test', 'silent');

  it('retries a delete that fails, and goes on with the others', async () => {
    const { store, deleted } = flakyStore({ SG_a: 2 });
    await deleteSegments(store, 'demo', [{ objectId: 'SG_a' }, { objectId: 'SG_b' }], log);
    expect(deleted).toEqual(['SG_a', 'SG_b']);
  });

  it('leaves a segment that keeps failing to the residue sweep, without stopping', async () => {
    const { store, deleted } = flakyStore({ SG_a: 10 });
    await deleteSegments(store, 'demo', [{ objectId: 'SG_a' }, { objectId: 'SG_b' }], log);
    expect(deleted).toEqual(['SG_b']);
  });
});
