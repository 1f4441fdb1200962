import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { subjects } from '@gateway/common';
import { NatsServer, waitFor } from '@gateway/testing';
import { RoomEventBus, decodeRoomEvent, encodeRoomEvent } from './RoomEventBus.js';

/**
 * Room events go through a real nats-server, published and read as the services that do so
 * (with their least-privilege permissions): what one publishes the other reads, checked.
 */
describe('the room-event bus', () => {
  let nats: NatsServer;
  let sfu: NatsConnection;
  let recorder: NatsConnection;
  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await nats.connect('sfu');
    recorder = await nats.connect('recorder');
  }, 30_000);

  afterAll(async () => {
    await sfu?.close();
    await recorder?.close();
    await nats?.stop();
  });

  it('delivers what one node publishes to another, in order, stamped with its origin', async () => {
    const publisher = new RoomEventBus(sfu, 'sfu-a', log);
    const subscriber = new RoomEventBus(recorder, 'rec-a', log);
    const received: RoomEvent[] = [];
    const subscription = subscriber.subscribe('demo', 'room-1', (event) => {
      received.push(event);
    });
    await recorder.flush();
    publisher.publish('demo', 'room-1', { $case: 'activeSpeaker', value: { participantId: 'PA_1', producerId: 'PR_1' } });
    publisher.publish('demo', 'room-1', { $case: 'roomClosed', value: { reason: 'node_closed', nodeId: 'sfu-a' } });
    await publisher.flush();
    await waitFor(() => received.length === 2, 5_000, 'both events');
    expect(received.map((e) => e.event?.$case)).toEqual(['activeSpeaker', 'roomClosed']);
    expect(received[0]).toMatchObject({ tenant: 'demo', room: 'room-1', origin: 'sfu-a' });
    expect(received[0]!.atMs).toBeGreaterThan(0);
    subscription.unsubscribe();
  });

  it('drops invalid events and events naming another room, and goes on after a failing handler', async () => {
    const bus = new RoomEventBus(recorder, 'rec-a', log);
    const received: string[] = [];
    let failed = false;
    const subscription = bus.subscribe('demo', 'room-2', (event) => {
      if (!failed) {
        failed = true;
        throw new Error('handler failure');
      }
      received.push(event.event?.$case ?? 'none');
    });
    await recorder.flush();
    lines.length = 0;
    const subject = subjects.roomEvents('demo', 'room-2');
    sfu.publish(subject, encodeRoomEvent('demo', 'room-2', 'sfu-a', { $case: 'activeSpeaker', value: { participantId: 'PA_1', producerId: 'PR_1' } }));
    sfu.publish(subject, new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    sfu.publish(subject, encodeRoomEvent('other', 'room-9', 'sfu-a', { $case: 'roomClosed', value: { reason: 'closed', nodeId: 'sfu-a' } }));
    sfu.publish(subject, encodeRoomEvent('demo', 'room-2', 'sfu-a', { $case: 'roomClosed', value: { reason: 'closed', nodeId: 'sfu-a' } }));
    await sfu.flush();
    await waitFor(() => received.length === 1, 5_000, 'the valid event after the bad ones');
    expect(received).toEqual(['roomClosed']);
    expect(lines.join('')).toMatch(/invalid room event dropped/);
    expect(lines.join('')).toMatch(/handling a room event failed/);

    // Unsubscribed: nothing more arrives.
    subscription.unsubscribe();
    sfu.publish(subject, encodeRoomEvent('demo', 'room-2', 'sfu-a', { $case: 'roomClosed', value: { reason: 'closed', nodeId: 'sfu-a' } }));
    await sfu.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(received).toEqual(['roomClosed']);
  });

  it('decodes only what passes the room-event checks', () => {
    const bytes = encodeRoomEvent('demo', 'room-3', 'sfu-a', { $case: 'activeSpeaker', value: { participantId: 'PA_1', producerId: 'PR_1' } });
    expect(decodeRoomEvent(bytes)).toMatchObject({ tenant: 'demo', room: 'room-3', origin: 'sfu-a' });
    expect(() => decodeRoomEvent(RoomEvent.encode(RoomEvent.create({ tenant: 'de mo', room: 'x', atMs: 1, origin: 'a' })).finish())).toThrow();
  });
});
