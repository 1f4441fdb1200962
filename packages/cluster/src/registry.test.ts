import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { NodeInfo } from '@gateway/proto/gateway/sfu/v1/sfu';
import { NODE_REGISTRY_TTL_MS, buckets, createLogger, openBucket, type KV } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { NODE_STALE_MS, heartbeatProblem, isNodeFresh } from './nodeLiveness.js';
import { SfuRegistry } from './SfuRegistry.js';
import { SfuDirectory } from './SfuDirectory.js';
import { RecorderDirectory, type RecorderNodeInfo } from './RecorderDirectory.js';

const log = createLogger('registry-test', 'silent');

describe("the registries' one staleness rule", () => {
  it("counts a record as live until the stale limit, which is the buckets' TTL", () => {
    const now = 1_000_000;
    expect(NODE_STALE_MS).toBe(NODE_REGISTRY_TTL_MS);
    expect(isNodeFresh(now, now)).toBe(true);
    expect(isNodeFresh(now - NODE_STALE_MS + 1, now)).toBe(true);
    expect(isNodeFresh(now - NODE_STALE_MS, now)).toBe(false);
  });

  it('refuses a heartbeat slower than half the TTL or half the stale limit', () => {
    expect(heartbeatProblem('SFU_HEARTBEAT_SECONDS', 2_000, buckets.sfuNodes, NODE_REGISTRY_TTL_MS)).toBeUndefined();
    expect(heartbeatProblem('SFU_HEARTBEAT_SECONDS', NODE_REGISTRY_TTL_MS / 2, buckets.sfuNodes, NODE_REGISTRY_TTL_MS)).toBeUndefined();
    expect(heartbeatProblem('SFU_HEARTBEAT_SECONDS', 6_000, buckets.sfuNodes, NODE_REGISTRY_TTL_MS)).toMatch(/SFU_HEARTBEAT_SECONDS must be at most half the .* bucket's TTL \(10 s\)/);
    // A bucket without TTL still has readers who judge by the stale limit.
    expect(heartbeatProblem('SFU_HEARTBEAT_SECONDS', 6_000, buckets.sfuNodes, 0)).toMatch(/at most half the time after which a node counts as gone/);
  });
});

describe('registry writers and their directories', () => {
  let nats: NatsServer;
  let admin: NatsConnection;
  let sfu: NatsConnection;
  let recorder: NatsConnection;

  beforeAll(async () => {
    nats = await NatsServer.start();
    admin = await nats.connect();
    sfu = await nats.connect('sfu');
    recorder = await nats.connect('recorder');
  }, 30_000);

  afterAll(async () => {
    for (const nc of [admin, sfu, recorder]) await nc?.close();
    await nats?.stop();
  });

  it("an SFU node's registration is what the directory finds, until it is stale or leaves", async () => {
    const registry = await SfuRegistry.start(
      sfu,
      { nodeId: 'sfu-writer', heartbeatMs: 200 },
      () => ({
        grpcAddress: '127.0.0.1:50051',
        pipeIp: '127.0.0.1',
        load: { workers: 1, rooms: 0, transports: 0, producers: 0, consumers: 0, maxConsumers: 0, importedProducers: 0, pipes: 0 },
        draining: false,
      }),
      log,
    );
    const directory = await SfuDirectory.open(recorder, undefined, log);
    try {
      expect((await directory.node('sfu-writer'))?.grpcAddress).toBe('127.0.0.1:50051');
      expect(await registry.peer('sfu-writer')).toEqual({ grpcAddress: '127.0.0.1:50051', pipeIp: '127.0.0.1' });
      expect((await registry.liveNodeIds()).has('sfu-writer')).toBe(true);

      // A record whose heartbeat is as old as the stale limit is gone for the directory.
      const nodes: KV = await openBucket(admin, buckets.sfuNodes);
      const stale = NodeInfo.create({ nodeId: 'sfu-stale', grpcAddress: '127.0.0.1:50052', pipeIp: '127.0.0.1', draining: false, updatedAtMs: Date.now() - NODE_STALE_MS, version: '1' });
      await nodes.put('sfu-stale', NodeInfo.encode(stale).finish());
      expect(await directory.node('sfu-stale')).toBeUndefined();
      expect((await directory.liveNodes()).map((n) => n.nodeId)).toEqual(['sfu-writer']);
    } finally {
      await registry.close();
      directory.close();
    }
    const after = await SfuDirectory.open(recorder, undefined, log);
    expect(await after.node('sfu-writer')).toBeUndefined();
    after.close();
  });

  it('refuses an SFU heartbeat too slow for the registry', async () => {
    await expect(
      SfuRegistry.start(sfu, { nodeId: 'sfu-slow', heartbeatMs: NODE_STALE_MS }, () => ({ grpcAddress: '127.0.0.1:1', pipeIp: '127.0.0.1', load: undefined as never, draining: false }), log),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it("a recorder writes its registration and its rooms' recordings through the directory", async () => {
    const writer = await RecorderDirectory.open(recorder, undefined, log);
    const reader = await RecorderDirectory.open(admin, undefined, log);
    const info = (fields: Partial<RecorderNodeInfo>): RecorderNodeInfo => ({
      nodeId: 'rec-w',
      grpcAddress: '127.0.0.1:50061',
      rtpIp: '127.0.0.1',
      jobs: 0,
      cpuInUse: 0,
      cpuBudget: 1,
      draining: false,
      updatedAtMs: Date.now(),
      ...fields,
    });
    try {
      await writer.register(info({}));
      await writer.register(info({ nodeId: 'rec-old', updatedAtMs: Date.now() - NODE_STALE_MS }));
      expect((await reader.candidates()).map((n) => n.nodeId)).toEqual(['rec-w']);
      await writer.register(info({ draining: true }));
      expect(await reader.candidates()).toEqual([]);
      await writer.deregister('rec-w');
      await writer.deregister('rec-old');

      await writer.setRoomRecording('demo', 'room-w', { recordingId: 'RC_1', nodeId: 'rec-w', grpcAddress: '127.0.0.1:50061', state: 'started' });
      expect(await reader.recordingOf('demo', 'room-w')).toMatchObject({ recordingId: 'RC_1', state: 'started' });
      // Another recording's end leaves the room's record alone; its own end removes it.
      await writer.clearRoomRecording('demo', 'room-w', 'RC_other');
      expect(await reader.recordingOf('demo', 'room-w')).toMatchObject({ recordingId: 'RC_1' });
      await writer.clearRoomRecording('demo', 'room-w', 'RC_1');
      expect(await reader.recordingOf('demo', 'room-w')).toBeUndefined();
    } finally {
      writer.close();
      reader.close();
    }
  });
});
