import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { RecordingReady } from '@gateway/proto/gateway/events/v1/events';
import { RecorderClient, RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, buckets, callUnary, grpc, streams } from '@gateway/common';
import { NatsServer, startRecorderProcess, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { demoToken } from '../support/tokens.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Mean volume (dB) of an audio file between two times, from ffmpeg's volumedetect. */
function meanVolumeDb(file: string, fromS: number, toS: number, channel: 0 | 1): number {
  const result = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-ss', String(fromS), '-to', String(toS), '-i', file, '-af', `pan=mono|c0=c${channel},volumedetect`, '-f', 'null', '-'], { encoding: 'utf8' });
  const match = /mean_volume: (-?[\d.]+|-inf) dB/.exec(result.stderr);
  if (!match) throw new Error(`no volume measured: ${result.stderr.slice(-500)}`);
  return match[1] === '-inf' ? -Infinity : Number(match[1]);
}

function probe(file: string): { streams: Array<Record<string, any>>; format: Record<string, any> } {
  return JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' }));
}

/**
 * A call in Chromium recorded for about 10 s with a PCI pause in the middle: the files are
 * checked with ffprobe, the paused interval must be silent, the artifacts open only with the
 * tenant's key, and the Object Store holds no plaintext media.
 */
describe('recording a call', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let client: RecorderClient;
  let browser: Browser;
  const workDir = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-test-'));
  const outDir = mkdtempSync(path.join(tmpdir(), 'gateway-recording-out-'));

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await connect({ servers: nats.url });
    sfu = await startSfuProcess({ natsUrl: nats.url });
    signaling = await startSignalingProcess({ natsUrl: nats.url });
    recorder = await startRecorderProcess({ natsUrl: nats.url, workDir });
    client = new RecorderClient(recorder.grpcAddress, grpc.credentials.createInsecure());
    browser = await launchChromium();
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await browser?.close();
    await recorder?.stop();
    await signaling?.stop();
    await sfu?.stop();
    await nc?.close();
    await nats?.stop();
    rmSync(workDir, { recursive: true, force: true });
    rmSync(outDir, { recursive: true, force: true });
  });

  it('refuses a room that is not live', async () => {
    await expect(callUnary(client, client.startRecording, { tenant: 'demo', room: 'nobody-here', requestedBy: 'x' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('records voice in stereo and each camera, with a silent PCI pause, encrypted at rest', async () => {
    const room = `rec-${Date.now()}`;
    const endUser = await browser.newPage();
    await endUser.goto(`${signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    await endUser.evaluate(() => (window as any).room.publish({ screen: true }));
    const agent = await browser.newPage();
    await agent.goto(`${signaling.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}&autojoin=1`);
    await agent.waitForFunction(() => (window as any).room?.localTracks.size >= 1);
    await agent.evaluate(() => (window as any).room.publish({ camera: true }));
    const agentId = await agent.evaluate(() => (window as any).room.localParticipant.id as string);
    await sleep(1_000);

    const started: Recording = await callUnary(client, client.startRecording, { tenant: 'demo', room, requestedBy: agentId });
    expect(started.state).toBe(RecordingState.RECORDING_STATE_RECORDING);
    const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: agentId };
    // Another tenant cannot touch it.
    await expect(callUnary(client, client.pauseRecording, { ...ref, tenant: 'globex' })).rejects.toMatchObject({ code: 'NOT_FOUND' });

    await sleep(4_000);
    expect((await callUnary<typeof ref, Recording>(client, client.pauseRecording, ref)).state).toBe(RecordingState.RECORDING_STATE_PAUSED);
    await sleep(3_000);
    expect((await callUnary<typeof ref, Recording>(client, client.resumeRecording, ref)).state).toBe(RecordingState.RECORDING_STATE_RECORDING);
    await sleep(3_000);
    const done: Recording = await callUnary(client, client.stopRecording, ref, 60_000);
    expect(done.state).toBe(RecordingState.RECORDING_STATE_COMPLETE);
    expect(done.pauses).toHaveLength(1);
    expect(done.pauses[0]!.pausedBy).toBe(agentId);
    const pause = done.pauses[0]!;
    expect(pause.endMs - pause.startMs).toBeGreaterThan(2_500);

    const kinds = done.artifacts.map((a) => `${a.kind}:${a.contentType}`).sort();
    expect(kinds).toEqual(['camera:video/webm', 'camera:video/webm', 'screen:video/webm', 'voice:audio/mpeg', 'voice:audio/webm']);

    // The artifacts open with the tenant's key and are what they claim.
    const store = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    const files: Record<string, string> = {};
    for (const artifact of done.artifacts) {
      const { data } = await store.get('demo', artifact.artifactId);
      const file = path.join(outDir, `${artifact.kind}-${artifact.participantId || 'mix'}.${artifact.contentType.split('/')[1]}`);
      writeFileSync(file, data);
      files[`${artifact.kind}:${artifact.contentType}`] ??= file;
      expect(artifact.durationMs).toBeGreaterThan(8_000);
      expect(artifact.durationMs).toBeLessThan(14_000);
    }
    const mp3 = probe(files['voice:audio/mpeg']!);
    expect(mp3.streams[0]).toMatchObject({ codec_name: 'mp3', channels: 2 });
    const opus = probe(files['voice:audio/webm']!);
    expect(opus.streams[0]).toMatchObject({ codec_name: 'opus', channels: 2 });
    const camera = probe(files['camera:video/webm']!);
    expect(camera.streams[0]).toMatchObject({ codec_name: 'vp8' });
    expect(probe(files['screen:video/webm']!).streams[0]).toMatchObject({ codec_name: 'vp8' });

    // Both voices are heard outside the pause, and nothing within it. Chromium's fake
    // microphone beeps (mean around -30 dB over a second); decoded silence is digital zero
    // (-91 dB, the floor of 16-bit audio), so -60 dB separates the two with margin either way.
    const voice = files['voice:audio/mpeg']!;
    // The file starts with the recording (missing audio is padded from its start), so the
    // pause's times apply to it directly; half a second of margin covers the tap's latency.
    const [pausedFrom, pausedTo] = [pause.startMs / 1000, pause.endMs / 1000];
    for (const channel of [0, 1] as const) {
      const levels = {
        before: meanVolumeDb(voice, 0.5, pausedFrom - 0.5, channel),
        during: meanVolumeDb(voice, pausedFrom + 0.5, pausedTo - 0.5, channel),
        after: meanVolumeDb(voice, pausedTo + 0.5, pausedTo + 2.5, channel),
      };
      expect(levels.before, `channel ${channel} before the pause`).toBeGreaterThan(-50);
      expect(levels.during, `channel ${channel} during the pause`).toBeLessThan(-60);
      expect(levels.after, `channel ${channel} after the pause`).toBeGreaterThan(-50);
    }

    // With a wrong key nothing opens.
    const wrong = await ArtifactStore.open(nc, new StaticKeyring({ demo: Buffer.alloc(32, 7).toString('base64') }));
    await expect(wrong.get('demo', done.artifacts[0]!.artifactId)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });

    // No plaintext media anywhere in the Object Store.
    const objects = await new Objm(nc).open(buckets.artifacts);
    const signatures = [Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), Buffer.from('ID3'), Buffer.from('OpusHead'), Buffer.from('LAME'), Buffer.from('webm')];
    for (const info of await objects.list()) {
      const raw = Buffer.from((await objects.getBlob(info.name))!);
      for (const signature of signatures) expect(raw.includes(signature), `${info.name} contains ${signature.toString('hex')}`).toBe(false);
    }
    // Nothing of the job is left in the work folder.
    expect(readdirSync(workDir)).toEqual([]);

    // recording.ready is on the stream for crm-sync.
    const consumer = await jetstream(nc).consumers.get(streams.recordings.name);
    const message = await consumer.next({ expires: 5_000 });
    const ready = RecordingReady.decode(message!.data);
    expect(ready.recording?.recordingId).toBe(done.recordingId);
    expect(ready.contacts.map((c) => c.role).sort()).toEqual(['agent', 'end_user']);
    await jetstreamManager(nc);
  }, 120_000);
});
