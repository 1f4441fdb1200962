import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { RecordingReady } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ArtifactStore, DEMO_TENANT_KEK, OBJECT_WRITE_MS, isArtifactStoreFull, Residue, StaticKeyring, buckets, subjects, type ResidueReport } from '@gateway/common';
import { NatsServer } from '@gateway/testing';

const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });
const store = buckets.artifacts;
const chunkSubject = (nuid: string) => `$O.${store}.C.${nuid}`;

/**
 * Chunks a write left in an object store: a write the store refused once some chunks had landed
 * leaves them under a nuid no object names, and the recorder may not purge them. The residue
 * sweep purges them once no chunk has come for longer than a write may take, and nothing else:
 * a finished object's chunks, a write in progress, a write that stored a chunk after the scan.
 */
describe('the residue sweep and the chunks of unfinished writes', () => {
  let nats: NatsServer;
  let admin: NatsConnection;
  let recorder: NatsConnection;
  let residueNc: NatsConnection;
  let residue: Residue;

  /** Chunks published as the recorder's write publishes them (its own identity and permissions). */
  const writeChunks = async (nuid: string, count: number) => {
    for (let i = 0; i < count; i++) await jetstream(recorder).publish(chunkSubject(nuid), randomBytes(1024));
  };
  const chunksOf = async (nuid: string) => {
    const info = await (await jetstreamManager(admin)).streams.info(`OBJ_${store}`, { subjects_filter: chunkSubject(nuid) });
    return info.state.subjects?.[chunkSubject(nuid)] ?? 0;
  };
  const abandoned = (report: ResidueReport) =>
    report.items
      .filter((item) => item.kind === 'abandoned-chunks')
      .map((item) => item.key)
      .sort();

  beforeAll(async () => {
    nats = await NatsServer.start();
    admin = await nats.connect('admin');
    recorder = await nats.connect('recorder');
    residueNc = await nats.connect('residue');
    residue = await Residue.open(residueNc);
  }, 60_000);

  afterAll(async () => {
    await residueNc?.close();
    await recorder?.close();
    await admin?.close();
    await nats?.stop();
  });

  it('purges only the chunks no object names and no write has added to for longer than a write may take', async () => {
    // A finished recording artifact (with its event, so it is not residue either), of several chunks.
    const recordings = await ArtifactStore.open(recorder, keyring, 'recordings');
    await recordings.put('demo', 'AR_done', Readable.from([randomBytes(300 * 1024)]), 'audio/mpeg');
    const ready = RecordingReady.fromPartial({
      recording: {
        recordingId: 'RC_done',
        tenant: 'demo',
        room: 'r1',
        state: RecordingState.RECORDING_STATE_COMPLETE,
        artifacts: [{ artifactId: 'AR_done', kind: 'audio', contentType: 'audio/mpeg', sizeBytes: 1, durationMs: 1, part: 0 }],
      },
      contacts: [],
    });
    await jetstream(admin).publish(subjects.recordingReady('demo'), RecordingReady.encode(ready).finish());
    // Two refused writes: their chunks landed, their meta record never did.
    await writeChunks('ORPHANOLD', 3);
    await writeChunks('RESUMED', 2);
    // Every message up to here is at most this old at `now` minus the write limit.
    const writtenBefore = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 5));
    // A write in progress: its chunks came after, so at `now` it has not been silent for the write limit.
    await writeChunks('WRITING', 2);
    const now = () => writtenBefore + OBJECT_WRITE_MS;

    const report = await residue.scan({ now });
    expect(abandoned(report)).toEqual(['ORPHANOLD', 'RESUMED']);
    expect(report.summary).toContainEqual(expect.objectContaining({ store, kind: 'abandoned-chunks', count: 2 }));
    const done = report.items.find((item) => item.key === 'demo.AR_done');
    expect(done).toBeUndefined();

    // The resumed write stores a chunk after the scan: a writer is alive, its chunks stay.
    await writeChunks('RESUMED', 1);
    const swept = await residue.sweep(report);
    expect(swept).toEqual([expect.objectContaining({ store, kind: 'abandoned-chunks', count: 1 })]);

    expect(await chunksOf('ORPHANOLD')).toBe(0);
    expect(await chunksOf('RESUMED')).toBe(3);
    expect(await chunksOf('WRITING')).toBe(2);
    const reread = await (await ArtifactStore.open(admin, keyring, 'recordings')).get('demo', 'AR_done');
    expect(reread.data.length).toBe(300 * 1024);
  });

  it("sweeps what a recorder's write of unknown size refused by a full store left, which frees the store's room", async () => {
    const jsm = await jetstreamManager(admin);
    const before = await jsm.streams.info(`OBJ_${store}`);
    const leftBefore = new Set(abandoned(await residue.scan({ now: () => Date.now() + OBJECT_WRITE_MS })));
    // Room for a few chunks, not for the file: some chunks land, then the store refuses.
    await jsm.streams.update(`OBJ_${store}`, { ...before.config, max_bytes: before.state.bytes + 400 * 1024 });
    try {
      const recordings = await ArtifactStore.open(recorder, keyring, 'recordings');
      const refused = await recordings.put('demo', 'AR_big', Readable.from([randomBytes(1024 * 1024)]), 'audio/mpeg').catch((error: unknown) => error);
      expect(isArtifactStoreFull(refused)).toBe(true);
      const full = await jsm.streams.info(`OBJ_${store}`);
      expect(full.state.bytes).toBeGreaterThan(before.state.bytes);

      const report = await residue.scan({ now: () => Date.now() + OBJECT_WRITE_MS });
      const left = abandoned(report).filter((nuid) => !leftBefore.has(nuid));
      expect(left).toHaveLength(1);
      await residue.sweep({ ...report, items: report.items.filter((item) => item.key === left[0]) });
      expect(await chunksOf(left[0]!)).toBe(0);
      expect((await jsm.streams.info(`OBJ_${store}`)).state.bytes).toBe(before.state.bytes);
    } finally {
      await jsm.streams.update(`OBJ_${store}`, before.config);
    }
  });

  it('leaves the chunks of an object whose meta record came after the scan', async () => {
    await writeChunks('FINISHEDLATE', 2);
    const report = await residue.scan({ now: () => Date.now() + OBJECT_WRITE_MS });
    expect(abandoned(report)).toContain('FINISHEDLATE');
    // The write's meta record lands between the scan and the sweep (a writer slower than the limit).
    const meta = { name: 'demo.AR_late', bucket: store, nuid: 'FINISHEDLATE', size: 2048, chunks: 2, mtime: new Date().toISOString(), digest: '' };
    const encoded = Buffer.from(meta.name).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
    await jetstream(recorder).publish(`$O.${store}.M.${encoded}`, JSON.stringify(meta));
    const swept = await residue.sweep({ ...report, items: report.items.filter((item) => item.key === 'FINISHEDLATE') });
    expect(swept).toEqual([]);
    expect(await chunksOf('FINISHEDLATE')).toBe(2);
  });
});
