import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SfuClient, TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary, grpc, grpcClientCredentials } from '@gateway/common';
import { NatsServer, createTestPki, grpcTlsEnv, grpcTlsOf, startRecorderProcess, startSfuProcess, startSignalingProcess, type GrpcTestIdentity, type TestPki } from '@gateway/testing';
import { TestClient } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { outcome, recorderClientAs } from '../support/grpcClients.js';
import { opusRtpParameters } from '../support/rtpParameters.js';

/**
 * gRPC between the services with a certificate per service: signaling reaches the SFU and the
 * recorder, the recorder reaches the SFU, each client checking the name of the service it
 * dials, each server checking who calls which method. A peer without our CA's certificate gets
 * no connection; one with our CA's certificate for another service (or none of ours) gets
 * PERMISSION_DENIED where its name is not in the method's entry, and nothing happens.
 */
describe('gRPC between services with identities', () => {
  let pki: TestPki;
  let nats: NatsServer;
  let workDir: string;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let recorder: Awaited<ReturnType<typeof startRecorderProcess>>;
  const clients: Array<{ close(): void }> = [];
  const sfuAs = (identity: GrpcTestIdentity) => {
    const { credentials, options } = grpcClientCredentials(grpcTlsOf(identity, pki), 'sfu');
    const client = new SfuClient(`127.0.0.1:${sfu.grpcPort}`, credentials, options);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    // Certificates of their own (not the helpers' shared ones), so this test shows exactly what each service holds.
    pki = createTestPki();
    workDir = mkdtempSync(path.join(tmpdir(), 'gateway-recorder-tls-'));
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url, env: grpcTlsEnv('sfu', pki) });
    [signaling, recorder] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: grpcTlsEnv('signaling', pki) }),
      startRecorderProcess({ natsUrl: nats.url, workDir, env: grpcTlsEnv('recorder', pki) }),
    ]);
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all([signaling?.stop(), recorder?.stop()]);
    await sfu?.stop();
    await nats?.stop();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('joins, negotiates and records through the channels: signaling to the SFU and the recorder, the recorder to the SFU', async () => {
    const room = `tls-${Date.now()}`;
    const customer = await TestClient.open(signaling.wsUrl);
    const agent = await TestClient.open(signaling.wsUrl);
    clients.push(customer, agent);
    expect((await customer.request('join', { token: await demoToken({ room, identity: 'customer', role: 'end_user' }) })).error).toBeUndefined();
    const send = (await customer.request('createTransport', { direction: 'send' })).createTransport;
    expect(send.transportId).toBeTruthy();
    expect((await customer.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).error).toBeUndefined();
    expect((await agent.request('join', { token: await demoToken({ room, identity: 'agent', role: 'agent', canRecord: true }) })).error).toBeUndefined();
    // Signaling dials the recorder (recorder.gateway.internal), which taps the SFU (sfu.gateway.internal).
    const started = await agent.request('startRecording', {});
    expect(started.error).toBeUndefined();
    expect(started.startRecording.state).toBe('started');
    expect((await agent.request('stopRecording', {})).error).toBeUndefined();
  });

  it('refuses a plaintext client and a client whose certificate another CA signed', async () => {
    const info = (client: SfuClient) => callUnary(client, client.getNodeInfo, {}, 3_000);
    const plaintext = new SfuClient(`127.0.0.1:${sfu.grpcPort}`, grpc.credentials.createInsecure());
    clients.push(plaintext);
    await expect(info(plaintext)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const foreign = new SfuClient(`127.0.0.1:${sfu.grpcPort}`, grpc.credentials.createSsl(readFileSync(pki.caFile), readFileSync(pki.foreign.keyFile), readFileSync(pki.foreign.certFile)), {
      'grpc.ssl_target_name_override': 'sfu.gateway.internal',
    });
    clients.push(foreign);
    await expect(info(foreign)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    // The same call with a certificate of ours succeeds, so the refusals above are about the certificate.
    expect((await info(sfuAs('signaling'))).nodeId).toBe(sfu.nodeId);
  });

  it('lets only signaling open rooms and make transports on the SFU: another certificate of ours is refused and nothing is made', async () => {
    const room = { tenant: 'demo', room: `not-yours-${Date.now()}` };
    for (const identity of ['recorder', 'sfu', 'stranger'] as const) {
      const client = sfuAs(identity);
      expect((await outcome(callUnary(client, client.openRoom, { room }))).code, identity).toBe('PERMISSION_DENIED');
    }
    const signalingClient = sfuAs('signaling');
    // No room was opened by the refused calls.
    expect((await outcome(callUnary(signalingClient, signalingClient.listProducers, room))).code).toBe('NOT_FOUND');
    expect((await callUnary(signalingClient, signalingClient.getNodeInfo, {})).load?.rooms).toBe(1);
    // Signaling opens it; the recorder may list its producers (a tap method) but not make a transport.
    expect((await outcome(callUnary(signalingClient, signalingClient.openRoom, { room }))).code).toBe('OK');
    const fromRecorder = sfuAs('recorder');
    expect((await outcome(callUnary(fromRecorder, fromRecorder.listProducers, room))).code).toBe('OK');
    expect((await outcome(callUnary(fromRecorder, fromRecorder.createWebRtcTransport, { room, participantId: 'PA_x', direction: TransportDirection.TRANSPORT_DIRECTION_RECV }))).code).toBe(
      'PERMISSION_DENIED',
    );
    expect((await callUnary(signalingClient, signalingClient.getNodeInfo, {})).load?.transports).toBe(1);
  });

  it('lets only SFU nodes call the node-to-node methods, and only the recorder and signaling the tap methods', async () => {
    const room = { tenant: 'demo', room: `nodes-${Date.now()}` };
    const endpoint = { ip: '127.0.0.1', port: 42_000, srtpParameters: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: Buffer.alloc(44, 1).toString('base64') } };
    for (const identity of ['signaling', 'recorder', 'stranger'] as const) {
      const client = sfuAs(identity);
      expect((await outcome(callUnary(client, client.openPipe, { room, peer: { nodeId: 'sfu-x', grpcAddress: '127.0.0.1:1' }, endpoint }))).code, identity).toBe('PERMISSION_DENIED');
      expect((await outcome(callUnary(client, client.closePipe, { room, peerNodeId: 'sfu-x' }))).code, identity).toBe('PERMISSION_DENIED');
    }
    for (const identity of ['sfu', 'stranger'] as const) {
      const client = sfuAs(identity);
      expect(
        (await outcome(callUnary(client, client.createTapStream, { tap: { room, tapId: 'tap-1' }, producerId: 'PR_1', ip: '127.0.0.1', port: 5004, rtcpPort: 0, paused: true }))).code,
        identity,
      ).toBe('PERMISSION_DENIED');
    }
    // An SFU's certificate gets past the identity check (and then finds no such room).
    const peer = sfuAs('sfu');
    expect((await outcome(callUnary(peer, peer.closePipe, { room, peerNodeId: 'sfu-x' }))).code).toBe('NOT_FOUND');
  });

  it('lets only signaling call the recorder, which checks that it is the recorder it dialled', async () => {
    for (const identity of ['sfu', 'stranger'] as const) {
      const client = recorderClientAs(recorder.grpcAddress, identity, pki);
      clients.push(client);
      expect((await outcome(callUnary(client, client.getRecording, { tenant: 'demo', recordingId: 'RC_none', requestedBy: '' }))).code, identity).toBe('PERMISSION_DENIED');
    }
    // A client that means to reach an SFU does not take the recorder's certificate for one.
    const expectingSfu = grpcClientCredentials(grpcTlsOf('signaling', pki), 'sfu');
    const confused = new SfuClient(recorder.grpcAddress, expectingSfu.credentials, expectingSfu.options);
    clients.push(confused);
    expect((await outcome(callUnary(confused, confused.getNodeInfo, {}, 3_000))).code).toBe('UNAVAILABLE');
  });
});
