import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { NodeInfo } from '@gateway/proto/gateway/sfu/v1/sfu';
import { buckets, kvKeys, openBucket, type KV } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { RecorderDirectory } from './RecorderDirectory.js';
import { SfuDirectory } from './SfuDirectory.js';

/**
 * The registries' records are read back from NATS KV, where anything with write access could
 * put anything: each record is checked, and a bad one is ignored with a log line, never
 * trusted and never a failure of the whole lookup.
 */
describe('registry records read back from KV', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfuNodes: KV;
  let recorderNodes: KV;
  let roomRecordings: KV;
  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );
  const sfuRecord = (fields: Partial<NodeInfo>) =>
    NodeInfo.encode(NodeInfo.create({ grpcAddress: '127.0.0.1:50051', pipeIp: '127.0.0.1', draining: false, updatedAtMs: Date.now(), version: '1', ...fields })).finish();
  const recorderRecord = (fields: Record<string, unknown>) =>
    JSON.stringify({ grpcAddress: '127.0.0.1:50061', rtpIp: '127.0.0.1', jobs: 0, cpuInUse: 0, cpuBudget: 1, draining: false, updatedAtMs: Date.now(), ...fields });

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    sfuNodes = await openBucket(nc, buckets.sfuNodes);
    recorderNodes = await openBucket(nc, buckets.recorderNodes);
    roomRecordings = await openBucket(nc, buckets.roomRecordings);
  });

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('places rooms only on SFU nodes whose records pass their checks', async () => {
    await sfuNodes.put('sfu-good', sfuRecord({ nodeId: 'sfu-good', load: { workers: 1, rooms: 5, transports: 0, producers: 0, consumers: 0, maxConsumers: 0, importedProducers: 0, pipes: 0 } }));
    // Bytes that are no NodeInfo at all.
    await sfuNodes.put('sfu-garbage', new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]));
    // A NodeInfo whose address is no host:port, and an idle-looking one under another node's key.
    await sfuNodes.put('sfu-bad-address', sfuRecord({ nodeId: 'sfu-bad-address', grpcAddress: 'attacker.example.com:99999/\r\n' }));
    await sfuNodes.put('sfu-impostor', sfuRecord({ nodeId: 'sfu-good', grpcAddress: '203.0.113.9:50051' }));
    await sfuNodes.put('sfu-bad-pipe', sfuRecord({ nodeId: 'sfu-bad-pipe', pipeIp: 'pipes.example.com' }));
    const directory = await SfuDirectory.open(nc, undefined, log);
    try {
      lines.length = 0;
      const live = await directory.liveNodes();
      expect(live.map((n) => [n.nodeId, n.grpcAddress])).toEqual([['sfu-good', '127.0.0.1:50051']]);
      expect((await directory.place('demo', 'room-1')).nodeId).toBe('sfu-good');
      expect(await directory.node('sfu-impostor')).toBeUndefined();
      expect(lines.join('')).toMatch(/ignoring an SFU registry record/);
      // The log names the failure, not what the record held.
      expect(lines.join('')).not.toMatch(/attacker\.example\.com|203\.0\.113\.9/);
    } finally {
      directory.close();
    }
  });

  it('offers only recorder nodes whose records pass their checks, and reads a bad room recording as none', async () => {
    await recorderNodes.put('rec-good', recorderRecord({ nodeId: 'rec-good' }));
    await recorderNodes.put('rec-draining', recorderRecord({ nodeId: 'rec-draining', draining: true }));
    await recorderNodes.put('rec-not-json', '{"nodeId": "rec-not-json", ');
    await recorderNodes.put('rec-no-rtp', JSON.stringify({ nodeId: 'rec-no-rtp', grpcAddress: '127.0.0.1:1', jobs: 0, cpuInUse: 0, cpuBudget: 1, updatedAtMs: Date.now() }));
    await recorderNodes.put('rec-zero-budget', recorderRecord({ nodeId: 'rec-zero-budget', cpuBudget: 0 }));
    await recorderNodes.put('rec-impostor', recorderRecord({ nodeId: 'rec-good', grpcAddress: '203.0.113.9:50061' }));
    await recorderNodes.put('rec-wrong-types', JSON.stringify({ nodeId: ['rec'], grpcAddress: { toString: 1 }, rtpIp: 7, jobs: 'many' }));
    const directory = await RecorderDirectory.open(nc, undefined, log);
    try {
      lines.length = 0;
      expect((await directory.candidates()).map((n) => n.nodeId)).toEqual(['rec-good']);
      expect(lines.join('')).toMatch(/ignoring a recorder registry record/);

      await roomRecordings.put(kvKeys.room('demo', 'room-1'), 'not json at all');
      await roomRecordings.put(kvKeys.room('demo', 'room-2'), JSON.stringify({ recordingId: 'RC_1', nodeId: 'rec-good', grpcAddress: 'attacker:1:2', state: 'started' }));
      await roomRecordings.put(kvKeys.room('demo', 'room-3'), JSON.stringify({ recordingId: 'RC_3', nodeId: 'rec-good', grpcAddress: '127.0.0.1:50061', state: 'started' }));
      expect(await directory.recordingOf('demo', 'room-1')).toBeUndefined();
      expect(await directory.recordingOf('demo', 'room-2')).toBeUndefined();
      expect(await directory.recordingOf('demo', 'room-3')).toMatchObject({ recordingId: 'RC_3' });
    } finally {
      directory.close();
    }
  });
});
