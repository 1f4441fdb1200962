import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DISABLE_DELAY_MS, Dynacast, type LayeredProducer } from './Dynacast.js';

/** A camera producer with three simulcast layers; `layers` is what setMaxSpatialLayer was called with. */
function camera(id = 'PR_cam', layerCount = 3) {
  const layers: number[] = [];
  const producer = {
    id,
    kind: 'video',
    closed: false,
    rtpParameters: { codecs: [], encodings: Array.from({ length: layerCount }, (_, i) => ({ rid: `r${i}` })) },
    setMaxSpatialLayer: async (layer: number) => void layers.push(layer),
  };
  return { producer: producer as unknown as LayeredProducer & { closed: boolean }, layers };
}

describe('Dynacast', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('switches layers off only after a delay, and on again at once', async () => {
    const dynacast = new Dynacast();
    const { producer, layers } = camera();
    dynacast.wanted(producer, 0);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS - 1);
    expect(layers).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(layers).toEqual([0]);
    dynacast.wanted(producer, 2);
    expect(layers).toEqual([0, 2]);
    // Wanted again before the delay is over: never switched off.
    dynacast.wanted(producer, 1);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS / 2);
    dynacast.wanted(producer, 2);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS * 2);
    expect(layers).toEqual([0, 2]);
  });

  it('keeps the lowest layer, clamps to the layers there are, and leaves single-layer and closed producers alone', async () => {
    const dynacast = new Dynacast();
    const { producer, layers } = camera();
    dynacast.wanted(producer, -1);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    dynacast.wanted(producer, 9);
    expect(layers).toEqual([0, 2]);
    const single = camera('PR_screen', 1);
    dynacast.wanted(single.producer, 0);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    expect(single.layers).toEqual([]);
    dynacast.wanted(producer, 0);
    producer.closed = true;
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    expect(layers).toEqual([0, 2]);
  });

  it('switches every layer on again after a reconnection', async () => {
    const dynacast = new Dynacast();
    const { producer, layers } = camera();
    dynacast.wanted(producer, 1);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    dynacast.reset([producer]);
    expect(layers).toEqual([1, 2]);
  });
});
