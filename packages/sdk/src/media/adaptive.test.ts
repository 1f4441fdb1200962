import { describe, expect, it } from 'vitest';
import { displayedHeight, layerForHeight, spatialLayerCount } from './adaptive.js';

describe('adaptive stream: the layer for a picture', () => {
  it('gives the smallest layer sharp enough: a thumbnail the lowest, a large view the top', () => {
    // 720p in three layers: 180, 360, 720.
    expect(layerForHeight(90, 3)).toBe(0);
    expect(layerForHeight(180, 3)).toBe(0);
    expect(layerForHeight(200, 3)).toBe(0);
    expect(layerForHeight(201, 3)).toBe(1);
    expect(layerForHeight(400, 3)).toBe(1);
    expect(layerForHeight(401, 3)).toBe(2);
    expect(layerForHeight(2160, 3)).toBe(2);
    // No size (collapsed): the lowest; one layer: that one.
    expect(layerForHeight(0, 3)).toBe(0);
    expect(layerForHeight(720, 1)).toBe(0);
  });

  it('reads how many spatial layers a consumer has from its scalability mode', () => {
    expect(spatialLayerCount({ encodings: [{ scalabilityMode: 'L3T3' }] })).toBe(3);
    expect(spatialLayerCount({ encodings: [{ scalabilityMode: 'S2T3' }] })).toBe(2);
    expect(spatialLayerCount({ encodings: [{}] })).toBe(1);
    expect(spatialLayerCount({})).toBe(1);
  });

  it('measures the picture as drawn into its box (contain), in device pixels', () => {
    // A wide box shows a 16:9 video as tall as the box; a narrow one shorter.
    expect(displayedHeight(1000, 180, 16 / 9, 1)).toBe(180);
    expect(displayedHeight(320, 720, 16 / 9, 1)).toBe(180);
    expect(displayedHeight(320, 180, 16 / 9, 2)).toBe(360);
    expect(displayedHeight(0, 180, 16 / 9, 1)).toBe(0);
  });
});
