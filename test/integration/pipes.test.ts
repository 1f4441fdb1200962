import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { SfuClient, type ProducerInfo } from '@gateway/proto/gateway/sfu/v1/sfu';
import { buckets, callUnary, grpcClientCredentials, kvKeys } from '@gateway/common';
import { NatsServer, grpcTlsOf, startSfuProcess, startSignalingProcess, waitFor, type GrpcTestIdentity } from '@gateway/testing';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { opusRtpParameters, vp8RtpParameters } from '../support/rtpParameters.js';

/**
 * The control side of rooms across SFU nodes, against two real SFU processes: placement when
 * the room's node is full, imports through pipes, the origin's pause, resume and close mirrored
 * on the importing node, the pipe closed when the importing room ends, and bad requests of the
 * node-to-node API. (Media through the pipes is proven in Chromium: test/e2e/cross-node.test.ts.)
 */
describe('pipes between SFU nodes', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let nodeA: Awaited<ReturnType<typeof startSfuProcess>>;
  let nodeB: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let clientA: SfuClient;
  let clientB: SfuClient;
  /** The nodes as another SFU node calls them (node-to-node methods). */
  let peerA: SfuClient;
  let peerB: SfuClient;
  const clients = new TestClients();
  let rooms = 0;

  const producersOn = async (client: SfuClient, room: string): Promise<ProducerInfo[]> => (await callUnary(client, client.listProducers, { tenant: 'demo', room })).producers;
  const loadOf = async (client: SfuClient) => (await callUnary(client, client.getNodeInfo, {})).load!;

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    [nodeA, nodeB] = await Promise.all([
      startSfuProcess({ natsUrl: nats.url, nodeId: 'pipe-a', env: { SFU_MAX_CONSUMERS: '1' } }),
      startSfuProcess({ natsUrl: nats.url, nodeId: 'pipe-b', env: { SFU_ROOM_IDLE_SECONDS: '1' } }),
    ]);
    signaling = await startSignalingProcess({ natsUrl: nats.url });
    const client = (port: number, as: GrpcTestIdentity) => {
      const { credentials, options } = grpcClientCredentials(grpcTlsOf(as), 'sfu');
      return new SfuClient(`127.0.0.1:${port}`, credentials, options);
    };
    clientA = client(nodeA.grpcPort, 'signaling');
    clientB = client(nodeB.grpcPort, 'signaling');
    peerA = client(nodeA.grpcPort, 'sfu');
    peerB = client(nodeB.grpcPort, 'sfu');
  }, 60_000);

  // The load figures below are the nodes': each test starts with both nodes empty.
  afterEach(async () => {
    // A participant that left already may be answered with an error or a closed socket.
    for (const { client } of joined.splice(0)) if (client.ws.readyState === client.ws.OPEN) await Promise.race([client.request('leave', {}), client.closed]);
    clients.closeAll();
    const idle = (load: Awaited<ReturnType<typeof loadOf>>) => load.producers === 0 && load.consumers === 0 && load.importedProducers === 0 && load.pipes === 0;
    await waitFor(async () => idle(await loadOf(clientA)) && idle(await loadOf(clientB)), 15_000, 'both nodes empty');
  });

  afterAll(async () => {
    clients.closeAll();
    for (const c of [clientA, clientB, peerA, peerB]) c?.close();
    await signaling?.stop();
    await Promise.all([nodeA?.stop(), nodeB?.stop()]);
    await nc?.close();
    await nats?.stop();
  });

  const joined: Array<Awaited<ReturnType<TestClients['join']>>> = [];
  const join = async (token: string) => {
    const participant = await clients.join(signaling.wsUrl, token);
    joined.push(participant);
    return participant;
  };
  /** A new room whose home is node A. */
  const newRoom = async () => {
    const room = `pipes-${Date.now()}-${++rooms}`;
    await (await new Kvm(nc).open(buckets.roomPlacement)).create(kvKeys.room('demo', room), 'pipe-a');
    return room;
  };
  /** An end user publishing a microphone and a camera on A, and an agent that consumes both from node B, A being full. */
  async function roomAcrossNodes() {
    const room = await newRoom();
    const user = await join(await demoToken({ room, identity: 'customer', role: 'end_user' }));
    const send = (await user.client.request('createTransport', { direction: 'send' })).createTransport;
    const micId: string = (await user.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
    const cameraId: string = (await user.client.request('produce', { transportId: send.transportId, kind: 'video', rtpParameters: vp8RtpParameters(), source: 'camera' })).produce.producerId;
    await waitFor(async () => (await loadOf(clientA)).producers === 2, 5_000, 'A to count the producers');
    const agent = await join(await demoToken({ room, identity: 'agent', role: 'agent' }));
    await agent.client.request('createTransport', { direction: 'recv' });
    for (const producerId of [micId, cameraId]) expect((await agent.client.request('consume', { producerId, rtpCapabilities: agent.join.routerRtpCapabilities })).error).toBeUndefined();
    await waitFor(async () => (await producersOn(clientB, room)).length === 2, 5_000, 'both imports on B');
    return { room, user, agent, micId, cameraId };
  }

  it("places a subscriber on another node when the room's node is full, and imports what it consumes", async () => {
    const room = await newRoom();
    const user = await join(await demoToken({ room, identity: 'customer', role: 'end_user' }));
    const send = (await user.client.request('createTransport', { direction: 'send' })).createTransport;
    const micId = (await user.client.request('produce', { transportId: send.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
    const cameraId = (await user.client.request('produce', { transportId: send.transportId, kind: 'video', rtpParameters: vp8RtpParameters(), source: 'camera' })).produce.producerId;
    // Node A reports its load in its next heartbeat.
    await waitFor(async () => (await loadOf(clientA)).producers === 2, 5_000, 'A to count the producers');

    // The agent would consume two streams; node A takes one consumer: the agent goes to node B.
    const agent = await join(await demoToken({ room, identity: 'agent', role: 'agent' }));
    expect((await producersOn(clientB, room)).map((p) => p.producerId)).toEqual([]);
    await agent.client.request('createTransport', { direction: 'recv' });
    for (const producerId of [micId, cameraId]) {
      const consumed = await agent.client.request('consume', { producerId, rtpCapabilities: agent.join.routerRtpCapabilities });
      expect(consumed.error).toBeUndefined();
      expect(consumed.consume).toMatchObject({ producerId, participantId: user.join.participant.participantId });
    }
    // Both producers are on B now, under their ids, as imports.
    expect((await producersOn(clientB, room)).map((p) => p.producerId).sort()).toEqual([micId, cameraId].sort());
    expect(await loadOf(clientB)).toMatchObject({ consumers: 2, importedProducers: 2, producers: 0, pipes: 1 });
    expect(await loadOf(clientA)).toMatchObject({ consumers: 0, pipes: 1 });

    // What the agent publishes on B is on the room's home node A before anyone hears of it, so
    // a recording of the room (tapped on A) has it.
    const agentSend = (await agent.client.request('createTransport', { direction: 'send' })).createTransport;
    const agentMic = (await agent.client.request('produce', { transportId: agentSend.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' })).produce.producerId;
    expect((await producersOn(clientA, room)).map((p) => p.producerId)).toContain(agentMic);
    expect(await loadOf(clientA)).toMatchObject({ importedProducers: 1, pipes: 2 });
    expect(await loadOf(clientB)).toMatchObject({ producers: 1, pipes: 2 });
  });

  it("mirrors the origin's pause, resume and close on the importing node", async () => {
    const { room, user, micId, cameraId } = await roomAcrossNodes();
    const micOnB = async () => (await producersOn(clientB, room)).find((p) => p.producerId === micId);
    expect((await user.client.request('pauseProducer', { producerId: micId })).error).toBeUndefined();
    await waitFor(async () => (await micOnB())?.paused === true, 5_000, 'the import paused');
    expect((await user.client.request('resumeProducer', { producerId: micId })).error).toBeUndefined();
    await waitFor(async () => (await micOnB())?.paused === false, 5_000, 'the import resumed');
    expect((await user.client.request('closeProducer', { producerId: cameraId })).error).toBeUndefined();
    await waitFor(async () => (await producersOn(clientB, room)).every((p) => p.producerId !== cameraId), 5_000, 'the import closed');
    expect((await loadOf(clientB)).consumers).toBe(1);
  });

  it('refuses bad node-to-node requests with clear codes', async () => {
    const { room, micId } = await roomAcrossNodes();
    const roomRef = { tenant: 'demo', room };
    const origin = { nodeId: 'pipe-a', grpcAddress: `127.0.0.1:${nodeA.grpcPort}` };
    const refused = (promise: Promise<unknown>) =>
      promise.then(
        () => undefined,
        (error: { code: string }) => error.code,
      );
    expect(await refused(callUnary(clientB, clientB.importProducer, { room: roomRef, producerId: 'nope', origin }))).toBe('NOT_FOUND');
    expect(await refused(callUnary(clientB, clientB.importProducer, { room: roomRef, producerId: micId, origin: undefined }))).toBe('BAD_REQUEST');
    expect(await refused(callUnary(clientB, clientB.importProducer, { room: roomRef, producerId: micId, origin: { nodeId: 'pipe-b', grpcAddress: '127.0.0.1:1' } }))).toBe('BAD_REQUEST');
    expect(await refused(callUnary(peerA, peerA.openPipe, { room: roomRef, peer: { nodeId: 'pipe-b', grpcAddress: '127.0.0.1:1' }, endpoint: undefined }))).toBe('BAD_REQUEST');
    // A peer is who the registry says: a node id it does not know gets no pipe.
    const endpoint = { ip: '127.0.0.1', port: 9, srtpParameters: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: Buffer.alloc(44).toString('base64') } };
    expect(await refused(callUnary(peerA, peerA.openPipe, { room: roomRef, peer: { nodeId: 'impostor', grpcAddress: '127.0.0.1:1' }, endpoint }))).toBe('NOT_FOUND');
    expect(await refused(callUnary(peerA, peerA.pipeConsume, { room: roomRef, peerNodeId: 'nobody', producerId: micId }))).toBe('INVALID_STATE');
    // Another tenant's room does not resolve, even with real ids.
    expect(await refused(callUnary(peerA, peerA.pipeConsume, { room: { tenant: 'globex', room }, peerNodeId: 'pipe-b', producerId: micId }))).toBe('NOT_FOUND');
    // Nothing above disturbed the working pipe: both imports of the set-up are still there.
    expect((await producersOn(clientB, room)).map((p) => p.producerId)).toContain(micId);
    expect((await loadOf(clientB)).importedProducers).toBe(2);
  });

  it("closes the origin's pipe when the importing node's room ends", async () => {
    const { room, agent, micId, cameraId } = await roomAcrossNodes();
    // The agent publishes on B too, so A imports from B: a pipe each way.
    const agentSend = (await agent.client.request('createTransport', { direction: 'send' })).createTransport;
    await agent.client.request('produce', { transportId: agentSend.transportId, kind: 'audio', rtpParameters: opusRtpParameters(), source: 'microphone' });
    expect(await loadOf(clientA)).toMatchObject({ importedProducers: 1, pipes: 2 });
    expect((await agent.client.request('leave', {})).error).toBeUndefined();
    // The agent's microphone import on A goes with the agent, the pipes (both ways) with B's room.
    await waitFor(async () => (await loadOf(clientA)).pipes === 0, 15_000, 'the pipes on A closed');
    expect(await loadOf(clientA)).toMatchObject({ importedProducers: 0, producers: 2 });
    // The end user on A is unaffected.
    expect((await producersOn(clientA, room)).map((p) => p.producerId).sort()).toEqual([micId, cameraId].sort());
  });
});
