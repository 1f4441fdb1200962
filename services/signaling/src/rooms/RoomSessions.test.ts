import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TENANT_KEK, StaticKeyring, buckets, openBucket, type NatsConnection } from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { RoomSessions } from './RoomSessions.js';

const participant = (i: number) => ({
  participantId: `PA_${i}`,
  role: i === 0 ? 'agent' : 'end_user',
  externalId: `user-${i}`,
  crmContactId: '',
  phoneNumber: '',
  deviceIds: [],
  joinedAtMs: 1_000 + i,
});

/** The room session records against a real nats-server, as signaling's identity. */
describe('RoomSessions', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect('signaling');
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('keeps every one of fifty participants joining a room at once', async () => {
    const sessions = new RoomSessions(nc, await openBucket(nc, buckets.roomSessions), keyring);
    await Promise.all(Array.from({ length: 50 }, (_, i) => sessions.join('demo', 'room-50', participant(i))));
    const [found] = (await sessions.ofTenant('demo')).filter((s) => s.room === 'room-50');
    expect(found?.participants.map((p) => p.participantId).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `PA_${i}`).sort());
  });

  it('reads the record again when another replica changed it since this one wrote it', async () => {
    const kv = await openBucket(nc, buckets.roomSessions);
    const here = new RoomSessions(nc, kv, keyring);
    const elsewhere = new RoomSessions(nc, kv, keyring);
    await here.join('demo', 'room-2', participant(1));
    await elsewhere.join('demo', 'room-2', participant(2));
    // `here` remembers the revision it wrote, which `elsewhere` moved on.
    await here.join('demo', 'room-2', participant(3));
    const [found] = (await here.ofTenant('demo')).filter((s) => s.room === 'room-2');
    expect(found?.participants.map((p) => p.participantId).sort()).toEqual(['PA_1', 'PA_2', 'PA_3']);
  });
});
