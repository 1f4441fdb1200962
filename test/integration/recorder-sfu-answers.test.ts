import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { MediaKind, NodeInfo, SfuService, TrackSource } from '@gateway/proto/gateway/sfu/v1/sfu';
import type { Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import { buckets, callUnary, grpc, grpcServerCredentials, kvKeys, openBucket, startGrpcServer, stopGrpcServer } from '@gateway/common';
import { NatsServer, grpcTlsOf, startRecorderProcess, waitFor } from '@gateway/testing';
import { outcome, recorderClientAs } from '../support/grpcClients.js';

/**
 * What the recorder's SFU client receives is input too: the producer ids of ListProducers
 * become file names and ffmpeg segment patterns, the codec of CreateTapStream lines of the SDP
 * ffmpeg reads. An SFU (here one that answers what it likes, with a real SFU certificate) that
 * answers ids with path parts or codec parameters with line breaks gets the recording refused,
 * and nothing is written outside the recorder's work folder. A tap the SFU fails to close is
 * asked for again until it is.
 */
describe('the recorder checks what an SFU answers', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let base: string;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let fakeSfu: { server: grpc.Server; port: number };
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let producerId = '';
  let codecParameters: Record<string, unknown> = {};
  /** CloseTap calls by tap id; the first `closeTapFailures` of each fail. */
  const closeTapCalls = new Map<string, number>();
  let closeTapFailures = 0;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    base = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-answers-'));
    const implementation: grpc.UntypedServiceImplementation = Object.fromEntries(
      Object.keys(SfuService).map((m) => [m, (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, {})]),
    );
    const producer = () => ({ producerId, participantId: 'PA_speaker', kind: MediaKind.MEDIA_KIND_AUDIO, source: TrackSource.TRACK_SOURCE_MICROPHONE, paused: false });
    implementation.listProducers = (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { producers: [producer()] });
    implementation.closeTap = (call: { request: { tapId: string } }, callback: grpc.sendUnaryData<unknown>) => {
      const calls = (closeTapCalls.get(call.request.tapId) ?? 0) + 1;
      closeTapCalls.set(call.request.tapId, calls);
      if (calls <= closeTapFailures) callback({ code: grpc.status.UNAVAILABLE, details: 'injected', message: 'injected', name: 'Error', metadata: new grpc.Metadata() });
      else callback(null, {});
    };
    implementation.createTapStream = (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback(null, {
        consumerId: 'CO_1',
        producer: producer(),
        rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2, parameters: codecParameters }] },
      });
    fakeSfu = await startGrpcServer((s) => s.addService(SfuService, implementation), '127.0.0.1', 0, grpcServerCredentials(grpcTlsOf('sfu')));
    const sfuNodes = await openBucket(nc, buckets.sfuNodes);
    // The fake SFU heartbeats as a real one does: a record older than the registry's staleness
    // rule (10 s) no longer counts, and a loaded machine can take that long to start a recorder.
    const heartbeat = () =>
      sfuNodes.put(
        'sfu-answers',
        NodeInfo.encode(NodeInfo.create({ nodeId: 'sfu-answers', grpcAddress: `127.0.0.1:${fakeSfu.port}`, pipeIp: '127.0.0.1', updatedAtMs: Date.now(), version: '1' })).finish(),
      );
    await heartbeat();
    heartbeatTimer = setInterval(() => void heartbeat().catch(() => undefined), 2_000);
    const placement = await openBucket(nc, buckets.roomPlacement);
    for (const room of ['room-path', 'room-sdp', 'room-pause']) await placement.put(kvKeys.room('demo', room), 'sfu-answers');
    recorder = await startRecorderProcess({ natsUrl: nats.url, workDir: path.join(base, 'work', 'jobs') });
  }, 60_000);

  afterAll(async () => {
    clearInterval(heartbeatTimer);
    await recorder?.stop();
    if (fakeSfu) await stopGrpcServer(fakeSfu.server);
    await nc?.close();
    await nats?.stop();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  // What the fake SFU answers is set by each test; a failing CloseTap only where a test asks for it.
  beforeEach(() => {
    closeTapFailures = 0;
    closeTapCalls.clear();
  });

  const start = async (room: string) => {
    const client = recorderClientAs(recorder.grpcAddress);
    try {
      return await outcome(callUnary(client, client.startRecording, { tenant: 'demo', room, requestedBy: '', options: undefined }, 20_000));
    } finally {
      client.close();
    }
  };

  it('refuses producer ids that would be paths or ffmpeg patterns', async () => {
    producerId = '../../../escaped%d';
    codecParameters = {};
    const result = await start('room-path');
    expect(result.code).toBe('UNAVAILABLE');
    expect(result.message).toMatch(/^the SFU's producer list is invalid: 0\.producerId/);
    const everything = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String);
    expect(everything(base).filter((name) => name.includes('escaped'))).toEqual([]);
  });

  it('refuses codec parameters that would add lines to the SDP', async () => {
    producerId = 'PR_fine';
    codecParameters = { 'sprop-stereo': '1\r\na=rtpmap:100 evil/1' };
    const result = await start('room-sdp');
    expect(result.code).toBe('UNAVAILABLE');
    expect(result.message).toMatch(/^the SFU's tap is invalid: rtpParameters\.codecs\.0\.parameters/);
  });

  it('asks again until the SFU has closed a paused recording\u2019s tap: until then the room\u2019s media may still be sent', async () => {
    producerId = 'PR_fine';
    codecParameters = {};
    closeTapFailures = 3;
    const client = recorderClientAs(recorder.grpcAddress);
    try {
      const started: Recording = await callUnary(client, client.startRecording, { tenant: 'demo', room: 'room-pause', requestedBy: '', options: undefined }, 20_000);
      const ref = { tenant: 'demo', recordingId: started.recordingId, requestedBy: '' };
      await callUnary(client, client.pauseRecording, ref, 20_000);
      const tapId = `${started.recordingId}-c1`;
      // The SFU refused three times; the fourth request closed it, and then no more were made.
      await waitFor(() => closeTapCalls.get(tapId) === closeTapFailures + 1, 10_000, 'the tap closed at the SFU');
      // The recorder asks again every second for a tap the SFU did not close: two seconds and a
      // half would see at least two more requests if it went on after the close.
      await new Promise((r) => setTimeout(r, 2_500));
      expect(closeTapCalls.get(tapId)).toBe(closeTapFailures + 1);
      await callUnary(client, client.stopRecording, ref, 30_000);
    } finally {
      client.close();
    }
  }, 60_000);
});
