import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { MediaKind, NodeInfo, SfuClient, TrackSource, TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { ErrorCode, buckets, callUnary, createLogger, grpc, openBucket, subjects, type GatewayError } from '@gateway/common';
import { NatsServer, freeMediaPorts, natsEnvFor, waitFor } from '@gateway/testing';
import { readSfuConfig } from './config.js';
import { SfuNode } from './SfuNode.js';

const opus = { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2, parameters: {} }], encodings: [{ ssrc: 1111 }] };
const vp8Simulcast = {
  codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, parameters: {} }],
  encodings: [
    { ssrc: 2221, rid: 'r0' },
    { ssrc: 2222, rid: 'r1' },
    { ssrc: 2223, rid: 'r2' },
  ].map(({ ssrc }) => ({ ssrc })),
};
// A simple client capability set that can receive Opus and VP8.
const clientCaps = {
  codecs: [
    { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2, preferredPayloadType: 100, parameters: {} },
    { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, preferredPayloadType: 101, parameters: {}, rtcpFeedback: [{ type: 'nack' }, { type: 'ccm', parameter: 'fir' }] },
  ],
  headerExtensions: [],
};

/** An SFU node in this process, on loopback with free ports, and a gRPC client for it. */
async function startTestNode(natsUrl: string, nodeId: string, env: Record<string, string> = {}) {
  const config = readSfuConfig({
    ...natsEnvFor(natsUrl, 'sfu'),
    SFU_NODE_ID: nodeId,
    SFU_GRPC_HOST: '127.0.0.1',
    SFU_GRPC_PORT: '0',
    SFU_OPS_PORT: '0',
    SFU_WORKERS: '1',
    SFU_RTC_PORT_MIN: String(await freeMediaPorts(1)),
    SFU_LISTEN_IP: '127.0.0.1',
    ...env,
  });
  const node = await SfuNode.start(config, createLogger('sfu-test', 'silent'));
  return { node, client: new SfuClient(node.grpcAddress, grpc.credentials.createInsecure()) };
}

/** The value of one series of the node's metrics (0 when the series is not there). */
async function metricValue(node: SfuNode, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await node.metrics.getSingleMetric(name)?.get();
  const series = metric?.values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value));
  return series?.value ?? 0;
}

describe('SFU node with a real mediasoup worker', () => {
  let nats: NatsServer;
  let node: SfuNode;
  let client: SfuClient;
  let nc: NatsConnection;
  const room = { tenant: 'acme', room: 'support-1' };
  const call = <Req, Res>(method: Parameters<typeof callUnary<Req, Res>>[1], req: Req) => callUnary<Req, Res>(client, method, req);

  beforeAll(async () => {
    nats = await NatsServer.start();
    ({ node, client } = await startTestNode(nats.url, 'sfu-test-a', { SFU_HEARTBEAT_SECONDS: '0.2' }));
    nc = await nats.connect();
  });

  afterAll(async () => {
    client?.close();
    await nc?.close();
    await node?.close('immediate');
    await nats?.stop();
  });

  it('opens a room idempotently and negotiates transports, producers and paused consumers', async () => {
    const first = await call(client.openRoom, { room });
    const second = await call(client.openRoom, { room });
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.rtpCapabilities).toEqual(first.rtpCapabilities);
    const mimeTypes = (first.rtpCapabilities!.codecs as Array<{ mimeType: string }>).map((c) => c.mimeType);
    expect(mimeTypes).toEqual(expect.arrayContaining(['audio/opus', 'video/VP8', 'video/VP9', 'video/H264']));

    const send = await call(client.createWebRtcTransport, { room, participantId: 'PA_a', direction: TransportDirection.TRANSPORT_DIRECTION_SEND });
    expect(send.iceCandidates.length).toBe(2); // UDP and TCP on the worker's one port
    expect(new Set(send.iceCandidates.map((c) => c.port)).size).toBe(1);
    const recv = await call(client.createWebRtcTransport, { room, participantId: 'PA_b', direction: TransportDirection.TRANSPORT_DIRECTION_RECV });

    const audio = await call(client.produce, {
      transport: { room, transportId: send.transportId },
      participantId: 'PA_a',
      kind: MediaKind.MEDIA_KIND_AUDIO,
      rtpParameters: opus,
      source: TrackSource.TRACK_SOURCE_MICROPHONE,
      paused: false,
    });
    const video = await call(client.produce, {
      transport: { room, transportId: send.transportId },
      participantId: 'PA_a',
      kind: MediaKind.MEDIA_KIND_VIDEO,
      rtpParameters: vp8Simulcast,
      source: TrackSource.TRACK_SOURCE_CAMERA,
      paused: false,
    });

    const consumer = await call(client.consume, { transport: { room, transportId: recv.transportId }, producerId: video.producerId, rtpCapabilities: clientCaps });
    expect(consumer.type).toBe('simulcast');
    expect(consumer.producerParticipantId).toBe('PA_a');
    expect(consumer.source).toBe(TrackSource.TRACK_SOURCE_CAMERA);
    const stats = await call(client.getTransportStats, { room, transportId: recv.transportId });
    const consumerStats = stats.stats.filter((s) => s.consumerId === consumer.consumerId);
    expect(consumerStats.length).toBeGreaterThan(0);
    expect(node.room(room.tenant, room.room).consumer(consumer.consumerId).paused).toBe(true);
    await call(client.resumeConsumer, { room, consumerId: consumer.consumerId });
    expect(node.room(room.tenant, room.room).consumer(consumer.consumerId).paused).toBe(false);

    const audioConsumer = await call(client.consume, { transport: { room, transportId: recv.transportId }, producerId: audio.producerId, rtpCapabilities: clientCaps });
    expect(audioConsumer.kind).toBe(MediaKind.MEDIA_KIND_AUDIO);
    expect(node.load()).toMatchObject({ rooms: 1, transports: 2, producers: 2, consumers: 2 });
  });

  it('tells which simulcast layers of a producer anyone receives (dynacast): preferences, pauses and closes count', async () => {
    const layersRoom = { tenant: 'acme', room: 'layers-1' };
    const wanted: number[] = [];
    const sub = nc.subscribe(subjects.roomEvents(layersRoom.tenant, layersRoom.room));
    void (async () => {
      for await (const m of sub) {
        const e = RoomEvent.decode(m.data).event;
        if (e?.$case === 'videoLayersWanted') wanted.push(e.value.maxSpatialLayer);
      }
    })();
    const told = async (expected: number[]) => {
      await waitFor(() => wanted.length >= expected.length || undefined, 5_000, `layers ${expected.join(',')}`);
      expect(wanted).toEqual(expected);
    };
    await call(client.openRoom, { room: layersRoom });
    const send = await call(client.createWebRtcTransport, { room: layersRoom, participantId: 'PA_p', direction: TransportDirection.TRANSPORT_DIRECTION_SEND });
    const video = await call(client.produce, {
      transport: { room: layersRoom, transportId: send.transportId },
      participantId: 'PA_p',
      kind: MediaKind.MEDIA_KIND_VIDEO,
      rtpParameters: vp8Simulcast,
      source: TrackSource.TRACK_SOURCE_CAMERA,
      paused: false,
    });
    // Alone in the room: only the lowest layer.
    await told([0]);
    const recv = await call(client.createWebRtcTransport, { room: layersRoom, participantId: 'PA_r', direction: TransportDirection.TRANSPORT_DIRECTION_RECV });
    const consumer = await call(client.consume, { transport: { room: layersRoom, transportId: recv.transportId }, producerId: video.producerId, rtpCapabilities: clientCaps });
    const ref = { room: layersRoom, consumerId: consumer.consumerId };
    // Created paused, it wants nothing yet; resumed, the top layer (mediasoup's default preference).
    await call(client.resumeConsumer, ref);
    await told([0, 2]);
    await call(client.setPreferredLayers, { consumer: ref, spatialLayer: 0 });
    await told([0, 2, 0]);
    await call(client.setPreferredLayers, { consumer: ref, spatialLayer: 1 });
    await told([0, 2, 0, 1]);
    // Paused (its video hidden): back to the lowest; resumed, its preference again.
    await call(client.pauseConsumer, ref);
    await told([0, 2, 0, 1, 0]);
    await call(client.resumeConsumer, ref);
    await told([0, 2, 0, 1, 0, 1]);
    // The same preference again changes nothing, so nothing is said.
    await call(client.setPreferredLayers, { consumer: ref, spatialLayer: 1 });
    await call(client.closeConsumer, ref);
    await told([0, 2, 0, 1, 0, 1, 0]);
    sub.unsubscribe();
    await call(client.closeRoom, layersRoom);
  });

  it('never resolves ids of another tenant, and refuses bad input', async () => {
    const otherTenant = { tenant: 'other', room: 'support-1' };
    await expect(call(client.createWebRtcTransport, { room: otherTenant, participantId: 'PA_x', direction: TransportDirection.TRANSPORT_DIRECTION_SEND })).rejects.toMatchObject({
      code: ErrorCode.NOT_FOUND,
    });
    await expect(call(client.openRoom, { room: { tenant: 'bad tenant!', room: 'r' } })).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    await expect(call(client.closeProducer, { room, producerId: 'nope' })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
  });

  it('registers itself in NATS KV with its load', async () => {
    const kv = await openBucket(nc, buckets.sfuNodes);
    const info = await waitFor(
      async () => {
        const entry = await kv.get('sfu-test-a');
        const decoded = entry?.length ? NodeInfo.decode(entry.value) : undefined;
        // The room of the test before is closed by now; an entry written before it was may still show it.
        return decoded && decoded.load?.consumers === 2 && decoded.load.rooms === 1 ? decoded : undefined;
      },
      5_000,
      'registry entry with load',
    );
    expect(info.grpcAddress).toBe(node.grpcAddress);
    expect(info.load).toMatchObject({ workers: 1, rooms: 1, producers: 2 });
    expect(Date.now() - info.updatedAtMs).toBeLessThan(2_000);
  });

  it('closes the rooms of a dead worker, tells signaling, and replaces the worker', async () => {
    const events: RoomEvent[] = [];
    const sub = nc.subscribe(subjects.roomEvents(room.tenant, room.room));
    void (async () => {
      for await (const m of sub) events.push(RoomEvent.decode(m.data));
    })();
    await nc.flush();
    const deathsBefore = await metricValue(node, 'gateway_sfu_worker_deaths_total');
    const pid = node.pool.workers[0]!.worker.pid;
    process.kill(pid, 'SIGKILL');
    const closed = await waitFor(() => events.find((e) => e.event?.$case === 'roomClosed'), 5_000, 'roomClosed event');
    expect(closed.event).toEqual({ $case: 'roomClosed', value: { reason: 'worker_died', nodeId: 'sfu-test-a' } });
    await waitFor(() => node.pool.aliveCount === 1 && node.pool.workers[0]!.worker.pid !== pid, 10_000, 'replacement worker');
    expect(node.rooms.size).toBe(0);
    // What the worker-death alert counts (k8s/base/alerts.yaml).
    expect(await metricValue(node, 'gateway_sfu_worker_deaths_total')).toBe(deathsBefore + 1);
    const reopened = await call(client.openRoom, { room });
    expect(reopened.created).toBe(true);
    sub.unsubscribe();
  });

  it('drains when its ops endpoint is called (the preStop hook): no new rooms, existing rooms keep working', async () => {
    expect(node.draining).toBe(false);
    // A plain GET (a page in a browser on the host) is refused.
    expect((await fetch(`http://127.0.0.1:${node.opsPort}/drain`)).status).toBe(405);
    expect(node.draining).toBe(false);
    const drain = await fetch(`http://127.0.0.1:${node.opsPort}/drain`, { headers: { 'x-gateway-drain': '1' } });
    expect(drain.status).toBe(202);
    expect(node.draining).toBe(true);
    await expect(call(client.openRoom, { room: { tenant: 'acme', room: 'new-room' } })).rejects.toMatchObject({ code: ErrorCode.DRAINING } satisfies Partial<GatewayError>);
    const existing = await call(client.openRoom, { room });
    expect(existing.created).toBe(false);
    const res = await fetch(`http://127.0.0.1:${node.opsPort}/readyz`);
    expect(res.status).toBe(503);
  });
});

describe('SFU node timeouts', () => {
  let nats: NatsServer;
  let node: SfuNode;
  let client: SfuClient;

  beforeAll(async () => {
    nats = await NatsServer.start();
    ({ node, client } = await startTestNode(nats.url, 'sfu-test-timeouts', { SFU_TRANSPORT_ABANDON_SECONDS: '0.5', SFU_ROOM_IDLE_SECONDS: '0.5' }));
  });

  afterAll(async () => {
    client?.close();
    await node?.close('immediate');
    await nats?.stop();
  });

  it('closes a transport nobody connects, counted as an ICE failure, then the room left without transports', async () => {
    const room = { tenant: 'acme', room: 'abandoned' };
    await callUnary(client, client.openRoom, { room });
    const { transportId } = await callUnary(client, client.createWebRtcTransport, { room, participantId: 'PA_gone', direction: TransportDirection.TRANSPORT_DIRECTION_SEND });
    expect(node.load()).toMatchObject({ rooms: 1, transports: 1 });
    expect(await metricValue(node, 'gateway_sfu_transports_opened_total')).toBe(1);
    expect(await metricValue(node, 'gateway_sfu_transport_failures_total', { reason: 'ice' })).toBe(0);
    await waitFor(() => node.load().transports === 0, 5_000, 'the abandoned transport closed');
    // What the ICE failure alert counts (k8s/base/alerts.yaml).
    expect(await metricValue(node, 'gateway_sfu_transport_failures_total', { reason: 'ice' })).toBe(1);
    expect(await metricValue(node, 'gateway_sfu_transport_failures_total', { reason: 'dtls' })).toBe(0);
    await expect(callUnary(client, client.getTransportStats, { room, transportId })).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    await waitFor(() => node.rooms.size === 0, 5_000, 'the idle room closed');
  });
});

describe("SFU limits per participant (behind signaling's own)", () => {
  let nats: NatsServer;
  let node: SfuNode;
  let client: SfuClient;
  const room = { tenant: 'acme', room: 'limits' };
  const code = (promise: Promise<unknown>) =>
    promise.then(
      () => 'OK',
      (error: GatewayError) => error.code,
    );
  const transport = (participantId: string, direction = TransportDirection.TRANSPORT_DIRECTION_RECV) => callUnary(client, client.createWebRtcTransport, { room, participantId, direction });
  const produce = (transportId: string, participantId: string, ssrc: number) =>
    callUnary(client, client.produce, {
      transport: { room, transportId },
      participantId,
      kind: MediaKind.MEDIA_KIND_AUDIO,
      rtpParameters: { ...opus, encodings: [{ ssrc }] },
      source: TrackSource.TRACK_SOURCE_MICROPHONE,
      paused: false,
    });
  const consume = (transportId: string, producerId: string) => callUnary(client, client.consume, { transport: { room, transportId }, producerId, rtpCapabilities: clientCaps });

  beforeAll(async () => {
    nats = await NatsServer.start();
    ({ node, client } = await startTestNode(nats.url, 'sfu-test-limits', {
      SFU_MAX_TRANSPORTS_PER_PARTICIPANT: '2',
      SFU_MAX_PRODUCERS_PER_PARTICIPANT: '2',
      SFU_MAX_CONSUMERS_PER_PARTICIPANT: '3',
    }));
    await callUnary(client, client.openRoom, { room });
  });

  afterAll(async () => {
    client?.close();
    await node?.close('immediate');
    await nats?.stop();
  });

  it('refuses transports past the limit, also when asked for all at once, and not for other participants', async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => code(transport('PA_greedy'))));
    expect(results.filter((r) => r === 'OK')).toHaveLength(2);
    expect(results.filter((r) => r === 'LIMIT_EXCEEDED')).toHaveLength(8);
    expect(await code(transport('PA_other'))).toBe('OK');
    expect(node.room(room.tenant, room.room).transports.size).toBe(3);
  });

  it('refuses producers past the limit', async () => {
    const { transportId } = await transport('PA_pub1', TransportDirection.TRANSPORT_DIRECTION_SEND);
    expect(await code(produce(transportId, 'PA_pub1', 101))).toBe('OK');
    expect(await code(produce(transportId, 'PA_pub1', 102))).toBe('OK');
    expect(await code(produce(transportId, 'PA_pub1', 103))).toBe('LIMIT_EXCEEDED');
  });

  it('keeps one consumer per producer and participant: the same consume again returns it, even many at once', async () => {
    const { transportId: send } = await transport('PA_pub2', TransportDirection.TRANSPORT_DIRECTION_SEND);
    const { producerId } = await produce(send, 'PA_pub2', 201);
    const { transportId: recv } = await transport('PA_viewer');
    const consumers = await Promise.all(Array.from({ length: 500 }, () => consume(recv, producerId)));
    expect(new Set(consumers.map((c) => c.consumerId)).size).toBe(1);
    expect(await consume(recv, producerId)).toMatchObject({ consumerId: consumers[0]!.consumerId, producerId });
    const viewerConsumers = () => [...node.room(room.tenant, room.room).consumers.values()].filter((c) => c.appData.participantId === 'PA_viewer');
    expect(viewerConsumers()).toHaveLength(1);
    // The same producer on a second transport of the participant is refused.
    const { transportId: secondRecv } = await transport('PA_viewer');
    expect(await code(consume(secondRecv, producerId))).toBe('ALREADY_EXISTS');
    expect(viewerConsumers()).toHaveLength(1);
  });

  it('refuses consumers past the limit', async () => {
    const inRoom = node.room(room.tenant, room.room);
    const { transportId: send } = await transport('PA_pub3', TransportDirection.TRANSPORT_DIRECTION_SEND);
    await produce(send, 'PA_pub3', 301);
    const producers = [...inRoom.producers.values()].map((p) => p.id);
    expect(producers).toHaveLength(4);
    const { transportId } = await transport('PA_watcher');
    const results = [];
    for (const producerId of producers) results.push(await code(consume(transportId, producerId)));
    expect(results).toEqual(['OK', 'OK', 'OK', 'LIMIT_EXCEEDED']);
    // A closed consumer frees its place.
    const [first] = [...inRoom.consumers.values()].filter((c) => c.appData.participantId === 'PA_watcher');
    await callUnary(client, client.closeConsumer, { room, consumerId: first!.id });
    expect(await code(consume(transportId, producers[3]!))).toBe('OK');
  });
});
