import dgram from 'node:dgram';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@gateway/testing';
import { mediaCodecs } from './codecs.js';
import type { MediaAppData } from './mediaTypes.js';
import { RoomTaps } from './RoomTaps.js';

const opus = { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 1111 }] };

/** A UDP socket on loopback that counts the RTP packets that arrive (RTCP apart, RFC 5761). */
async function listener(): Promise<{ port: number; received: () => number; close: () => void }> {
  const socket = dgram.createSocket('udp4');
  let count = 0;
  socket.on('message', (packet: Buffer) => {
    const type = packet[1] ?? 0;
    if (type < 192 || type > 223) count++;
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
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

/**
 * A room's recording taps on a real mediasoup worker, fed with real RTP: a paused tap sends
 * nothing (a PCI pause), a resumed one sends, a closed one stops.
 */
describe('room taps', () => {
  let worker: types.Worker;
  let router: types.Router;
  let producer: types.Producer<MediaAppData>;
  let stopMedia: () => void = () => undefined;
  const producers = new Map<string, types.Producer<MediaAppData>>();

  beforeAll(async () => {
    worker = await mediasoup.createWorker({ logLevel: 'error' });
    router = await worker.createRouter({ mediaCodecs });
    const input = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    producer = await input.produce<MediaAppData>({ kind: 'audio', rtpParameters: opus, appData: { participantId: 'PA_publisher', source: 'microphone' } });
    producers.set(producer.id, producer);
    stopMedia = rtpSender(input.tuple.localPort);
  });

  afterAll(async () => {
    stopMedia();
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.observer.once('close', () => resolve()));
    worker.close();
    await exited;
  });

  const tapsOf = () => {
    let changes = 0;
    const taps = new RoomTaps({
      router,
      assertOpen: () => undefined,
      producer: (id) => {
        const found = producers.get(id);
        if (!found) throw new Error('no such producer');
        return found;
      },
      changed: () => changes++,
    });
    return { taps, changes: () => changes };
  };

  it('sends nothing while paused, the media once resumed, and nothing once closed', async () => {
    const { taps, changes } = tapsOf();
    const recorder = await listener();
    try {
      const { consumer } = await taps.createStream('tap-1', producer.id, { ip: '127.0.0.1', port: recorder.port }, '127.0.0.1', true);
      expect(consumer.paused).toBe(true);
      expect(taps.sending).toBe(true);
      expect(taps.consumers).toEqual([consumer]);
      await new Promise((r) => setTimeout(r, 300));
      expect(recorder.received()).toBe(0);

      await taps.setPaused('tap-1', false);
      expect(consumer.paused).toBe(false);
      await waitFor(() => recorder.received() > 5, 5_000, 'RTP at the recorder');

      await expect(taps.createStream('tap-1', producer.id, { ip: '127.0.0.1', port: recorder.port }, '127.0.0.1')).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });

      taps.close('tap-1');
      expect(consumer.closed).toBe(true);
      expect(taps.sending).toBe(false);
      expect(changes()).toBeGreaterThan(0);
      const after = recorder.received();
      await new Promise((r) => setTimeout(r, 200));
      expect(recorder.received()).toBeLessThanOrEqual(after + 1);
    } finally {
      recorder.close();
    }
  });

  it('refuses to pause a tap it does not have', async () => {
    const { taps } = tapsOf();
    await expect(taps.setPaused('tap-unknown', true)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Closing an unknown tap does nothing.
    taps.close('tap-unknown');
    expect(taps.sending).toBe(false);
  });
});
