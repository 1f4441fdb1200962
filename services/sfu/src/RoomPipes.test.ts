import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeMediaPorts, waitFor } from '@gateway/testing';
import { mediaCodecs } from './codecs.js';
import type { MediaAppData, PipeListen } from './mediaTypes.js';
import { RoomPipes, type PipedProducerChange } from './RoomPipes.js';

const opus = { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 1111 }] };

/** One side of a room as its pipes see it: a router, its producers, and what it was told. */
function side(router: types.Router) {
  const producers = new Map<string, types.Producer<MediaAppData>>();
  const changes: Array<[string, string, PipedProducerChange]> = [];
  let loadChanges = 0;
  const pipes = new RoomPipes({
    router,
    assertOpen: () => undefined,
    producer: (id) => {
      const producer = producers.get(id);
      if (!producer) throw new Error('no such producer');
      return producer;
    },
    findProducer: (id) => producers.get(id),
    adoptProducer: async (producer) => {
      producers.set(producer.id, producer);
      producer.observer.once('close', () => producers.delete(producer.id));
    },
    pipedProducerChanged: (peer, producerId, change) => changes.push([peer, producerId, change]),
    changed: () => loadChanges++,
  });
  return { router, pipes, producers, changes, loadChanges: () => loadChanges };
}

/**
 * A room's pipes between two nodes, on real mediasoup workers (two standing for the
 * two nodes): the importer opens its end, the origin answers with its own, a producer goes
 * through under its own id, and the origin tells the importer what becomes of it.
 */
describe('room pipes', () => {
  // Two workers, as two nodes have: a producer id is unique within a worker.
  let worker: types.Worker;
  let otherWorker: types.Worker;
  let listen: PipeListen;

  beforeAll(async () => {
    worker = await mediasoup.createWorker({ logLevel: 'error' });
    otherWorker = await mediasoup.createWorker({ logLevel: 'error' });
    const base = await freeMediaPorts(1);
    listen = { listenIp: '127.0.0.1', portMin: base + 100, portMax: base + 199 };
  });

  afterAll(async () => {
    for (const w of [worker, otherWorker]) {
      if (!w) continue;
      const exited = new Promise<void>((resolve) => w.observer.once('close', () => resolve()));
      w.close();
      await exited;
    }
  });

  it('imports a producer of the origin under its id, mirrors what the origin reports, and closes with the peer', async () => {
    const origin = side(await worker.createRouter({ mediaCodecs }));
    const importer = side(await otherWorker.createRouter({ mediaCodecs }));
    const input = await origin.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const producer = await input.produce<MediaAppData>({ kind: 'audio', rtpParameters: opus, appData: { participantId: 'PA_origin', source: 'microphone' } });
    origin.producers.set(producer.id, producer);

    const { endpoint: importerEnd, connected } = await importer.pipes.inFrom('node-origin', listen);
    expect(connected).toBe(false);
    expect(importerEnd.ip).toBe('127.0.0.1');
    const originEnd = await origin.pipes.openOut('node-importer', importerEnd, listen);
    await importer.pipes.connectIn('node-origin', originEnd);
    expect(origin.pipes.peers()).toEqual(['node-importer']);
    expect(importer.pipes.count).toBe(1);

    // An imported producer cannot be piped on; the origin's own can.
    const { consumer } = await origin.pipes.consume('node-importer', producer.id);
    const imported = await importer.pipes.importProducer(
      'node-origin',
      { producerId: producer.id, participantId: 'PA_origin', kind: 'audio', source: 'microphone', paused: false },
      consumer.rtpParameters,
    );
    expect(imported.id).toBe(producer.id);
    expect(imported.appData.importedFrom).toBe('node-origin');
    expect(importer.producers.get(producer.id)).toBe(imported);
    // Importing again gives the same producer.
    expect(await importer.pipes.importProducer('node-origin', { producerId: producer.id, participantId: 'PA_origin', kind: 'audio', paused: false }, consumer.rtpParameters)).toBe(imported);

    await producer.pause();
    await waitFor(() => origin.changes.length > 0, 2_000, 'the pause reported');
    expect(origin.changes[0]).toEqual(['node-importer', producer.id, 'paused']);
    await producer.resume();
    await waitFor(() => origin.changes.some(([, , change]) => change === 'resumed'), 2_000, 'the resume reported');

    // The peer gone: both ends close, and the producer imported through them with them.
    importer.pipes.closeWith('node-origin');
    expect(importer.pipes.inbound.has('node-origin')).toBe(false);
    await waitFor(() => !importer.producers.has(producer.id), 2_000, 'the imported producer closed');
    origin.pipes.closeWith('node-importer');
    expect(origin.pipes.peers()).toEqual([]);
    // A closed pipe is no closed producer: nothing more to tell the peer.
    expect(origin.changes.filter(([, , change]) => change === 'closed')).toEqual([]);
    expect(origin.loadChanges()).toBeGreaterThan(0);
  });

  it('refuses what needs a pipe when there is none', async () => {
    const lonely = side(await worker.createRouter({ mediaCodecs }));
    await expect(lonely.pipes.consume('node-x', 'PR_x')).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await expect(lonely.pipes.connectIn('node-x', { ip: '127.0.0.1', port: 1, srtpParameters: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: '' } })).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await expect(lonely.pipes.importProducer('node-x', { producerId: 'PR_x', participantId: 'PA_x', kind: 'audio', paused: false }, opus as types.RtpParameters)).rejects.toMatchObject({
      code: 'INVALID_STATE',
    });
  });
});
