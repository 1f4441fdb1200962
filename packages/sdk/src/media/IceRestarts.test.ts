import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { types } from 'mediasoup-client';
import { IceRestarts } from './IceRestarts.js';

interface FakeTransport {
  closed: boolean;
  connectionState: types.ConnectionState;
}

function setup() {
  const transport: FakeTransport = { closed: false, connectionState: 'failed' };
  const state = { closed: false, signaling: true };
  const restart = vi.fn(async (_t: FakeTransport) => undefined);
  const restarts = new IceRestarts<FakeTransport>({ isClosed: () => state.closed, signalingConnected: () => state.signaling, restart });
  return { transport, state, restart, restarts };
}

describe('IceRestarts', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('restarts a failed transport at once, and again with backoff until it connects', async () => {
    const { transport, restart, restarts } = setup();
    restarts.onStateChange(transport, 'failed');
    await vi.advanceTimersByTimeAsync(0);
    expect(restart).toHaveBeenCalledTimes(1);
    // The next look is between 2 and 4 s later (backoff from 2 s, with jitter).
    await vi.advanceTimersByTimeAsync(1_999);
    expect(restart).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(2_001);
    expect(restart).toHaveBeenCalledTimes(2);
    transport.connectionState = 'connected';
    restarts.onStateChange(transport, 'connected');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(restart).toHaveBeenCalledTimes(2);
  });

  it('gives a disconnected transport a moment to heal by itself', async () => {
    const { transport, restart, restarts } = setup();
    transport.connectionState = 'disconnected';
    restarts.onStateChange(transport, 'disconnected');
    await vi.advanceTimersByTimeAsync(1_000);
    transport.connectionState = 'connected';
    await vi.advanceTimersByTimeAsync(1_000);
    expect(restart).not.toHaveBeenCalled();
  });

  it('leaves it to signaling while it reconnects, and does nothing once the room or transport is closed', async () => {
    const { transport, state, restart, restarts } = setup();
    state.signaling = false;
    restarts.onStateChange(transport, 'failed');
    await vi.advanceTimersByTimeAsync(0);
    expect(restart).not.toHaveBeenCalled();

    state.signaling = true;
    transport.closed = true;
    restarts.onStateChange(transport, 'failed');
    await vi.advanceTimersByTimeAsync(0);
    state.closed = true;
    transport.closed = false;
    restarts.onStateChange(transport, 'failed');
    await vi.advanceTimersByTimeAsync(0);
    expect(restart).not.toHaveBeenCalled();
  });

  it('keeps trying when a restart fails, and stops when told to', async () => {
    const { transport, restart, restarts } = setup();
    restart.mockRejectedValue(new Error('no answer'));
    restarts.onStateChange(transport, 'failed');
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(4_000);
    expect(restart).toHaveBeenCalledTimes(2);
    restarts.cancelAll();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(restart).toHaveBeenCalledTimes(2);
  });
});
