import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { RecordingReady, SessionEnded } from '@gateway/proto/gateway/events/v1/events';
import { RecordingJobRecord, RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ArtifactStore, DEMO_TENANT_KEK, Residue, StaticKeyring, buckets, subjects, type ArtifactSpace, type ResidueReport } from '@gateway/common';
import { NatsServer } from '@gateway/testing';

const minute = 60_000;
const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });

/**
 * The residue scanner against a real JetStream, as its own NATS identity: a store holding only
 * live data reports nothing; each kind of residue planted is found with its age; the sweep
 * removes exactly that and leaves every live entry.
 */
describe('the residue scanner', () => {
  let nats: NatsServer;
  let admin: NatsConnection;
  let residueNc: NatsConnection;
  let residue: Residue;
  // Thirteen minutes on: older than every grace, younger than every lifetime but the recorders'.
  const later = () => Date.now() + 13 * minute;
  const options = { now: later, deadRecorderMs: 60 * minute };

  const kv = (bucket: string) => new Kvm(admin).open(bucket);
  const put = async (bucket: string, key: string, value: Uint8Array | string) => (await kv(bucket)).put(key, value);
  const store = (space: ArtifactSpace) => ArtifactStore.open(admin, keyring, space);
  const artifact = async (space: ArtifactSpace, id: string) => (await store(space)).put('demo', id, Readable.from([Buffer.from(`bytes of ${id}`)]), 'application/octet-stream');
  const recordingReady = (recordingId: string, artifactIds: string[]) =>
    RecordingReady.encode(
      RecordingReady.fromPartial({
        recording: {
          recordingId,
          tenant: 'demo',
          room: 'live',
          state: RecordingState.RECORDING_STATE_COMPLETE,
          startedAtMs: 1,
          endedAtMs: 2,
          artifacts: artifactIds.map((artifactId) => ({ artifactId, kind: 'audio', contentType: 'audio/mpeg', sizeBytes: 1, durationMs: 1, part: 0 })),
        },
        contacts: [],
      }),
    ).finish();
  const jobRecord = (recordingId: string, state: RecordingState, refreshedAtMs: number, segments: string[]) =>
    RecordingJobRecord.encode(
      RecordingJobRecord.fromPartial({
        recording: { recordingId, tenant: 'demo', room: 'live', state, startedAtMs: 1, participantIds: ['PA_live'] },
        nodeId: 'rec-1',
        refreshedAtMs,
        segments: segments.map((objectId) => ({ streamId: 'ST_1', objectId, startS: 0, endS: 1 })),
      }),
    ).finish();
  const counts = (report: ResidueReport) => Object.fromEntries(report.summary.map((s) => [`${s.store}/${s.kind}`, s.count]));

  beforeAll(async () => {
    nats = await NatsServer.start();
    admin = await nats.connect('admin');
    residueNc = await nats.connect('residue');
    residue = await Residue.open(residueNc);
  }, 60_000);

  afterAll(async () => {
    await residueNc?.close();
    await admin?.close();
    await nats?.stop();
  });

  it('reports nothing of a live room, a running recording and what waits for delivery', async () => {
    // A live room: a participant, its session, placement, Smart Action (with its photo), chat and a device key registration.
    await put(buckets.participants, 'demo.live.PA_live', 'participant');
    await put(buckets.roomSessions, 'demo.live', 'session');
    await put(buckets.roomPlacement, 'demo.live', 'sfu-1');
    await put(buckets.smartActions, 'demo.live.SA_live', SmartAction.encode(SmartAction.fromPartial({ actionId: 'SA_live', kind: 'photo', artifactId: 'AT_live' })).finish());
    await artifact('conversations', 'AT_live');
    await put(buckets.chatKeys, 'demo.live', 'key');
    await jetstream(admin).publish(subjects.chat('demo', 'live'), 'sealed');
    await put(buckets.webauthnChallenges, 'demo.live.PA_live', 'challenge');
    // A running recording with a segment, and the room's recording.
    await artifact('segments', 'SG_live');
    await put(buckets.recordings, 'demo.RC_live', jobRecord('RC_live', RecordingState.RECORDING_STATE_RECORDING, Date.now() + 13 * minute, ['SG_live']));
    await put(buckets.roomRecordings, 'demo.live', JSON.stringify({ recordingId: 'RC_live', nodeId: 'rec-1', grpcAddress: '', state: 'started' }));
    // A recording waiting for delivery, and an ended session.
    await artifact('recordings', 'AR_live');
    await jetstream(admin).publish(subjects.recordingReady('demo'), recordingReady('RC_old', ['AR_live']));
    await jetstream(admin).publish(subjects.sessionEnded('demo'), SessionEnded.encode(SessionEnded.fromPartial({ tenant: 'demo', room: 'live', sessionId: 'SE_1' })).finish());

    const report = await residue.scan(options);
    expect(report.summary).toEqual([]);
    expect(report.entries).toBeGreaterThanOrEqual(14);
    // Nothing young is residue: the same store with its room emptied a moment ago.
    await (await kv(buckets.participants)).purge('demo.live.PA_live');
    expect((await residue.scan()).summary).toEqual([]);
    await put(buckets.participants, 'demo.live.PA_live', 'participant');
  });

  it('finds each kind of residue with its age, and the sweep removes exactly that', async () => {
    // A room that ended but left its records.
    await put(buckets.roomPlacement, 'demo.gone', 'sfu-dead');
    await put(buckets.chatKeys, 'demo.gone', 'key');
    await put(buckets.smartActions, 'demo.gone.SA_gone', SmartAction.encode(SmartAction.fromPartial({ actionId: 'SA_gone', kind: 'photo' })).finish());
    await put(buckets.webauthnChallenges, 'demo.gone.PA_gone', 'challenge');
    // Sessions nobody finished: an emptied room's, and one whose finisher stopped.
    await put(buckets.roomSessions, 'demo.empty', 'session');
    await put(buckets.roomSessions, 'demo.old.ending.SE_old', 'session');
    // A finished recording's record; one of a dead recorder with its segment; a segment of no recording; a room's recording that ended.
    await put(buckets.recordings, 'demo.RC_done', jobRecord('RC_done', RecordingState.RECORDING_STATE_COMPLETE, Date.now(), []));
    await artifact('segments', 'SG_dead');
    await put(buckets.recordings, 'demo.RC_dead', jobRecord('RC_dead', RecordingState.RECORDING_STATE_RECORDING, Date.now() - 2 * 60 * minute, ['SG_dead']));
    await artifact('segments', 'SG_orphan');
    await put(buckets.roomRecordings, 'demo.ended', JSON.stringify({ recordingId: 'RC_done', nodeId: 'rec-1', grpcAddress: '', state: 'started' }));
    // Artifacts: one no event names, one without its key, a key without its artifact, an event whose artifacts were delivered.
    await artifact('recordings', 'AR_noevent');
    await artifact('recordings', 'AR_nokey');
    await (await kv(buckets.dataKeys)).purge('demo.recordings.AR_nokey');
    await artifact('recordings', 'AR_keyonly');
    await (await new Objm(admin).open(buckets.artifacts)).delete('demo.AR_keyonly');
    await jetstream(admin).publish(subjects.recordingReady('demo'), recordingReady('RC_sent', ['AR_sent']));
    // Chat of a room whose conversation key is gone: unreadable.
    await jetstream(admin).publish(subjects.chat('demo', 'lost'), 'sealed');

    const report = await residue.scan(options);
    expect(counts(report)).toEqual({
      'GATEWAY_CHAT/orphan': 1,
      'GATEWAY_RECORDINGS/delivered': 1,
      [`${buckets.artifacts}/artifact-without-event`]: 1,
      [`${buckets.artifacts}/artifact-without-key`]: 1,
      [`${buckets.chatKeys}/room-ended`]: 1,
      [`${buckets.dataKeys}/key-without-artifact`]: 1,
      [`${buckets.recordingSegments}/orphan`]: 2,
      [`${buckets.recordings}/dead-recorder`]: 1,
      [`${buckets.recordings}/finished`]: 1,
      [`${buckets.roomPlacement}/room-ended`]: 1,
      [`${buckets.roomRecordings}/orphan`]: 1,
      [`${buckets.roomSessions}/unfinished`]: 2,
      [`${buckets.smartActions}/room-ended`]: 1,
      [`${buckets.webauthnChallenges}/room-ended`]: 1,
    });
    for (const summary of report.summary) {
      expect(summary.oldestAgeMs, `${summary.store}/${summary.kind}`).toBeGreaterThanOrEqual(12 * minute);
      expect(summary.oldestAgeMs).toBeLessThan((summary.kind === 'dead-recorder' ? 3 * 60 : 14) * minute);
    }
    expect(report.items.map((i) => i.key)).toEqual(expect.arrayContaining(['demo.gone', 'demo.RC_dead', 'demo.SG_dead', 'demo.SG_orphan', 'demo.AR_noevent', 'demo.recordings.AR_keyonly']));
    // Events past their tenant's retention outlived it.
    const expired = await residue.scan({ ...options, retentionMs: () => 0, retentionSlackMs: 0 });
    expect(counts(expired)).toMatchObject({ 'GATEWAY_RECORDINGS/outlived': 2, 'GATEWAY_SESSIONS/outlived': 1 });

    const swept = await residue.sweep(report);
    expect(swept.reduce((n, s) => n + s.count, 0)).toBe(report.items.length - 2);
    // Unfinished sessions are signaling's to finish (their session.ended would be lost): reported, not swept.
    expect(counts(await residue.scan(options))).toEqual({ [`${buckets.roomSessions}/unfinished`]: 2 });
    // A day on they outlived any call, and go.
    const dayLater = await residue.scan({ ...options, now: () => Date.now() + 25 * 60 * minute, deadRecorderMs: 2 * 24 * 60 * minute, finishedRecordingMs: 2 * 24 * 60 * minute });
    expect(dayLater.items.filter((i) => i.store === buckets.roomSessions).map((i) => [i.key, i.kind])).toEqual(
      expect.arrayContaining([
        ['demo.empty', 'outlived'],
        ['demo.old.ending.SE_old', 'outlived'],
      ]),
    );
    await residue.sweep({ ...dayLater, items: dayLater.items.filter((i) => i.key === 'demo.empty' || i.key === 'demo.old.ending.SE_old') });
    expect((await residue.scan(options)).summary).toEqual([]);

    // What was live is all still there.
    const live = async (bucket: string, key: string) => (await (await kv(bucket)).get(key))?.operation;
    for (const [bucket, key] of [
      [buckets.participants, 'demo.live.PA_live'],
      [buckets.roomSessions, 'demo.live'],
      [buckets.roomPlacement, 'demo.live'],
      [buckets.smartActions, 'demo.live.SA_live'],
      [buckets.chatKeys, 'demo.live'],
      [buckets.webauthnChallenges, 'demo.live.PA_live'],
      [buckets.recordings, 'demo.RC_live'],
      [buckets.roomRecordings, 'demo.live'],
      [buckets.dataKeys, 'demo.segments.SG_live'],
      [buckets.dataKeys, 'demo.recordings.AR_live'],
      [buckets.dataKeys, 'demo.conversations.AT_live'],
    ] as const) {
      expect(await live(bucket, key), `${bucket} ${key}`).toBe('PUT');
    }
    for (const [space, id] of [
      ['segments', 'SG_live'],
      ['recordings', 'AR_live'],
      ['conversations', 'AT_live'],
    ] as const) {
      expect((await (await store(space)).get('demo', id)).data.toString()).toBe(`bytes of ${id}`);
    }
    for (const id of ['SG_dead', 'SG_orphan']) expect(await live(buckets.dataKeys, `demo.segments.${id}`)).not.toBe('PUT');
    const jsm = await jetstreamManager(admin);
    expect((await jsm.streams.info('GATEWAY_RECORDINGS')).state.messages).toBe(1);
    expect((await jsm.streams.info('GATEWAY_CHAT')).state.messages).toBe(1);
    expect((await jsm.streams.info('GATEWAY_SESSIONS')).state.messages).toBe(1);
  });

  it('runs from the command line as the residue identity (make residue, the CronJob), and sweeps with --sweep', async () => {
    await put(buckets.roomPlacement, 'demo.cli', 'sfu-gone');
    const run = (...args: string[]) =>
      new Promise<{ code: number | null; out: Record<string, any> }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', 'packages/common/src/residue/main.ts', ...args], {
          env: { ...process.env, ...nats.envFor('residue'), RESIDUE_GRACE_SECONDS: '0', RESIDUE_MARKER_GRACE_SECONDS: '0', LOG_LEVEL: 'warn' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.once('error', reject);
        child.once('exit', (code) => resolve({ code, out: JSON.parse(out) }));
      });
    const listed = await run('--list');
    expect(listed.code).toBe(0);
    expect(listed.out.residue).toEqual([expect.objectContaining({ store: buckets.roomPlacement, kind: 'room-ended', count: 1 })]);
    expect(listed.out.items).toEqual([expect.objectContaining({ key: 'demo.cli' })]);
    // Keys and counts, never a value.
    expect(JSON.stringify(listed.out)).not.toContain('sfu-gone');
    const swept = await run('--sweep');
    expect(swept.out.swept).toEqual([expect.objectContaining({ store: buckets.roomPlacement, count: 1 })]);
    expect((await (await kv(buckets.roomPlacement)).get('demo.cli'))?.operation).not.toBe('PUT');
    const after = await run();
    expect(after.out.residue).toEqual([]);
    // The sweep's own delete left a marker, which the next sweep purges (here without the grace).
    expect(after.out.markers).toContainEqual(expect.objectContaining({ store: buckets.roomPlacement, count: 1 }));
    expect((await run('--sweep')).out.markersPurged).toBeGreaterThanOrEqual(1);
    expect((await run()).out.markers).toEqual([]);
  }, 60_000);

  it('may read everything but delete only residue', async () => {
    // The residue identity cannot write where nothing is swept.
    const refused = await new Promise<boolean>((resolve) => {
      void (async () => {
        for await (const status of residueNc.status()) if (status.type === 'error') return resolve(true);
      })();
      residueNc.publish(`$KV.${buckets.deviceKeys}.demo.someone`, 'x');
      setTimeout(() => resolve(false), 2_000);
    });
    expect(refused).toBe(true);
  });
});
