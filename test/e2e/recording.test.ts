import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { RecordingReady } from '@gateway/proto/gateway/events/v1/events';
import { RecordingJobRecord, RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, buckets, callUnary, kvKeys, openBucket, readSubject, streams, subjects, type WebhookEvent, webhookEventSchema } from '@gateway/common';
import { startRecorderProcess, waitFor } from '@gateway/testing';
import { launchChromium } from '../support/browser.js';
import { recorderClientAs } from '../support/grpcClients.js';
import { demoToken } from '../support/tokens.js';
import { scrapeMetrics, sumOf } from '../support/metrics.js';
import { RecordingStack, meanVolumeDb, probe } from '../support/recording.js';

/**
 * A call in Chromium recorded for about 10 s with a PCI pause in the middle: the files are
 * checked with ffprobe, the paused interval must be silent, the artifacts open only with the
 * tenant's key, and the Object Store holds no plaintext media. Then the tenant's policy (MP4,
 * pauses cut, files in parts) and the sync of voice and camera. recording-failures.test.ts
 * shows what becomes of a recording when its capture, its node or its disk fails.
 */
describe('recording a call', () => {
  const stack = new RecordingStack();
  beforeAll(() => stack.start(), 90_000);
  afterAll(() => stack.stop());

  it('refuses a room that is not live', async () => {
    await expect(callUnary(stack.client, stack.client.startRecording, { tenant: 'demo', room: 'nobody-here', requestedBy: 'x', options: undefined })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('records voice in stereo, cameras and the screen share, with a silent PCI pause, encrypted at rest', async () => {
    const room = `rec-${Date.now()}`;
    const { endUser, agent, agentId } = await stack.call(room);
    const started: Recording = await callUnary(stack.client, stack.client.startRecording, { tenant: 'demo', room, requestedBy: agentId, options: undefined });
    expect(started.state).toBe(RecordingState.RECORDING_STATE_RECORDING);
    const at = () => (Date.now() - started.startedAtMs) / 1000;
    const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: agentId };
    // Another tenant cannot touch it, nor record the room under its own name.
    await expect(callUnary(stack.client, stack.client.pauseRecording, { ...ref, tenant: 'globex' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(callUnary(stack.client, stack.client.getRecording, { ...ref, tenant: 'globex' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(callUnary(stack.client, stack.client.startRecording, { tenant: 'globex', room, requestedBy: 'x', options: undefined })).rejects.toMatchObject({ code: 'NOT_FOUND' });

    // Producers that appear mid-call are recorded too.
    await sleep(2_000);
    await endUser.evaluate(() => (window as any).room.publish({ screen: true }));
    await agent.evaluate(() => (window as any).room.publish({ camera: true }));
    await sleep(3_000);
    // What the SFU sends to recorders (it samples its streams every 5 s).
    const tapPackets = async (kind?: 'audio' | 'video') => sumOf(await scrapeMetrics(stack.sfu.opsPort), 'gateway_sfu_tap_rtp_packets_total', kind ? { kind } : {});
    // A pause longer than the 10 s after which ffmpeg gives up on a silent RTP input by default.
    expect((await callUnary<typeof ref, Recording>(stack.client, stack.client.pauseRecording, ref)).state).toBe(RecordingState.RECORDING_STATE_PAUSED);
    const pauseAnsweredS = at();
    // PCI: nothing of the room's media reaches the recorder while paused. The assembly mutes a
    // pause anyway, so the files cannot show it: the SFU's count of packets sent to recorders
    // stays put across two of its samples.
    await sleep(6_000);
    const packetsInPause = await tapPackets();
    await sleep(6_000);
    expect(await tapPackets(), 'packets sent to the recorder during the pause').toBe(packetsInPause);
    expect((await callUnary<typeof ref, Recording>(stack.client, stack.client.resumeRecording, ref)).state).toBe(RecordingState.RECORDING_STATE_RECORDING);
    // The count does move when media is sent, voice and video: its standing still above meant something.
    const [audioInPause, videoInPause] = [await tapPackets('audio'), await tapPackets('video')];
    await waitFor(async () => (await tapPackets('audio')) > audioInPause && (await tapPackets('video')) > videoInPause, 15_000, 'packets sent to the recorder again after the resume');
    // Nor does any stored segment reach into the pause (segments are stamped with the wall clock):
    // the captures before it end by the time the pause was answered, those after begin after it.
    const job = RecordingJobRecord.decode((await (await openBucket(stack.nc, buckets.recordings)).get(kvKeys.recording('demo', started.recordingId)))!.value);
    const paused = job.recording!.pauses[0]!;
    const segments = job.segments.map((g) => ({
      kind: job.streams.find((t) => t.streamId === g.streamId)?.kind,
      from: g.startS - started.startedAtMs / 1000,
      to: g.endS - started.startedAtMs / 1000,
    }));
    expect(new Set(segments.map((g) => g.kind))).toEqual(new Set(['audio', 'video']));
    const slackS = 0.25;
    for (const g of segments) {
      const clear = g.to <= pauseAnsweredS + slackS || g.from >= paused.endMs / 1000 - slackS;
      expect(clear, `a ${g.kind} segment ${g.from.toFixed(2)}-${g.to.toFixed(2)} s against the pause ${paused.startMs / 1000}-${paused.endMs / 1000} s`).toBe(true);
    }
    // (Segments were stored before it: the check has something to check.)
    expect(segments.some((g) => g.to <= pauseAnsweredS + slackS)).toBe(true);
    // Every stream, the two that appeared mid-call too, is stored again after the resume. (A
    // capture writes nothing until it has seen a key frame of each video: on a loaded machine the
    // one started when the screen share appeared may not have got that far before the pause.)
    const resumedAtS = started.startedAtMs / 1000 + paused.endMs / 1000;
    await waitFor(
      async () => {
        const now = RecordingJobRecord.decode((await (await openBucket(stack.nc, buckets.recordings)).get(kvKeys.recording('demo', started.recordingId)))!.value);
        return now.streams.length === 5 && now.streams.every((t) => now.segments.some((g) => g.streamId === t.streamId && g.startS >= resumedAtS - slackS));
      },
      30_000,
      'a segment of every stream after the resume',
    );
    // Three seconds of both voices after the resume at least, measured below with half a second
    // of margin at each edge.
    await sleep(Math.max(0, paused.endMs / 1000 + 3 - at()) * 1000);
    // The agent's microphone goes: from then on the right channel is silent, the left is not.
    await agent.evaluate(() => (window as any).room.unpublish('microphone'));
    const agentMutedAt = at();
    await sleep(3_000);
    const done: Recording = await callUnary(stack.client, stack.client.stopRecording, ref, 60_000);
    expect(done.state, done.failureReason).toBe(RecordingState.RECORDING_STATE_COMPLETE);
    expect(done.pauses).toHaveLength(1);
    const pause = done.pauses[0]!;
    expect(pause.pausedBy).toBe(agentId);
    expect(pause.endMs - pause.startMs).toBeGreaterThan(11_500);

    const kinds = done.artifacts.map((a) => `${a.kind}:${a.contentType}`).sort();
    expect(kinds).toEqual(['camera:video/webm', 'camera:video/webm', 'screen:video/webm', 'voice:audio/mpeg', 'voice:audio/webm']);

    // The artifacts open with the tenant's key and are what they claim.
    const store = await ArtifactStore.open(stack.nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
    const files: Record<string, string> = {};
    for (const artifact of done.artifacts) {
      const { data } = await store.get('demo', artifact.artifactId);
      const file = path.join(stack.outDir, `${artifact.kind}-${artifact.participantId || 'mix'}.${artifact.contentType.split('/')[1]}`);
      writeFileSync(file, data);
      files[`${artifact.kind}:${artifact.contentType}`] ??= file;
    }
    const total = (done.endedAtMs - done.startedAtMs) / 1000;
    for (const kind of ['voice:audio/mpeg', 'voice:audio/webm']) {
      expect(Math.abs(done.artifacts.find((a) => `${a.kind}:${a.contentType}` === kind)!.durationMs / 1000 - total), kind).toBeLessThan(1);
    }
    const mp3 = probe(files['voice:audio/mpeg']!);
    expect(mp3.streams[0]).toMatchObject({ codec_name: 'mp3', channels: 2 });
    const opus = probe(files['voice:audio/webm']!);
    expect(opus.streams[0]).toMatchObject({ codec_name: 'opus', channels: 2 });
    expect(probe(files['camera:video/webm']!).streams[0]).toMatchObject({ codec_name: 'vp8' });
    expect(probe(files['screen:video/webm']!).streams[0]).toMatchObject({ codec_name: 'vp8' });

    // Chromium's fake microphone beeps (about -21 dB on average); decoded silence is digital
    // zero (-91 dB, the floor of 16-bit audio), so -60 dB separates the two with margin either
    // way. Half a second of margin at each edge covers the tap's latency.
    const voice = files['voice:audio/mpeg']!;
    const [pausedFrom, pausedTo] = [pause.startMs / 1000, pause.endMs / 1000];
    const level = (from: number, to: number, channel: 0 | 1) => meanVolumeDb(voice, from + 0.5, to - 0.5, channel);
    for (const channel of [0, 1] as const) {
      expect(level(0, 2, channel), `channel ${channel} at the start`).toBeGreaterThan(-50);
      expect(level(pausedFrom, pausedTo, channel), `channel ${channel} during the pause`).toBeLessThan(-60);
      expect(level(pausedTo, agentMutedAt, channel), `channel ${channel} after the pause`).toBeGreaterThan(-50);
    }
    expect(level(agentMutedAt + 0.5, total, 0), 'the end user (left) after the agent muted').toBeGreaterThan(-50);
    expect(level(agentMutedAt + 0.5, total, 1), 'the agent (right) after muting').toBeLessThan(-60);

    // With a wrong key nothing opens.
    const wrong = await ArtifactStore.open(stack.nc, new StaticKeyring({ demo: Buffer.alloc(32, 7).toString('base64') }));
    await expect(wrong.get('demo', done.artifacts[0]!.artifactId)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });

    // No plaintext media anywhere in the Object Store, and the segments are gone.
    const objects = await new Objm(stack.nc).open(buckets.artifacts);
    const stored = await objects.list();
    expect(stored.map((o) => o.name).sort()).toEqual(done.artifacts.map((a) => `demo.${a.artifactId}`).sort());
    expect((await (await new Objm(stack.nc).open(buckets.recordingSegments)).list()).filter((o) => !o.deleted)).toEqual([]);
    // Markers of plaintext media, and the first 32 bytes of each decrypted file. (Ciphertext is
    // random: a marker of 3 bytes, ID3's, turns up in a few MB about one time in three; 32 never.)
    const heads = Object.values(files).map((file) => readFileSync(file).subarray(0, 32));
    const signatures = [Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), Buffer.from('OpusHead'), Buffer.from('LAME3'), ...heads];
    for (const info of stored) {
      const raw = Buffer.from((await objects.getBlob(info.name))!);
      for (const signature of signatures) expect(raw.includes(signature), `${info.name} contains ${signature.toString('hex')}`).toBe(false);
    }
    // Nothing of the job is left in the work folder.
    expect(readdirSync(stack.workDir)).toEqual([]);

    // recording.ready is on the stream for crm-sync.
    const consumer = await jetstream(stack.nc).consumers.get(streams.recordings.name);
    const message = await consumer.next({ expires: 5_000 });
    const ready = RecordingReady.decode(message!.data);
    expect(ready.recording?.recordingId).toBe(done.recordingId);
    expect(ready.contacts.map((c) => c.role).sort()).toEqual(['agent', 'end_user']);
    // And the tenant's backend hears of it by webhook (docs/webhooks.md): the event is on the webhooks stream.
    let announced: WebhookEvent | undefined;
    for await (const message of readSubject(jetstream(stack.nc), await jetstreamManager(stack.nc), streams.webhooks.name, subjects.webhookEvent('demo'))) {
      const event = webhookEventSchema.parse(JSON.parse(new TextDecoder().decode(message.data)));
      if (event.type === 'recording.ready') announced = event;
    }
    expect(announced?.data).toEqual({
      room: { name: expect.any(String) },
      recording: { recordingId: done.recordingId, state: 'complete', startedAtMs: expect.any(Number), endedAtMs: expect.any(Number), artifacts: done.artifacts.length },
    });
    // The node's metrics account for the job: its state and the CPU its capture used.
    const metrics = await scrapeMetrics(stack.recorder.opsPort);
    expect(sumOf(metrics, 'gateway_recorder_jobs_ended_total', { state: 'RECORDING_STATE_COMPLETE' })).toBeGreaterThanOrEqual(1);
    expect(sumOf(metrics, 'gateway_recorder_job_cpu_seconds_sum')).toBeGreaterThan(0);
    await endUser.close();
    await agent.close();
  }, 120_000);

  it('applies the tenant policy: MP4 with the voice, PCI pauses cut from the voice, large files in ordered parts', async () => {
    const partBytes = 100_000;
    const small = await startRecorderProcess({ natsUrl: stack.nats.url, workDir: mkdtempSync(path.join(tmpdir(), 'gateway-recorder-parts-')), env: { RECORDER_MAX_PART_BYTES: String(partBytes) } });
    const smallClient = recorderClientAs(small.grpcAddress);
    try {
      const room = `rec-policy-${Date.now()}`;
      const { endUser, agent, agentId } = await stack.call(room);
      const options = { transcodeMp4: true, skipPausedAudio: true };
      const started: Recording = await callUnary(smallClient, smallClient.startRecording, { tenant: 'demo', room, requestedBy: agentId, options });
      const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: agentId };
      await sleep(3_000);
      await callUnary(smallClient, smallClient.pauseRecording, ref);
      await sleep(3_000);
      await callUnary(smallClient, smallClient.resumeRecording, ref);
      await sleep(3_000);
      const done: Recording = await callUnary(smallClient, smallClient.stopRecording, ref, 60_000);
      expect(done.state, done.failureReason).toBe(RecordingState.RECORDING_STATE_COMPLETE);
      const store = await ArtifactStore.open(stack.nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
      const fileOf = async (kind: string, contentType: string, participantId?: string) => {
        const parts = done.artifacts
          .filter((a) => a.kind === kind && a.contentType === contentType && (participantId === undefined || a.participantId === participantId))
          .sort((a, b) => a.part - b.part);
        const file = path.join(stack.outDir, `policy-${kind}-${parts[0]?.participantId || 'mix'}.${contentType.split('/')[1]}`);
        writeFileSync(file, Buffer.concat(await Promise.all(parts.map(async (p) => (await store.get('demo', p.artifactId)).data))));
        return { file, parts };
      };
      const total = (done.endedAtMs - done.startedAtMs) / 1000;
      const paused = (done.pauses[0]!.endMs - done.pauses[0]!.startMs) / 1000;
      // The pause is cut out of the voice.
      const voice = await fileOf('voice', 'audio/mpeg');
      expect(Number(probe(voice.file).format.duration)).toBeCloseTo(total - paused, 0);
      // The end user's camera is larger than a part: it comes in ordered parts that concatenate back into it.
      const endUserId = await endUser.evaluate(() => (window as any).room.localParticipant.id as string);
      const camera = await fileOf('camera', 'video/webm', endUserId);
      expect(camera.parts.length).toBeGreaterThan(1);
      expect(camera.parts.map((p) => p.part)).toEqual(camera.parts.map((_, i) => i + 1));
      for (const part of camera.parts) expect(part.sizeBytes).toBeLessThanOrEqual(partBytes);
      expect(probe(camera.file).streams[0]).toMatchObject({ codec_name: 'vp8' });
      // And as MP4: H.264 with the voice as AAC.
      const mp4 = await fileOf('camera', 'video/mp4', endUserId);
      const codecs = probe(mp4.file)
        .streams.map((st) => st.codec_name)
        .sort();
      expect(codecs).toEqual(['aac', 'h264']);
      await endUser.close();
      await agent.close();
    } finally {
      smallClient.close();
      await small.stop();
    }
  }, 120_000);

  it('keeps voice and camera in sync: a flash and a beep sent together land within 100 ms', async () => {
    // A clip with a sync mark every 2 s: a white frame burst and a 1 kHz beep, both 100 ms long.
    const clipDir = mkdtempSync(path.join(tmpdir(), 'gateway-sync-clip-'));
    const video = path.join(clipDir, 'sync.y4m');
    const audio = path.join(clipDir, 'sync.wav');
    execFileSync('ffmpeg', [
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      "color=black:s=640x360:r=30,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='lt(mod(t,2),0.1)'",
      '-t',
      '10',
      '-pix_fmt',
      'yuv420p',
      '-y',
      video,
    ]);
    execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', "sine=f=1000:r=48000,volume=volume=0:enable='gte(mod(t,2),0.1)'", '-t', '10', '-y', audio]);
    const syncBrowser = await launchChromium([`--use-file-for-fake-video-capture=${video}`, `--use-file-for-fake-audio-capture=${audio}`]);
    try {
      const room = `rec-sync-${Date.now()}`;
      const endUser = await syncBrowser.newPage();
      await endUser.goto(`${stack.signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
      await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
      await sleep(1_000);
      const started: Recording = await callUnary(stack.client, stack.client.startRecording, { tenant: 'demo', room, requestedBy: 'test', options: undefined });
      await sleep(9_000);
      const done: Recording = await callUnary(stack.client, stack.client.stopRecording, { tenant: 'demo', recordingId: started.recordingId, requestedBy: 'test' }, 60_000);
      expect(done.state, done.failureReason).toBe(RecordingState.RECORDING_STATE_COMPLETE);
      const store = await ArtifactStore.open(stack.nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
      const save = async (contentType: string, name: string) => {
        const file = path.join(stack.outDir, name);
        writeFileSync(file, (await store.get('demo', done.artifacts.find((a) => a.contentType === contentType)!.artifactId)).data);
        return file;
      };
      const [voiceFile, cameraFile] = [await save('audio/mpeg', 'sync.mp3'), await save('video/webm', 'sync.webm')];
      // Both files are on the recording's timeline (-copyts keeps their own timestamps).
      const flashes: number[] = [];
      const frames = spawnSync('ffmpeg', ['-hide_banner', '-copyts', '-i', cameraFile, '-vf', 'signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-', '-f', 'null', '-'], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      }).stdout;
      let bright = false;
      let time = 0;
      for (const line of frames.split('\n')) {
        const t = /pts_time:([\d.]+)/.exec(line);
        if (t) time = Number(t[1]);
        const y = /YAVG=([\d.]+)/.exec(line);
        if (y) {
          const now = Number(y[1]) > 128;
          if (now && !bright) flashes.push(time);
          bright = now;
        }
      }
      const beeps = [
        ...spawnSync('ffmpeg', ['-hide_banner', '-copyts', '-i', voiceFile, '-af', 'pan=mono|c0=c0,silencedetect=n=-40dB:d=0.05', '-f', 'null', '-'], { encoding: 'utf8' }).stderr.matchAll(
          /silence_end: ([\d.]+)/g,
        ),
      ].map((m) => Number(m[1]));
      expect(flashes.length, 'flashes seen').toBeGreaterThanOrEqual(3);
      expect(beeps.length, 'beeps heard').toBeGreaterThanOrEqual(3);
      const offsets = flashes.map((f) => beeps.reduce((best, b) => (Math.abs(b - f) < Math.abs(best) ? b - f : best), Infinity));
      const median = [...offsets].sort((a, b) => a - b)[Math.floor(offsets.length / 2)]!;
      console.log(`audio-video offset per sync mark (s, audio minus video): ${offsets.map((o) => o.toFixed(3)).join(' ')}`);
      expect(Math.abs(median)).toBeLessThan(0.1);
    } finally {
      await syncBrowser.close();
      rmSync(clipDir, { recursive: true, force: true });
    }
  }, 120_000);
});
