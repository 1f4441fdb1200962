import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaKind, type SfuClient, SfuService, TrackSource, TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary } from '@gateway/common';
import { NatsServer, startSfuProcess, type GrpcTestIdentity } from '@gateway/testing';
import { sfuAccess } from '../../services/sfu/src/grpc/SfuGrpcService.js';
import { SfuClients, dtlsParameters, outcome, rawCall } from '../support/grpcClients.js';
import { deviceCapabilities, opusRtpParameters, vp8RtpParameters } from '../support/rtpParameters.js';

/**
 * A seeded fuzzer of the SFU's gRPC API: every method, with valid requests and mutations of
 * them (fields missing, of the wrong type where the wire allows, huge, NaN, negative or out of
 * range, unicode and control characters, deep and huge JSON objects, `__proto__` keys), raw
 * bytes that do not decode, and callers with the wrong certificate. After each batch the SFU
 * process must still run and answer a valid call within 5 s, and no answer may echo what was
 * sent or carry a library's words.
 *
 * SFU_FUZZ_SEED picks the seed (printed on failure); SFU_FUZZ_BATCHES makes a long run.
 */
const seed = Number(process.env.SFU_FUZZ_SEED ?? 20240611);
const batches = Number(process.env.SFU_FUZZ_BATCHES ?? 12);
const callsPerBatch = 40;
const MARKER = 'QZXJ';

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function random(seedValue: number): () => number {
  let a = seedValue >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Methods = keyof typeof sfuAccess;
type Json = unknown;

interface State {
  room: { tenant: string; room: string };
  participantId: string;
  sendTransport: string;
  recvTransport: string;
  producerId: string;
  consumerId: string;
}

/** A valid request of each method against the batch's room. */
function validRequest(method: Methods, s: State): Record<string, Json> {
  const { room } = s;
  const transport = { room, transportId: s.sendTransport };
  const requests: Record<Methods, Record<string, Json>> = {
    openRoom: { room },
    closeRoom: { ...room },
    createWebRtcTransport: { room, participantId: s.participantId, direction: TransportDirection.TRANSPORT_DIRECTION_RECV },
    connectTransport: { transport: { room, transportId: s.recvTransport }, dtlsParameters },
    restartIce: transport,
    getTransportStats: transport,
    closeTransport: { room, transportId: s.recvTransport },
    produce: { transport, participantId: s.participantId, kind: MediaKind.MEDIA_KIND_VIDEO, rtpParameters: vp8RtpParameters(), source: TrackSource.TRACK_SOURCE_CAMERA, paused: false },
    pauseProducer: { room, producerId: s.producerId },
    resumeProducer: { room, producerId: s.producerId },
    closeProducer: { room, producerId: s.producerId },
    consume: { transport: { room, transportId: s.recvTransport }, producerId: s.producerId, rtpCapabilities: deviceCapabilities },
    resumeConsumer: { room, consumerId: s.consumerId },
    pauseConsumer: { room, consumerId: s.consumerId },
    setPreferredLayers: { consumer: { room, consumerId: s.consumerId }, spatialLayer: 0, temporalLayer: 0 },
    closeConsumer: { room, consumerId: s.consumerId },
    closeParticipant: { room, participantId: s.participantId },
    getNodeInfo: {},
    listProducers: { ...room },
    createTapStream: { tap: { room, tapId: 'tap-fuzz' }, producerId: s.producerId, ip: '127.0.0.1', port: 5004, rtcpPort: 5005, paused: true },
    setTapPaused: { tap: { room, tapId: 'tap-fuzz' }, paused: false },
    closeTap: { room, tapId: 'tap-fuzz' },
    importProducer: { room, producerId: s.producerId, origin: { nodeId: 'sfu-elsewhere', grpcAddress: '127.0.0.1:1' } },
    openPipe: {
      room,
      peer: { nodeId: 'sfu-elsewhere', grpcAddress: '127.0.0.1:1' },
      endpoint: { ip: '127.0.0.1', port: 42_001, srtpParameters: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: Buffer.alloc(44, 1).toString('base64') } },
    },
    pipeConsume: { room, peerNodeId: 'sfu-elsewhere', producerId: s.producerId },
    pipedProducerChanged: { room, originNodeId: 'sfu-elsewhere', producerId: s.producerId, event: 1 },
    closePipe: { room, peerNodeId: 'sfu-elsewhere' },
  };
  return structuredClone(requests[method]);
}

/** Values no valid request holds. */
function hostileValues(next: () => number): Json[] {
  let deep: Json = { mimeType: MARKER };
  const depth = 1 + Math.floor(next() * 30);
  for (let i = 0; i < depth; i++) deep = next() < 0.5 ? { nested: deep } : [deep];
  return [
    undefined,
    null,
    '',
    MARKER.repeat(1 + Math.floor(next() * 20_000)),
    `${MARKER}\u0000\r\n\u001b[31m\u2028`,
    `${MARKER}\ud800`,
    `🙂${MARKER}ē\u202e`,
    `../${MARKER}/*.>`,
    'a'.repeat(65),
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    -1,
    0,
    65_536,
    2 ** 32 + 5,
    -(2 ** 31),
    1.5,
    true,
    deep,
    Array.from({ length: 1 + Math.floor(next() * 10_000) }, (_, i) => i),
    JSON.parse(`{"__proto__": {"polluted": "${MARKER}"}, "constructor": {"prototype": 1}}`),
    { toString: 1, valueOf: MARKER },
    {},
    [],
  ];
}

/** Every path into a request (objects and arrays, Structs included). */
function paths(value: Json, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (value === null || typeof value !== 'object') return [prefix];
  const own = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value as object);
  return [prefix, ...own.flatMap((key) => paths((value as Record<string | number, Json>)[key], [...prefix, key]))];
}

/** A copy, so one hostile value placed twice is not one object twice (the encoder would see a cycle-free tree). */
function structuredCloneSafe(value: Json): Json {
  try {
    return structuredClone(value);
  } catch {
    return value;
  }
}

function setPath(target: Record<string | number, Json>, path: Array<string | number>, value: Json): Json {
  if (path.length === 0) return value;
  let at: Record<string | number, Json> = target;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, Json>;
  const last = path[path.length - 1]!;
  if (value === undefined && !Array.isArray(at)) delete at[last];
  else at[last] = value;
  return target;
}

describe('SFU gRPC API under a seeded fuzzer', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let clients: SfuClients;

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url, env: { LOG_LEVEL: 'warn' } });
    clients = new SfuClients(`127.0.0.1:${sfu.grpcPort}`);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await sfu?.stop();
    await nats?.stop();
  });

  /** A room with a transport each way, a producer and a consumer, through valid calls only. */
  async function freshState(batch: number): Promise<State> {
    const client = clients.as('signaling');
    const room = { tenant: 'demo', room: `fuzz-${batch}` };
    const participantId = `PA_fuzz${batch}`;
    await callUnary(client, client.openRoom, { room });
    const send = await callUnary(client, client.createWebRtcTransport, { room, participantId, direction: TransportDirection.TRANSPORT_DIRECTION_SEND });
    const recv = await callUnary(client, client.createWebRtcTransport, { room, participantId: `${participantId}x`, direction: TransportDirection.TRANSPORT_DIRECTION_RECV });
    const { producerId } = await callUnary(client, client.produce, {
      transport: { room, transportId: send.transportId },
      participantId,
      kind: MediaKind.MEDIA_KIND_AUDIO,
      rtpParameters: opusRtpParameters(),
      source: TrackSource.TRACK_SOURCE_MICROPHONE,
      paused: false,
    });
    const { consumerId } = await callUnary(client, client.consume, { transport: { room, transportId: recv.transportId }, producerId, rtpCapabilities: deviceCapabilities });
    return { room, participantId, sendTransport: send.transportId, recvTransport: recv.transportId, producerId, consumerId };
  }

  it(`stays up and answers after every batch (seed ${seed}, ${batches} batches)`, async () => {
    const next = random(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
    const methods = Object.keys(sfuAccess) as Methods[];
    const identities: GrpcTestIdentity[] = ['signaling', 'sfu', 'recorder', 'stranger'];
    const codes = new Map<string, number>();
    const leaks: string[] = [];
    /** Failures the SFU did not foresee (answered with a reference): each one is a bug to map. */
    const internal: string[] = [];

    for (let batch = 0; batch < batches; batch++) {
      const state = await freshState(batch);
      const calls: Array<Promise<void>> = [];
      for (let i = 0; i < callsPerBatch; i++) {
        const method = pick(methods);
        const allowed = sfuAccess[method] as readonly GrpcTestIdentity[];
        // Mostly the caller the method is for, so requests get past the identity check.
        const identity = next() < 0.85 ? pick(allowed) : pick(identities);
        const client = clients.as(identity);
        const roll = next();
        if (roll < 0.1) {
          // Bytes that do not decode: truncated, or noise.
          const name = method[0]!.toUpperCase() + method.slice(1);
          const valid = (SfuService[method].requestSerialize as (value: unknown) => Buffer)(validRequest(method, state));
          const bytes = next() < 0.5 ? valid.subarray(0, Math.floor(next() * valid.length)) : Buffer.from(Array.from({ length: 1 + Math.floor(next() * 64) }, () => Math.floor(next() * 256)));
          calls.push(rawCall(client, name, bytes).then((error) => void codes.set(`raw:${error?.code ?? 0}`, (codes.get(`raw:${error?.code ?? 0}`) ?? 0) + 1)));
          continue;
        }
        let request: Json = validRequest(method, state);
        if (roll < 0.9) {
          const hostile = hostileValues(next);
          for (let m = 0; m < 1 + Math.floor(next() * 3) && request !== null && typeof request === 'object'; m++) {
            request = setPath(request as Record<string, Json>, pick(paths(request)), structuredCloneSafe(pick(hostile)));
          }
        }
        const fn = (client as unknown as Record<string, Parameters<typeof callUnary>[1]>)[method];
        calls.push(
          outcome(callUnary(client as SfuClient, fn, request as never, 5_000)).then(({ code, message }) => {
            // The client's own encoder refusing a value (nothing was sent) is not the server's answer.
            const label = code === 'INTERNAL' && !message.startsWith('internal error (reference') ? 'NOT_SENT' : code;
            codes.set(`${method}:${label}`, (codes.get(`${method}:${label}`) ?? 0) + 1);
            if (label === 'NOT_SENT') return;
            if (code === 'INTERNAL') internal.push(method);
            if (message.includes(MARKER) || /mediasoup|\[method:|at .*\.(ts|js):\d+|ECONNREFUSED/.test(message) || message.length > 400) leaks.push(`${method} (${code}): ${message.slice(0, 200)}`);
          }),
        );
      }
      await Promise.all(calls);
      // After each batch: the process runs and answers a valid call in time.
      expect(sfu.running, `the SFU died in batch ${batch} (seed ${seed})\n${sfu.logs.slice(-2000)}`).toBe(true);
      const alive = await outcome(callUnary(clients.as('signaling'), clients.as('signaling').getNodeInfo, {}, 5_000));
      expect(alive.code, `no answer after batch ${batch} (seed ${seed})`).toBe('OK');
      const room = await outcome(callUnary(clients.as('signaling'), clients.as('signaling').openRoom, { room: { tenant: 'demo', room: `alive-${batch}` } }, 5_000));
      expect(room.code).toBe('OK');
    }
    // A long run reports what the calls got.
    if (process.env.SFU_FUZZ_DEBUG)
      console.log(
        sfu.logs
          .split('\n')
          .filter((l) => l.includes('handler failed'))
          .join('\n'),
      );
    if (process.env.SFU_FUZZ_BATCHES)
      console.log(
        `seed ${seed}: ${[...codes]
          .sort()
          .map(([k, n]) => `${k}=${n}`)
          .join(' ')}`,
      );
    expect(leaks, `answers that echo the request or carry internal text (seed ${seed})`).toEqual([]);
    expect(internal, `requests that failed in a way the SFU did not foresee (seed ${seed}; its log has the details)`).toEqual([]);
    // Every method was reached, refusals by schema happened, and nothing crashed along the way.
    const reached = new Set([...codes.keys()].map((k) => k.split(':')[0]));
    expect(reached.size).toBeGreaterThan(methods.length / 2);
    expect([...codes.keys()].some((k) => k.endsWith(':BAD_REQUEST'))).toBe(true);
    expect([...codes.keys()].some((k) => k.endsWith(':PERMISSION_DENIED'))).toBe(true);
  }, 120_000);
});
