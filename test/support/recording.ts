import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser } from 'playwright-core';
import type { NatsConnection } from '@nats-io/transport-node';
import type { RecorderClient } from '@gateway/proto/gateway/recorder/v1/recorder';
import { NatsServer, allStarted, startRecorderProcess, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { launchChromium, loadToJoin } from './browser.js';
import { recorderClientAs } from './grpcClients.js';
import { demoToken } from './tokens.js';

/** Mean volume (dB) of an audio file between two times, from ffmpeg's volumedetect. */
export function meanVolumeDb(file: string, fromS: number, toS: number, channel: 0 | 1): number {
  const result = spawnSync('ffmpeg', ['-hide_banner', '-nostats', '-ss', String(fromS), '-to', String(toS), '-i', file, '-af', `pan=mono|c0=c${channel},volumedetect`, '-f', 'null', '-'], {
    encoding: 'utf8',
  });
  const match = /mean_volume: (-?[\d.]+|-inf) dB/.exec(result.stderr);
  if (!match) throw new Error(`no volume measured: ${result.stderr.slice(-500)}`);
  return match[1] === '-inf' ? -Infinity : Number(match[1]);
}

export function probe(file: string): { streams: Array<Record<string, any>>; format: Record<string, any> } {
  return JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file], { encoding: 'utf8' }));
}

/**
 * What the recording tests (test/e2e/recording*.test.ts) run against: nats-server, an SFU,
 * signaling and a recorder (2 s segments, its private work folder in `workDir`) with a gRPC
 * client, Chromium, and `outDir` for the files taken out of the store. `start()` in a beforeAll,
 * `stop()` in the afterAll stops whatever started. A test that kills the recorder puts the next
 * one in `recorder` and its client in `client`.
 */
export class RecordingStack {
  nats!: NatsServer;
  nc!: NatsConnection;
  sfu!: Awaited<ReturnType<typeof startSfuProcess>>;
  signaling!: Awaited<ReturnType<typeof startSignalingProcess>>;
  recorder!: Awaited<ReturnType<typeof startRecorderProcess>>;
  client!: RecorderClient;
  browser!: Browser;
  readonly workDir = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-test-'));
  readonly outDir = mkdtempSync(path.join(tmpdir(), 'gateway-recording-out-'));

  async start(): Promise<void> {
    this.nats = await NatsServer.start();
    this.nc = await this.nats.connect();
    // Side by side (see allStarted); each is kept as it comes, so that stop() stops whatever started.
    const url = this.nats.url;
    await allStarted([
      startSfuProcess({ natsUrl: url }).then((p) => (this.sfu = p)),
      startSignalingProcess({ natsUrl: url }).then((p) => (this.signaling = p)),
      startRecorderProcess({ natsUrl: url, workDir: this.workDir, env: { RECORDER_SEGMENT_SECONDS: '2' } }).then((p) => (this.recorder = p)),
      launchChromium().then((b) => (this.browser = b)),
    ]);
    this.client = recorderClientAs(this.recorder.grpcAddress);
  }

  async stop(): Promise<void> {
    if (process.env.PRINT_SERVICE_LOGS) console.log(this.recorder?.logs.slice(-6000));
    this.client?.close();
    await this.browser?.close();
    await this.recorder?.stop();
    await this.signaling?.stop();
    await this.sfu?.stop();
    await this.nc?.close();
    await this.nats?.stop();
    rmSync(this.workDir, { recursive: true, force: true });
    rmSync(this.outDir, { recursive: true, force: true });
  }

  /** Joins an end user (camera, microphone) and an agent (microphone) to a new room. */
  async call(room: string) {
    const endUser = await this.browser.newPage();
    const agent = await this.browser.newPage();
    // The agent's page loads while the end user joins; it joins once the end user publishes.
    const joinAgent = loadToJoin(agent, `${this.signaling.url}/agent#token=${await demoToken({ room, identity: 'agent-1', role: 'agent' })}`);
    await endUser.goto(`${this.signaling.url}/end-user#token=${await demoToken({ room, identity: 'customer-1', role: 'end_user' })}&autojoin=1`);
    await endUser.waitForFunction(() => (window as any).room?.localTracks.size >= 2);
    await joinAgent();
    await agent.waitForFunction(() => (window as any).room?.localTracks.size >= 1);
    const agentId = await agent.evaluate(() => (window as any).room.localParticipant.id as string);
    await sleep(1_000);
    return { endUser, agent, agentId };
  }
}
