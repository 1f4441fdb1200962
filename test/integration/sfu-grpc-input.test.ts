import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsumeRequest, MediaKind, TrackSource, TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { RecorderClient } from '@gateway/proto/gateway/recorder/v1/recorder';
import { callUnary, grpc, grpcClientCredentials } from '@gateway/common';
import { NatsServer, grpcTlsOf, startRecorderProcess, startSfuProcess, type GrpcTestIdentity } from '@gateway/testing';
import { SfuClients, dtlsParameters, outcome, rawCall } from '../support/grpcClients.js';
import { opusRtpParameters } from '../support/rtpParameters.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A string no answer may echo: refusals name the field, never what it held. */
const MARKER = 'QZXJ';

/**
 * The SFU's and the recorder's gRPC requests are checked by schema before use: a bad one is
 * INVALID_ARGUMENT (BAD_REQUEST) naming the field, never echoing its value, and mediasoup's or
 * the transport's own words never reach the caller.
 */
describe('SFU and recorder gRPC requests checked before use', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  let clients: SfuClients;
  let workDir: string;
  const room = { tenant: 'demo', room: `input-${Date.now()}` };
  let sendTransport: string;
  let recvTransport: string;
  let producerId: string;
  const signaling = () => clients.as('signaling');

  beforeAll(async () => {
    nats = await NatsServer.start();
    workDir = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-input-'));
    [sfu, recorder] = await Promise.all([startSfuProcess({ natsUrl: nats.url }), startRecorderProcess({ natsUrl: nats.url, workDir })]);
    clients = new SfuClients(`127.0.0.1:${sfu.grpcPort}`);
    await callUnary(signaling(), signaling().openRoom, { room });
    sendTransport = (await callUnary(signaling(), signaling().createWebRtcTransport, { room, participantId: 'PA_in', direction: TransportDirection.TRANSPORT_DIRECTION_SEND })).transportId;
    recvTransport = (await callUnary(signaling(), signaling().createWebRtcTransport, { room, participantId: 'PA_out', direction: TransportDirection.TRANSPORT_DIRECTION_RECV })).transportId;
    producerId = (
      await callUnary(signaling(), signaling().produce, {
        transport: { room, transportId: sendTransport },
        participantId: 'PA_in',
        kind: MediaKind.MEDIA_KIND_AUDIO,
        rtpParameters: opusRtpParameters(),
        source: TrackSource.TRACK_SOURCE_MICROPHONE,
        paused: false,
      })
    ).producerId;
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await Promise.all([sfu?.stop(), recorder?.stop()]);
    await nats?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  const refusedAs = (result: { code: string; message: string }, field: string, method: string) => {
    expect(result.code).toBe('BAD_REQUEST');
    expect(result.message.startsWith(`${method} request is invalid: ${field}`), result.message).toBe(true);
    expect(result.message).not.toContain(MARKER);
    expect(result.message.length).toBeLessThan(300);
  };

  it('refuses NaN, infinities and out-of-range numbers in RTP parameters, naming the field', async () => {
    for (const payloadType of [Number.NaN, Number.POSITIVE_INFINITY, -1, 128, 1.5]) {
      const result = await outcome(
        callUnary(signaling(), signaling().produce, {
          transport: { room, transportId: sendTransport },
          participantId: 'PA_in',
          kind: MediaKind.MEDIA_KIND_AUDIO,
          rtpParameters: { ...opusRtpParameters(3333), codecs: [{ ...opusRtpParameters().codecs[0]!, payloadType }] },
          source: TrackSource.TRACK_SOURCE_MICROPHONE,
          paused: false,
        }),
      );
      refusedAs(result, 'rtpParameters.codecs.0.payloadType', 'Produce');
    }
    // A key the sender chose is not echoed either.
    const keyed = await outcome(
      callUnary(signaling(), signaling().produce, {
        transport: { room, transportId: sendTransport },
        participantId: 'PA_in',
        kind: MediaKind.MEDIA_KIND_AUDIO,
        rtpParameters: { ...opusRtpParameters(3334), codecs: [{ ...opusRtpParameters().codecs[0]!, parameters: { [`${MARKER} secret\nline`]: 1 } }] },
        source: TrackSource.TRACK_SOURCE_MICROPHONE,
        paused: false,
      }),
    );
    refusedAs(keyed, 'rtpParameters.codecs.0.parameters', 'Produce');
  });

  it('takes what browsers send: an empty RTCP cname, full codec parameters and feedback', async () => {
    const result = await outcome(
      callUnary(signaling(), signaling().produce, {
        transport: { room, transportId: sendTransport },
        participantId: 'PA_in',
        kind: MediaKind.MEDIA_KIND_VIDEO,
        rtpParameters: {
          mid: '1',
          codecs: [
            {
              mimeType: 'video/VP8',
              payloadType: 96,
              clockRate: 90000,
              parameters: {},
              rtcpFeedback: [
                { type: 'goog-remb', parameter: '' },
                { type: 'transport-cc', parameter: '' },
                { type: 'ccm', parameter: 'fir' },
                { type: 'nack', parameter: '' },
                { type: 'nack', parameter: 'pli' },
              ],
            },
            { mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 96 }, rtcpFeedback: [] },
          ],
          headerExtensions: [{ uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4, encrypt: false, parameters: {} }],
          encodings: [
            { active: true, scalabilityMode: 'L1T3', rid: 'r0', scaleResolutionDownBy: 4, maxBitrate: 500_000 },
            { active: true, scalabilityMode: 'L1T3', rid: 'r1', scaleResolutionDownBy: 2, maxBitrate: 1_000_000 },
          ],
          rtcp: { cname: '', reducedSize: true },
        },
        source: TrackSource.TRACK_SOURCE_CAMERA,
        paused: false,
      }),
    );
    expect(result.code, result.message).toBe('OK');
  });

  it('refuses ports out of range, addresses that are not IPs, and over-long or control-laden ids', async () => {
    const recorderClient = clients.as('recorder');
    const tap = (fields: Record<string, unknown>) =>
      outcome(callUnary(recorderClient, recorderClient.createTapStream, { tap: { room, tapId: 'tap-1' }, producerId, ip: '127.0.0.1', port: 5004, rtcpPort: 0, paused: true, ...fields }));
    refusedAs(await tap({ port: 70_000 }), 'port', 'CreateTapStream');
    refusedAs(await tap({ port: 0 }), 'port', 'CreateTapStream');
    refusedAs(await tap({ rtcpPort: 65_536 }), 'rtcpPort', 'CreateTapStream');
    refusedAs(await tap({ ip: `${MARKER}.example.com` }), 'ip', 'CreateTapStream');
    refusedAs(await tap({ producerId: MARKER.repeat(30_000) }), 'producerId', 'CreateTapStream');
    refusedAs(await outcome(callUnary(signaling(), signaling().closeParticipant, { room, participantId: `PA_${MARKER}\r\nlevel=error` })), 'participantId', 'CloseParticipant');
    refusedAs(await outcome(callUnary(signaling(), signaling().openRoom, { room: { tenant: `${MARKER}.>`, room: 'r' } })), 'room.tenant', 'OpenRoom');
    refusedAs(
      await outcome(callUnary(signaling(), signaling().setPreferredLayers, { consumer: { room, consumerId: 'CO_1' }, spatialLayer: 2 ** 31, temporalLayer: undefined })),
      'spatialLayer',
      'SetPreferredLayers',
    );
  });

  it('refuses JSON objects nested too deep or too large before mediasoup sees them', async () => {
    const nested = (levels: number) => {
      let deep: unknown = { mimeType: MARKER };
      for (let i = 0; i < levels; i++) deep = { nested: deep };
      return deep;
    };
    const consumeWith = (rtpCapabilities: Record<string, unknown>) =>
      outcome(callUnary(signaling(), signaling().consume, { transport: { room, transportId: recvTransport }, producerId, rtpCapabilities }));
    const tooDeep = await consumeWith({ codecs: [nested(20)] });
    refusedAs(tooDeep, 'rtpCapabilities', 'Consume');
    expect(tooDeep.message).toMatch(/nested deeper/);
    // Deeper than the protobuf decoder goes: the request does not decode, and says so.
    const deeper = await consumeWith({ codecs: [nested(500)] });
    expect(deeper).toMatchObject({ code: 'MALFORMED_MESSAGE', message: 'the request does not decode' });
    refusedAs(await consumeWith({ codecs: Array.from({ length: 20_000 }, () => MARKER) }), 'rtpCapabilities', 'Consume');
  });

  it("answers a request whose bytes do not decode with INVALID_ARGUMENT (a Struct nested past any decoder's stack)", async () => {
    // google.protobuf.Value { list_value { values: Value { list_value { ... } } } }, built inside out.
    let value = Buffer.alloc(0);
    const withLength = (tag: number, body: Buffer) => {
      const length: number[] = [];
      for (let n = body.length; ; n >>>= 7) {
        if (n < 0x80) {
          length.push(n);
          break;
        }
        length.push((n & 0x7f) | 0x80);
      }
      return Buffer.concat([Buffer.from([tag, ...length]), body]);
    };
    for (let i = 0; i < 25_000; i++) value = withLength(0x32, withLength(0x0a, value));
    const struct = withLength(0x0a, Buffer.concat([withLength(0x0a, Buffer.from('codecs')), withLength(0x12, value)]));
    const head = Buffer.from(ConsumeRequest.encode({ transport: { room, transportId: recvTransport }, producerId, rtpCapabilities: undefined }).finish());
    const error = await rawCall(signaling(), 'Consume', Buffer.concat([head, withLength(0x1a, struct)]));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const garbage = await rawCall(signaling(), 'Produce', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    expect(garbage?.code).toBe(grpc.status.INVALID_ARGUMENT);
    // The node is unharmed.
    expect((await callUnary(signaling(), signaling().getNodeInfo, {})).nodeId).toBe(sfu.nodeId);
  });

  it("keeps mediasoup's own words from the caller", async () => {
    const connect = () => outcome(callUnary(signaling(), signaling().connectTransport, { transport: { room, transportId: recvTransport }, dtlsParameters }));
    expect((await connect()).code).toBe('OK');
    // mediasoup refuses a second connect with its own text; the caller gets ours.
    const again = await connect();
    expect(again.code).toBe('BAD_REQUEST');
    expect(again.message).toBe('the transport refused the DTLS parameters (or is connected already)');
    // A codec the router does not have: mediasoup explains with its tables; the caller does not see them.
    const produced = await outcome(
      callUnary(signaling(), signaling().produce, {
        transport: { room, transportId: sendTransport },
        participantId: 'PA_in',
        kind: MediaKind.MEDIA_KIND_AUDIO,
        rtpParameters: { codecs: [{ mimeType: 'audio/x-unknown', payloadType: 100, clockRate: 8000 }], encodings: [{ ssrc: 4444 }] },
        source: TrackSource.TRACK_SOURCE_MICROPHONE,
        paused: false,
      }),
    );
    expect(produced.code).toBe('BAD_REQUEST');
    expect(produced.message).not.toMatch(/mediasoup|x-unknown|\[method:|Error/i);
  });

  it("checks the recorder's requests too, and lets only signaling call it", async () => {
    const recorderAs = (identity: GrpcTestIdentity) => {
      const { credentials, options } = grpcClientCredentials(grpcTlsOf(identity), 'recorder');
      return new RecorderClient(recorder.grpcAddress, credentials, options);
    };
    const fromSignaling = recorderAs('signaling');
    const fromSfu = recorderAs('sfu');
    try {
      const bad = await outcome(callUnary(fromSignaling, fromSignaling.startRecording, { tenant: `demo ${MARKER}`, room: room.room, requestedBy: '', options: undefined }));
      refusedAs(bad, 'tenant', 'StartRecording');
      const badId = await outcome(callUnary(fromSignaling, fromSignaling.getRecording, { tenant: 'demo', recordingId: `RC_${MARKER}/../x`, requestedBy: '' }));
      refusedAs(badId, 'recordingId', 'GetRecording');
      // A well-formed request from signaling gets an answer about the recording; from an SFU, nothing.
      expect((await outcome(callUnary(fromSignaling, fromSignaling.getRecording, { tenant: 'demo', recordingId: 'RC_none', requestedBy: '' }))).code).toBe('NOT_FOUND');
      expect((await outcome(callUnary(fromSfu, fromSfu.getRecording, { tenant: 'demo', recordingId: 'RC_none', requestedBy: '' }))).code).toBe('PERMISSION_DENIED');
      expect((await outcome(callUnary(fromSfu, fromSfu.startRecording, { tenant: 'demo', room: room.room, requestedBy: '', options: undefined }))).code).toBe('PERMISSION_DENIED');
    } finally {
      fromSignaling.close();
      fromSfu.close();
    }
  });
});
