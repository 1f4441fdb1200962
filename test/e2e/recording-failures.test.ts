import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, callUnary } from '@gateway/common';
import { startRecorderProcess, waitFor } from '@gateway/testing';
import { recorderClientAs } from '../support/grpcClients.js';
import { RecordingStack, meanVolumeDb, probe } from '../support/recording.js';

/**
 * A recording in Chromium when something under it fails: its capture's ffmpeg dies, its recorder
 * is killed or stopped, its work folder runs out of disk space. What was recorded is kept and
 * no plaintext is left behind.
 */
describe('recording a call', () => {
  const stack = new RecordingStack();
  beforeAll(() => stack.start(), 90_000);
  afterAll(() => stack.stop());

  it('restarts a capture whose ffmpeg dies, and the recording goes on', async () => {
    const room = `rec-encoder-${Date.now()}`;
    const { endUser, agent, agentId } = await stack.call(room);
    const started: Recording = await callUnary(stack.client, stack.client.startRecording, { tenant: 'demo', room, requestedBy: agentId, options: undefined });
    const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: agentId };
    await sleep(3_000);
    const captures = () =>
      execFileSync('pgrep', ['-P', String(stack.recorder.pid), 'ffmpeg'], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .filter(Boolean);
    const [first] = captures();
    expect(first).toBeTruthy();
    process.kill(Number(first), 'SIGKILL');
    await waitFor(
      () => {
        try {
          const now = captures();
          return now.length === 1 && now[0] !== first;
        } catch {
          return false;
        }
      },
      10_000,
      'a new capture',
    );
    await sleep(3_000);
    const done: Recording = await callUnary(stack.client, stack.client.stopRecording, ref, 60_000);
    expect(done.state, done.failureReason).toBe(RecordingState.RECORDING_STATE_COMPLETE);
    const voice = done.artifacts.find((a) => a.contentType === 'audio/mpeg')!;
    expect(Math.abs(voice.durationMs - (done.endedAtMs - done.startedAtMs))).toBeLessThan(1_000);
    // The voice goes on after the restart: the last two seconds are not silent.
    const store = await ArtifactStore.open(stack.nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    const file = path.join(stack.outDir, 'restarted.mp3');
    writeFileSync(file, (await store.get('demo', voice.artifactId)).data);
    const total = voice.durationMs / 1000;
    expect(meanVolumeDb(file, total - 2.5, total - 0.5, 0)).toBeGreaterThan(-50);
    await endUser.close();
    await agent.close();
  }, 90_000);

  it('keeps what was recorded when the recorder is killed: another run finishes it as partial, no plaintext left', async () => {
    const room = `rec-crash-${Date.now()}`;
    const { endUser, agent, agentId } = await stack.call(room);
    const started: Recording = await callUnary(stack.client, stack.client.startRecording, { tenant: 'demo', room, requestedBy: agentId, options: undefined });
    const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: agentId };
    await sleep(6_000);
    await stack.recorder.stop('SIGKILL');
    // The killed process leaves plaintext segments in its private folder...
    expect(readdirSync(stack.workDir).length).toBeGreaterThan(0);
    // ...which the next run removes at start-up, before it finishes the orphaned recording.
    stack.recorder = await startRecorderProcess({ natsUrl: stack.nats.url, workDir: stack.workDir, env: { RECORDER_SEGMENT_SECONDS: '2' } });
    stack.client.close();
    stack.client = recorderClientAs(stack.recorder.grpcAddress);
    const finished = await waitFor(
      async () => {
        const recording: Recording = await callUnary(stack.client, stack.client.getRecording, ref);
        return recording.state === RecordingState.RECORDING_STATE_PARTIAL || recording.state === RecordingState.RECORDING_STATE_FAILED ? recording : undefined;
      },
      40_000,
      'the orphaned recording finished',
    );
    expect(finished.state, finished.failureReason).toBe(RecordingState.RECORDING_STATE_PARTIAL);
    expect(finished.failureReason).toMatch(/stopped unexpectedly/);
    const voice = finished.artifacts.find((a) => a.contentType === 'audio/mpeg')!;
    // Segments of 2 s: at most the one in progress is lost.
    expect(voice.durationMs).toBeGreaterThan(3_000);
    expect(finished.artifacts.map((a) => a.kind).sort()).toEqual(['camera', 'voice', 'voice']);
    const store = await ArtifactStore.open(stack.nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    const file = path.join(stack.outDir, 'partial.mp3');
    writeFileSync(file, (await store.get('demo', voice.artifactId)).data);
    expect(probe(file).streams[0]).toMatchObject({ codec_name: 'mp3', channels: 2 });
    expect(readdirSync(stack.workDir)).toEqual([]);
    await endUser.close();
    await agent.close();
  }, 120_000);

  it('fails a recording cleanly, with the reason, when the work folder runs out of disk space', async () => {
    // A 256 KiB filesystem for the recorder's work folder: one camera segment in progress fills it.
    const mount = mkdtempSync(path.join(tmpdir(), 'gateway-tiny-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mount]);
    const tiny = await startRecorderProcess({ natsUrl: stack.nats.url, workDir: path.join(mount, 'work'), env: { RECORDER_SEGMENT_SECONDS: '30' } });
    const tinyClient = recorderClientAs(tiny.grpcAddress);
    try {
      const room = `rec-disk-${Date.now()}`;
      const { endUser, agent, agentId } = await stack.call(room);
      const started: Recording = await callUnary(tinyClient, tinyClient.startRecording, { tenant: 'demo', room, requestedBy: agentId, options: undefined });
      const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: agentId };
      const ended = await waitFor(
        async () => {
          const recording: Recording = await callUnary(tinyClient, tinyClient.getRecording, ref);
          return recording.endedAtMs > 0 ? recording : undefined;
        },
        60_000,
        'the recording ended by the full disk',
      );
      expect([RecordingState.RECORDING_STATE_FAILED, RecordingState.RECORDING_STATE_PARTIAL]).toContain(ended.state);
      expect(ended.failureReason).toBe('the recorder ran out of disk space in its work folder');
      // Everyone was told it stopped, and nothing is left in the work folder.
      await endUser.waitForFunction(() => (window as any).room.recording?.state === 'stopped');
      expect(readdirSync(path.join(mount, 'work'))).toEqual([]);
      // The node itself is fine: it takes the next recording.
      const next: Recording = await callUnary(tinyClient, tinyClient.startRecording, { tenant: 'demo', room, requestedBy: agentId, options: undefined });
      await callUnary(tinyClient, tinyClient.stopRecording, { ...ref, recordingId: next.recordingId }, 60_000);
      await endUser.close();
      await agent.close();
    } finally {
      tinyClient.close();
      await tiny.stop();
      execFileSync('umount', [mount]);
      rmSync(mount, { recursive: true, force: true });
    }
  }, 120_000);

  it('on SIGTERM finishes and stores the recordings in progress, then exits', async () => {
    const workDir2 = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-term-'));
    const node = await startRecorderProcess({ natsUrl: stack.nats.url, workDir: workDir2 });
    const nodeClient = recorderClientAs(node.grpcAddress);
    try {
      const room = `rec-term-${Date.now()}`;
      const { endUser, agent, agentId } = await stack.call(room);
      const started: Recording = await callUnary(nodeClient, nodeClient.startRecording, { tenant: 'demo', room, requestedBy: agentId, options: undefined });
      await sleep(4_000);
      expect(await node.stop('SIGTERM', 60_000)).toBe(0);
      // Any recorder answers for it from the records in KV.
      const recording: Recording = await callUnary(stack.client, stack.client.getRecording, { tenant: 'demo', recordingId: started.recordingId, requestedBy: '' });
      expect(recording.state).toBe(RecordingState.RECORDING_STATE_PARTIAL);
      expect(recording.failureReason).toBe('the recorder stopped');
      expect(recording.artifacts.find((a) => a.contentType === 'audio/mpeg')!.durationMs).toBeGreaterThan(3_000);
      expect(readdirSync(workDir2)).toEqual([]);
      await endUser.close();
      await agent.close();
    } finally {
      nodeClient.close();
      await node.stop('SIGKILL');
      rmSync(workDir2, { recursive: true, force: true });
    }
  }, 90_000);
});
