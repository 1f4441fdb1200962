import { describe, expect, it } from 'vitest';
import { wantedSpatialLayer } from './RoomLayers.js';

describe('wantedSpatialLayer', () => {
  const receiving = (preferredSpatialLayer: number | undefined, paused = false) => ({ paused, preferredSpatialLayer });

  it('is the highest layer a receiver prefers, clamped to the layers there are', () => {
    expect(wantedSpatialLayer(3, [receiving(0), receiving(1)])).toBe(1);
    expect(wantedSpatialLayer(3, [receiving(0), receiving(7)])).toBe(2);
    expect(wantedSpatialLayer(2, [receiving(2)])).toBe(1);
  });

  it('is the top layer for a receiver without a preference (a pipe to another node, a recording tap)', () => {
    expect(wantedSpatialLayer(3, [receiving(0), receiving(undefined)])).toBe(2);
  });

  it('leaves paused receivers out, and keeps the lowest layer when nobody receives', () => {
    expect(wantedSpatialLayer(3, [receiving(2, true), receiving(0)])).toBe(0);
    expect(wantedSpatialLayer(3, [receiving(2, true)])).toBe(0);
    expect(wantedSpatialLayer(3, [])).toBe(0);
  });
});
