import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, createLogger } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { RecordingJob } from './RecordingJob.js';

/**
 * A data-subject erasure discards a running recording: its stored segments are deleted (from a
 * real nats-server, as the recorder's identity), nothing is assembled, and it ends without
 * files, so nothing is announced. No capture runs here (one is exercised with real media by the
 * browser tests); the job never calls its SFU.
 */
describe('a discarded recording', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let segments: ArtifactStore;
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-discard-'));

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect('recorder');
    segments = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }), 'segments');
  }, 30_000);

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('deletes its stored segments, assembles nothing and ends without files; a second discard or a stop does nothing more', async () => {
    const job = new RecordingJob(
      {
        sfu: undefined as unknown as SfuClient,
        store: segments,
        segments,
        workDir,
        rtpIp: '127.0.0.1',
        ffmpeg: 'ffmpeg',
        ffprobe: 'ffprobe',
        segmentSeconds: 2,
        maxPartBytes: 1024 * 1024,
        roles: async () => new Map(),
        log: createLogger('test', 'silent'),
      },
      'recorder-test',
      'demo',
      'room-1',
      '',
    );
    const ids = ['SG_a', 'SG_b', 'SG_c'].map((id) => `${job.recording.recordingId}-${id}`);
    for (const [i, objectId] of ids.entries()) {
      await segments.put('demo', objectId, Readable.from([Buffer.from(`segment ${i}`)]), 'audio/webm');
      job.record.segments.push({ streamId: 'ST_1', objectId, startS: i * 2, endS: i * 2 + 2 });
    }
    const statuses: string[] = [];
    job.on('status', (state) => statuses.push(state));
    const ended = new Promise<Recording>((resolve) => job.once('ended', resolve));

    expect(await job.discard('')).toBe(3);
    const recording = await ended;
    expect(recording).toMatchObject({ state: RecordingState.RECORDING_STATE_FAILED, artifacts: [] });
    expect(statuses).toEqual(['stopped']);
    for (const id of ids) await expect(segments.get('demo', id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(job.record.segments).toEqual([]);

    expect(await job.discard('')).toBe(0);
    expect((await job.stop('')).artifacts).toEqual([]);
  });
});
