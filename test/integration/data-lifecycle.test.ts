import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { Residue, buckets, kvKeys, readJobRecord, streams, subjects } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startRecorderProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { generatedClip } from '../support/media.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

/**
 * Every record of a room ends with it, against the real services: placement, room session,
 * Smart Actions and device key registrations when the last participant leaves; the rooms of a
 * stopped signaling replica by another's sweep; a recording's record once it is finished; and
 * what a recorder killed mid-recording leaves, by the residue sweep.
 */
describe('data lifecycle', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  const clients = new TestClients();
  const workDirs: string[] = [];
  const senders: ChildProcess[] = [];
  const fastSignaling = { SIGNALING_HEARTBEAT_SECONDS: '0.5', SIGNALING_SESSION_FINISH_STALE_SECONDS: '2' };

  const kv = (bucket: string) => new Kvm(nc).open(bucket);
  const live = async (bucket: string, key: string) => (await (await kv(bucket)).get(key))?.operation === 'PUT';
  const keysOf = async (bucket: string, filter: string) => {
    const out: string[] = [];
    for await (const key of await (await kv(bucket)).keys(filter)) if (await live(bucket, key)) out.push(key);
    return out;
  };
  const gone = (what: string, check: () => Promise<boolean>) => waitFor(async () => ((await check()) ? undefined : true), 20_000, what);
  const recorderWith = (env: Record<string, string> = {}) => {
    const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-lifecycle-rec-'));
    workDirs.push(workDir);
    return startRecorderProcess({ natsUrl: nats.url, workDir, env: { RECORDER_SEGMENT_SECONDS: '1', RECORDER_FINISHED_RECORD_SECONDS: '1', ...env } }).then((p) => Object.assign(p, { workDir }));
  };
  /** A call whose end user publishes a microphone (no media: the SFU has a producer to tap). */
  const call = async (room: string, url = signaling.wsUrl) => {
    const user = await clients.join(url, await demoToken({ room, identity: `user-${room}`, role: 'end_user' }));
    const send = (await user.client.request('createTransport', { direction: 'send' })).createTransport;
    await user.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' });
    const agent = await clients.join(url, await demoToken({ room, identity: `agent-${room}`, role: 'agent', canRecord: true }));
    return { user: user.client, agent: agent.client };
  };
  /**
   * The voice of the call, sent to the recording's capture as the SFU's tap would: RTP to the
   * ports of the capture's SDP (the SFU has no real media to forward without a browser).
   */
  const sendVoice = async (workDir: string, recordingId: string) => {
    const sdp = await waitFor(
      () => {
        const dir = path.join(workDir, recordingId);
        const file = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.sdp')) : undefined;
        return file ? readFileSync(path.join(dir, file), 'utf8') : undefined;
      },
      10_000,
      "the capture's SDP",
    );
    const [, port, payloadType] = /m=audio (\d+) RTP\/AVP (\d+)/.exec(sdp)!;
    const clip = generatedClip('lifecycle-voice.ogg', ['-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=48000:duration=10', '-ac', '2', '-c:a', 'libopus', '-b:a', '48k']);
    const sender = spawn('ffmpeg', ['-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', clip, '-c:a', 'copy', '-payload_type', payloadType!, '-f', 'rtp', `rtp://127.0.0.1:${port}`], {
      stdio: 'ignore',
    });
    senders.push(sender);
    return sender;
  };
  const recordOf = async (tenant: string, recordingId: string) => {
    const entry = await (await kv(buckets.recordings)).get(kvKeys.recording(tenant, recordingId));
    return entry?.operation === 'PUT' && entry.length > 0 ? readJobRecord(entry.value) : undefined;
  };

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [signaling, crm] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: fastSignaling }),
      startCrmSyncProcess({ natsUrl: nats.url, env: { CRM_SYNC_RESIDUE_NKEY_SEED_FILE: nats.envFor('residue').NATS_NKEY_SEED_FILE! } }),
    ]);
  }, 60_000);

  afterAll(async () => {
    for (const sender of senders) sender.kill('SIGKILL');
    clients.closeAll();
    await nc?.close();
    await Promise.all([crm?.stop(), signaling?.stop()]);
    await sfu?.stop();
    await nats?.stop();
    for (const dir of workDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('a room that ends leaves no placement, session, Smart Action or device key registration', async () => {
    const room = `ends-${Date.now()}`;
    const { user, agent } = await call(room);
    await agent.request('requestSmartAction', { kind: 'photo' });
    expect((await user.request('deviceKeyOptions', {})).error).toBeUndefined();
    const key = kvKeys.room('demo', room);
    expect(await live(buckets.roomPlacement, key)).toBe(true);
    expect(await live(buckets.roomSessions, key)).toBe(true);
    expect(await keysOf(buckets.smartActions, `${key}.*`)).toHaveLength(1);
    expect(await keysOf(buckets.webauthnChallenges, `${key}.*`)).toHaveLength(1);

    await user.request('leave');
    await agent.request('leave');
    await gone('the room session', () => live(buckets.roomSessions, key));
    await gone('the placement', () => live(buckets.roomPlacement, key));
    expect(await keysOf(buckets.smartActions, `${key}.*`)).toEqual([]);
    expect(await keysOf(buckets.webauthnChallenges, `${key}.*`)).toEqual([]);
    expect(await keysOf(buckets.roomSessions, `${key}.ending.*`)).toEqual([]);

    // The next call in the same room is placed again; without chat or Smart Actions, its device key registration still ends with it.
    const again = await call(room);
    expect(await live(buckets.roomPlacement, key)).toBe(true);
    expect((await again.user.request('deviceKeyOptions', {})).error).toBeUndefined();
    await again.user.request('leave');
    await again.agent.request('leave');
    await gone('the placement of the second call', () => live(buckets.roomPlacement, key));
    await gone("the second call's device key registration", async () => (await keysOf(buckets.webauthnChallenges, `${key}.*`)).length > 0);
  });

  it('the rooms of a stopped signaling replica are finished by another', async () => {
    const other = await startSignalingProcess({ natsUrl: nats.url, env: fastSignaling });
    const room = `stopped-${Date.now()}`;
    const key = kvKeys.room('demo', room);
    try {
      await call(room, other.wsUrl);
      expect(await live(buckets.roomSessions, key)).toBe(true);
    } finally {
      // Its sessions are left resumable; nobody resumes them.
      await other.stop('SIGTERM');
    }
    await gone("the stopped replica's room session", () => live(buckets.roomSessions, key));
    await gone('its placement', () => live(buckets.roomPlacement, key));
    expect(await keysOf(buckets.participants, `${key}.*`)).toEqual([]);
    // The session was announced, not dropped.
    const jsm = await jetstreamManager(nc);
    const announced = await jsm.streams.getMessage(streams.sessions.name, { last_by_subj: subjects.sessionEnded('demo') });
    expect(Buffer.from(announced!.data).includes(Buffer.from(room))).toBe(true);
  }, 60_000);

  it("a finished recording's record and segments go once recording.ready is out", async () => {
    const recorder = await recorderWith();
    try {
      const room = `recorded-${Date.now()}`;
      const { user, agent } = await call(room);
      const started = (await agent.request('startRecording', {})).startRecording;
      const sender = await sendVoice(recorder.workDir, started.recordingId);
      const record = await waitFor(
        async () => (((await recordOf('demo', started.recordingId))?.segments.length ?? 0) >= 2 ? recordOf('demo', started.recordingId) : undefined),
        20_000,
        'stored segments',
      );
      const segments = record!.segments.map((s) => `demo.${s.objectId}`);
      expect(await live(buckets.roomRecordings, kvKeys.room('demo', room))).toBe(true);
      expect((await agent.request('stopRecording', {})).error).toBeUndefined();
      sender.kill('SIGKILL');
      // Announced with its files, then its record and segments go.
      const jsm = await jetstreamManager(nc);
      await waitFor(
        async () => {
          const last = await jsm.streams.getMessage(streams.recordings.name, { last_by_subj: subjects.recordingReady('demo') }).catch(() => null);
          return last && Buffer.from(last.data).includes(Buffer.from(started.recordingId)) ? true : undefined;
        },
        20_000,
        'recording.ready',
      );
      await gone('the recording record', async () => (await recordOf('demo', started.recordingId)) !== undefined);
      expect(await live(buckets.roomRecordings, kvKeys.room('demo', room))).toBe(false);
      const stored = await (await new Objm(nc).open(buckets.recordingSegments)).list();
      expect(stored.filter((o) => !o.deleted && segments.includes(o.name))).toEqual([]);
      await user.request('leave');
      await agent.request('leave');
    } finally {
      await recorder.stop('SIGTERM');
    }
  }, 60_000);

  it('a recorder killed mid-recording leaves segments that the sweep removes', async () => {
    const recorder = await recorderWith();
    const room = `killed-${Date.now()}`;
    const { user, agent } = await call(room);
    const started = (await agent.request('startRecording', {})).startRecording;
    await sendVoice(recorder.workDir, started.recordingId);
    const record = await waitFor(
      async () => (((await recordOf('demo', started.recordingId))?.segments.length ?? 0) >= 2 ? recordOf('demo', started.recordingId) : undefined),
      20_000,
      'stored segments',
    );
    await recorder.stop('SIGKILL');
    // Its capture (ffmpeg) dies with nobody to read it; this test started it, through the recorder.
    killCapturesIn(recorder.workDir);
    const segments = new Set(record!.segments.map((s) => `demo.${s.objectId}`));

    // No recorder is left to recover it: the scan sees a dead recorder's record and its segments.
    const residueNc = await nats.connect('residue');
    try {
      const residue = await Residue.open(residueNc);
      const options = { graceMs: 0, deadRecorderMs: 3_000 };
      const report = await waitFor(
        async () => {
          const scanned = await residue.scan(options);
          return scanned.items.some((i) => i.kind === 'dead-recorder') ? scanned : undefined;
        },
        20_000,
        "the dead recorder's record found",
      );
      const found = report.items.filter((i) => i.store === buckets.recordingSegments).map((i) => i.key);
      for (const name of segments) expect(found).toContain(name);
      expect(report.items.find((i) => i.kind === 'dead-recorder')?.key).toBe(kvKeys.recording('demo', started.recordingId));
      // The room is still on: nothing of it is residue.
      expect(report.items.filter((i) => i.key.includes(room) && i.store !== buckets.roomRecordings)).toEqual([]);

      await residue.sweep(report);
      const stored = await (await new Objm(nc).open(buckets.recordingSegments)).list();
      expect(stored.filter((o) => !o.deleted && segments.has(o.name))).toEqual([]);
      for (const name of segments) expect(await live(buckets.dataKeys, `demo.segments.${name.slice(5)}`)).toBe(false);
      expect(await recordOf('demo', started.recordingId)).toBeUndefined();
      // The room's records are live and stay.
      expect(await live(buckets.roomSessions, kvKeys.room('demo', room))).toBe(true);
      expect(await live(buckets.roomPlacement, kvKeys.room('demo', room))).toBe(true);
    } finally {
      await residueNc.close();
    }
    await user.request('leave');
    await agent.request('leave');
  }, 60_000);

  it('crm-sync answers /residue and exports gateway_residue_items', async () => {
    const ops = `http://127.0.0.1:${crm.opsPort}`;
    const scanned = await (await fetch(`${ops}/residue`)).json();
    expect(scanned.entries).toBeGreaterThan(0);
    expect(Array.isArray(scanned.residue)).toBe(true);
    expect((await fetch(`${ops}/residue/sweep`)).status).toBe(405);
    // Guarded like /drain: from another address than loopback, only with the ops token (none here).
    const outside = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    if (outside) {
      expect((await fetch(`http://${outside}:${crm.opsPort}/residue`)).status).toBe(403);
      expect((await fetch(`http://${outside}:${crm.opsPort}/residue/sweep`, { method: 'POST' })).status).toBe(403);
    }
    const swept = await (await fetch(`${ops}/residue/sweep`, { method: 'POST' })).json();
    expect(Array.isArray(swept.swept)).toBe(true);
    const metrics = await (await fetch(`${ops}/metrics`)).text();
    expect(metrics).toMatch(/# TYPE gateway_residue_items gauge/);
    expect(metrics).toMatch(/gateway_residue_scan_timestamp_seconds\{[^}]*\} \d/);
  });
});

/** Kills the ffmpeg captures a killed recorder of this test left running (found by their work folder). */
function killCapturesIn(workDir: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
      if (path.basename(command) === 'ffmpeg' && cwd.startsWith(workDir)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone meanwhile, or not ours to look at.
    }
  }
}
