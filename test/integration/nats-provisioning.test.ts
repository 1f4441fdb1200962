import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { buckets, catalog, openBucket, streamNameOf, streams, subjects } from '@gateway/common';
import { NatsServer, startSignalingProcess } from '@gateway/testing';

/**
 * Provisioning: one step, with the admin identity, makes every stream, bucket and object store
 * of the catalog with its limits; services only open what exists.
 */
describe('JetStream provisioning', () => {
  let nats: NatsServer;
  let admin: NatsConnection;

  // Each test starts from a JetStream nothing has provisioned, and provisions what it needs.
  beforeEach(async () => {
    nats = await NatsServer.start({ provision: false });
    admin = await nats.connect('admin');
  });

  afterEach(async () => {
    await admin?.close();
    await nats?.stop();
  });

  const provision = (limits?: Record<string, Record<string, string>>) => nats.runProvisioning({ NATS_STORAGE_BUDGET: '1GiB', ...(limits ? { NATS_STORAGE_LIMITS: JSON.stringify(limits) } : {}) });
  const infoOf = async (name: string) => (await jetstreamManager(admin)).streams.info(name);

  it('a service does not start on an unprovisioned JetStream: it names what is missing and creates nothing', async () => {
    const failure = await startSignalingProcess({ natsUrl: nats.url }).then(
      (started) => started.stop().then(() => 'started'),
      (error: unknown) => String(error),
    );
    expect(failure).toMatch(/exited with 1 during start-up/);
    expect(failure).toMatch(/(KV bucket gateway_\w+|stream GATEWAY_\w+|object store gateway_\w+) does not exist: JetStream is not provisioned/);
    const names: string[] = [];
    for await (const name of (await jetstreamManager(admin)).streams.names()) names.push(name);
    expect(names).toEqual([]);
  }, 60_000);

  it('creates every stream, bucket and object store with a size limit, and values with a size limit', async () => {
    const output = await provision();
    expect(output).toMatch(/JetStream provisioned/);
    for (const entry of catalog) {
      const { config } = await infoOf(streamNameOf(entry));
      expect(config.max_bytes, streamNameOf(entry)).toBeGreaterThan(0);
      expect(config.discard, streamNameOf(entry)).toBe('new');
      if (entry.kind === 'kv') expect(config.max_msg_size, entry.bucket).toBe(entry.maxValueBytes);
    }
    const participants = (await infoOf(`KV_${buckets.participants}`)).config;
    expect(participants.max_age).toBeGreaterThan(0);
    expect((await infoOf(streams.sessions.name)).config.duplicate_window).toBe(60 * 60 * 1e9);
  }, 60_000);

  it('is idempotent, and applies new limits', async () => {
    await provision();
    const again = await provision();
    expect(again).not.toMatch(/"action":"(created|updated)"/);
    await provision({ GATEWAY_ALERTS: { maxBytes: '3MiB' }, gateway_participants: { maxValueBytes: '64KiB' } });
    expect((await infoOf(streams.alerts.name)).config.max_bytes).toBe(3 * 1024 * 1024);
    expect((await infoOf(`KV_${buckets.participants}`)).config.max_msg_size).toBe(64 * 1024);
  }, 60_000);

  it('refuses limits that add up to more than the budget, creating nothing', async () => {
    const failure = await provision({ gateway_artifacts: { maxBytes: '1000MiB' } }).then(
      () => 'provisioned',
      (error: unknown) => String(error),
    );
    expect(failure).toMatch(/the size limits add up to \d+ bytes \(artifacts \d+, hot state \d+, the rest \d+\), more than \d+ of NATS_STORAGE_BUDGET/);
    const names: string[] = [];
    for await (const name of (await jetstreamManager(admin)).streams.names()) names.push(name);
    expect(names).toEqual([]);
  }, 60_000);

  it("refuses a KV value over its bucket's limit", async () => {
    await provision({ gateway_participants: { maxValueBytes: '64KiB' } });
    const signaling = await nats.connect('signaling');
    try {
      const kv = await openBucket(signaling, buckets.participants);
      await kv.put('demo.room.PA_small', new Uint8Array(1024));
      await expect(kv.put('demo.room.PA_huge', new Uint8Array(65 * 1024))).rejects.toThrow(/maximum/i);
    } finally {
      await signaling.close();
    }
  }, 60_000);

  it('a full stream refuses new events instead of dropping undelivered ones; a lower limit never drops what is stored', async () => {
    await provision({ GATEWAY_RECORDINGS: { maxBytes: '64KiB' } });
    const js = jetstream(admin);
    let refused: unknown;
    let stored = 0;
    for (let i = 0; i < 200 && !refused; i++) {
      await js.publish(subjects.recordingReady('demo'), new Uint8Array(1024)).then(
        () => stored++,
        (error: unknown) => (refused = error),
      );
    }
    expect(String(refused)).toMatch(/maximum bytes|resource limits/i);
    const info = await infoOf(streams.recordings.name);
    expect(info.state.first_seq).toBe(1);
    expect(info.state.messages).toBe(stored);
    // A limit below what the stream holds is not applied: JetStream would drop the oldest events.
    const output = await provision({ GATEWAY_RECORDINGS: { maxBytes: '16KiB' } });
    expect(output).toMatch(/max_bytes: it holds \d+ bytes, more than the new limit/);
    const after = await infoOf(streams.recordings.name);
    expect(after.state.messages).toBe(stored);
    expect(after.config.max_bytes).toBe(64 * 1024);
  }, 60_000);
});
