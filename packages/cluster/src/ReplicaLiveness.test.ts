import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, createLogger, openBucket } from '@gateway/common';
import { NatsServer, waitFor } from '@gateway/testing';
import { ReplicaLiveness } from './ReplicaLiveness.js';

const log = createLogger('liveness-test', 'silent');

describe('signaling replica liveness', () => {
  let nats: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect('signaling');
  });

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('refuses a heartbeat above a third of the TTL', () => {
    expect(ReplicaLiveness.heartbeatProblem(5_000)).toBeUndefined();
    expect(ReplicaLiveness.heartbeatProblem(6_000)).toMatch(/at most a third of the gateway_signaling_replicas bucket's TTL \(15 s\)/);
  });

  it('sees another replica alive while it beats, tells once when it stops, and reads what it announces', async () => {
    const heartbeatMs = 200;
    const a = await ReplicaLiveness.open(nc, { replicaId: 'sig-a', heartbeatMs, announce: () => ({ rooms: {} }), log });
    const b = await ReplicaLiveness.open(nc, { replicaId: 'sig-b', heartbeatMs, announce: () => ({ rooms: { demo: 3 } }), log });
    const departed: string[][] = [];
    a.onDeparted((ids) => departed.push(ids));
    a.start();
    b.start();
    try {
      expect(a.isAlive('sig-a')).toBe(true);
      expect(a.isAlive('sig-nobody')).toBe(false);
      await waitFor(() => a.isAlive('sig-b'), 2_000, 'sig-b seen alive');
      expect(a.others()).toEqual([{ rooms: { demo: 3 } }]);
      // A key that does not decode is no replica.
      await (await openBucket(nc, buckets.signalingReplicas)).put('sig-broken', 'not json');
      await new Promise((r) => setTimeout(r, heartbeatMs * 2));
      expect(a.isAlive('sig-broken')).toBe(false);

      b.stop();
      await waitFor(() => departed.length > 0, 3_000, 'sig-b departed');
      expect(departed).toEqual([['sig-b']]);
      expect(a.isAlive('sig-b')).toBe(false);
      // Its key is still in the bucket (until the TTL): a lookup does not bring it back.
      expect(await a.isAliveNow('sig-b')).toBe(false);
      expect(a.others()).toEqual([]);
      // Told once only.
      await new Promise((r) => setTimeout(r, heartbeatMs * 3));
      expect(departed).toHaveLength(1);
    } finally {
      a.stop();
      b.stop();
    }
  });

  it('takes a replica that started since its last read as alive at once, by reading its key', async () => {
    // Beats far apart: nothing is read again during the test.
    const a = await ReplicaLiveness.open(nc, { replicaId: 'sig-early', heartbeatMs: 5_000, announce: () => ({ rooms: {} }), log });
    const b = await ReplicaLiveness.open(nc, { replicaId: 'sig-late', heartbeatMs: 5_000, announce: () => ({ rooms: {} }), log });
    try {
      expect(a.isAlive('sig-late')).toBe(false);
      expect(await a.isAliveNow('sig-late')).toBe(true);
      expect(a.isAlive('sig-late')).toBe(true);
      expect(await a.isAliveNow('sig-never-started')).toBe(false);
    } finally {
      a.stop();
      b.stop();
    }
  });
});
