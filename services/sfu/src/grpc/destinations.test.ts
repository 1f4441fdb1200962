import dgram from 'node:dgram';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { NodeInfo, SfuClient, SfuService, type PipeEndpoint } from '@gateway/proto/gateway/sfu/v1/sfu';
import { buckets, callUnary, createLogger, grpcClientCredentials, grpcServerCredentials, openBucket, startGrpcServer, stopGrpcServer, type GatewayError, type KV, grpc } from '@gateway/common';
import { NatsServer, freeMediaPorts, grpcTlsEnv, grpcTlsOf, waitFor, type GrpcTestIdentity } from '@gateway/testing';
import { readSfuConfig } from '../config.js';
import { SfuNode } from '../SfuNode.js';
import type { MediaAppData } from '../Room.js';

const opus = { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 1111 }] };
const srtp = { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: Buffer.alloc(44, 7).toString('base64') };

/** A UDP socket on `ip` that counts what arrives. */
async function listener(ip: string): Promise<{ port: number; received: () => number; close: () => void }> {
  const socket = dgram.createSocket('udp4');
  let count = 0;
  socket.on('message', () => count++);
  await new Promise<void>((resolve) => socket.bind(0, ip, resolve));
  return { port: socket.address().port, received: () => count, close: () => socket.close() };
}

/** Sends Opus-shaped RTP to a port every 20 ms, as a publisher would. */
function rtpSender(port: number): () => void {
  const socket = dgram.createSocket('udp4');
  let sequence = 0;
  const timer = setInterval(() => {
    const packet = Buffer.alloc(12 + 40);
    packet[0] = 0x80;
    packet[1] = 111;
    packet.writeUInt16BE(sequence++ & 0xffff, 2);
    packet.writeUInt32BE((sequence * 960) >>> 0, 4);
    packet.writeUInt32BE(1111, 8);
    socket.send(packet, port, '127.0.0.1');
  }, 20);
  return () => {
    clearInterval(timer);
    socket.close();
  };
}

const code = (promise: Promise<unknown>) =>
  promise.then(
    () => 'OK',
    (error: GatewayError) => error.code,
  );

/**
 * Where an SFU node sends a room's media: recording taps only to the RTP address of a recorder
 * node in the registry, pipes only to the pipe address the SFU registry has for the peer node,
 * whatever a caller names. Real media (RTP into a producer) shows that a tap or pipe that is
 * allowed does carry packets, and that a refused one sends none.
 */
describe('destinations of taps and pipes', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let node: SfuNode;
  let recorderNodes: KV;
  let sfuNodes: KV;
  let stopMedia: () => void;
  let producerId: string;
  let fakeOrigin: { server: grpc.Server; port: number } | undefined;
  const room = { tenant: 'acme', room: 'destinations' };
  const clients: SfuClient[] = [];
  const sockets: Array<{ close: () => void }> = [];
  const clientAs = (identity: GrpcTestIdentity) => {
    const { credentials, options } = grpcClientCredentials(grpcTlsOf(identity), 'sfu');
    const client = new SfuClient(node.grpcAddress, credentials, options);
    clients.push(client);
    return client;
  };
  const listen = async (ip: string) => {
    const socket = await listener(ip);
    sockets.push(socket);
    return socket;
  };
  const registerRecorder = (rtpIp: string) =>
    recorderNodes.put('rec-registered', JSON.stringify({ nodeId: 'rec-registered', grpcAddress: '127.0.0.1:1', rtpIp, jobs: 0, cpuInUse: 0, cpuBudget: 1, draining: false, updatedAtMs: Date.now() }));
  const registerSfu = (nodeId: string, grpcAddress: string, pipeIp: string) =>
    sfuNodes.put(nodeId, NodeInfo.encode(NodeInfo.create({ nodeId, grpcAddress, pipeIp, draining: false, updatedAtMs: Date.now(), version: '1' })).finish());

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    const rtcPortMin = await freeMediaPorts(1);
    node = await SfuNode.start(
      readSfuConfig({
        ...nats.envFor('sfu'),
        SFU_NODE_ID: 'sfu-destinations',
        SFU_GRPC_HOST: '127.0.0.1',
        SFU_GRPC_PORT: '0',
        SFU_OPS_PORT: '0',
        SFU_WORKERS: '1',
        SFU_RTC_PORT_MIN: String(rtcPortMin),
        SFU_LISTEN_IP: '127.0.0.1',
        SFU_PIPE_LISTEN_IP: '127.0.0.1',
        SFU_PIPE_PORT_MIN: String(rtcPortMin + 100),
        SFU_PIPE_PORT_MAX: String(rtcPortMin + 199),
        ...grpcTlsEnv('sfu'),
      }),
      createLogger('sfu-test', 'silent'),
    );
    recorderNodes = await openBucket(nc, buckets.recorderNodes);
    sfuNodes = await openBucket(nc, buckets.sfuNodes);

    // A producer fed with real RTP: a plain transport into the room's router, as a publisher's media.
    const signaling = clientAs('signaling');
    await callUnary(signaling, signaling.openRoom, { room });
    const found = node.room(room.tenant, room.room);
    const input = await found.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const producer = await input.produce<MediaAppData>({ kind: 'audio', rtpParameters: opus, appData: { participantId: 'PA_publisher', source: 'microphone' } });
    found.producers.set(producer.id, producer);
    producerId = producer.id;
    stopMedia = rtpSender(input.tuple.localPort);
  });

  afterAll(async () => {
    stopMedia?.();
    for (const socket of sockets) socket.close();
    for (const client of clients) client.close();
    if (fakeOrigin) await stopGrpcServer(fakeOrigin.server);
    await nc?.close();
    await node?.close('immediate');
    await nats?.stop();
  });

  it("sends a tap only to a registered recorder's RTP address: another address is refused and gets nothing", async () => {
    await registerRecorder('127.0.0.1');
    const recorder = clientAs('recorder');
    const elsewhere = await listen('127.0.0.2');
    const tap = (tapId: string, ip: string, port: number) => callUnary(recorder, recorder.createTapStream, { tap: { room, tapId }, producerId, ip, port, rtcpPort: 0, paused: false });

    expect(await code(tap('tap-elsewhere', '127.0.0.2', elsewhere.port))).toBe('PERMISSION_DENIED');
    // The same tap to the registered recorder's address carries the media...
    const recorderSocket = await listen('127.0.0.1');
    expect(await code(tap('tap-recorder', '127.0.0.1', recorderSocket.port))).toBe('OK');
    await waitFor(() => recorderSocket.received() > 10, 5_000, 'RTP at the registered recorder');
    // ...while the other address got nothing in all that time.
    expect(elsewhere.received()).toBe(0);
  });

  it('refuses every tap once no recorder is registered at the address', async () => {
    await registerRecorder('127.0.0.3');
    const recorder = clientAs('recorder');
    const socket = await listen('127.0.0.1');
    expect(await code(callUnary(recorder, recorder.createTapStream, { tap: { room, tapId: 'tap-gone' }, producerId, ip: '127.0.0.1', port: socket.port, rtcpPort: 0, paused: false }))).toBe(
      'PERMISSION_DENIED',
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(socket.received()).toBe(0);
  });

  it('opens a pipe to a peer only at the pipe address the registry has for it', async () => {
    await registerSfu('sfu-peer', '127.0.0.1:1', '127.0.0.1');
    const peer = clientAs('sfu');
    const elsewhere = await listen('127.0.0.2');
    const open = (ip: string, port: number) => callUnary(peer, peer.openPipe, { room, peer: { nodeId: 'sfu-peer', grpcAddress: '127.0.0.1:1' }, endpoint: { ip, port, srtpParameters: srtp } });

    expect(await code(open('127.0.0.2', elsewhere.port))).toBe('PERMISSION_DENIED');
    // No pipe was made, so nothing can be sent into it: in half a second of media, nothing arrives.
    expect(await code(callUnary(peer, peer.pipeConsume, { room, peerNodeId: 'sfu-peer', producerId }))).toBe('INVALID_STATE');
    await new Promise((r) => setTimeout(r, 500));
    expect(elsewhere.received()).toBe(0);
    // At the registered address the pipe carries the producer (SRTP).
    const registered = await listen('127.0.0.1');
    expect(await code(open('127.0.0.1', registered.port))).toBe('OK');
    expect(await code(callUnary(peer, peer.pipeConsume, { room, peerNodeId: 'sfu-peer', producerId }))).toBe('OK');
    await waitFor(() => registered.received() > 10, 5_000, 'SRTP at the registered peer');
    expect(elsewhere.received()).toBe(0);
  });

  it("connects an import's pipe only to the origin's registered pipe address, and calls the origin only at its registered gRPC address", async () => {
    // An origin (with an SFU certificate) that answers OpenPipe with an address of its choosing.
    const elsewhere = await listen('127.0.0.2');
    let openPipeCalls = 0;
    const implementation: grpc.UntypedServiceImplementation = Object.fromEntries(
      Object.keys(SfuService).map((m) => [m, (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback({ code: grpc.status.UNIMPLEMENTED, details: 'unimplemented' })]),
    );
    implementation.openPipe = (_call: unknown, callback: grpc.sendUnaryData<PipeEndpoint>) => {
      openPipeCalls++;
      callback(null, { ip: '127.0.0.2', port: elsewhere.port, srtpParameters: srtp });
    };
    fakeOrigin = await startGrpcServer((s) => s.addService(SfuService, implementation), '127.0.0.1', 0, grpcServerCredentials(grpcTlsOf('sfu')));
    await registerSfu('sfu-origin', `127.0.0.1:${fakeOrigin.port}`, '127.0.0.1');
    // The address a request names is never dialled: only the registry's.
    let dialled = 0;
    const decoy = net.createServer((socket) => {
      dialled++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => decoy.listen(0, '127.0.0.2', resolve));
    sockets.push({ close: () => decoy.close() });
    const decoyAddress = `127.0.0.2:${(decoy.address() as net.AddressInfo).port}`;

    const signaling = clientAs('signaling');
    const imported = callUnary(signaling, signaling.importProducer, { room, producerId: 'PR_remote', origin: { nodeId: 'sfu-origin', grpcAddress: decoyAddress } });
    expect(await code(imported)).toBe('PERMISSION_DENIED');
    expect(openPipeCalls).toBe(1);
    expect(dialled).toBe(0);
    // The importing end made for the answer was closed again.
    expect(node.room(room.tenant, room.room).pipesIn.has('sfu-origin')).toBe(false);
  });
});
