import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ParticipantRecord } from '@gateway/proto/gateway/events/v1/events';
import { RoomEventBus, type ParticipantStore } from '@gateway/cluster';
import { createLogger } from '@gateway/common';
import { NatsServer, waitFor } from '@gateway/testing';
import type { RecordingJob } from './RecordingJob.js';
import { RoomFollower } from './RoomFollower.js';

const log = createLogger('recorder-test', 'silent');

/** A job that only counts what the follower asks of it. */
function fakeJob(tenant: string, room: string, recordingId: string) {
  const asked = { refreshes: 0, stops: 0 };
  const job = {
    recording: { tenant, room, recordingId },
    refreshStreams: async () => {
      asked.refreshes++;
    },
    stop: async () => {
      asked.stops++;
    },
  };
  return { job: job as unknown as RecordingJob, asked };
}

/**
 * The recorder follows a recording's room over a real nats-server (as the recorder, with its
 * permissions), from events the SFU and signaling publish.
 */
describe("following a recording's room", () => {
  let nats: NatsServer;
  let sfu: NatsConnection;
  let recorder: NatsConnection;
  let signaling: NatsConnection;
  let left: ParticipantRecord[] = [{} as ParticipantRecord];
  const participants = { list: async () => left } as unknown as ParticipantStore;

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await nats.connect('sfu');
    recorder = await nats.connect('recorder');
    signaling = await nats.connect('signaling');
  }, 30_000);

  afterAll(async () => {
    await sfu?.close();
    await recorder?.close();
    await signaling?.close();
    await nats?.stop();
  });

  it('captures anew once for producers that arrive together, and stops when the tapped node closes the room', async () => {
    const follower = new RoomFollower(new RoomEventBus(recorder, 'rec-1', log), participants, log);
    const { job, asked } = fakeJob('demo', 'room-1', 'RC_1');
    follower.follow(job, 'sfu-home');
    await recorder.flush();
    const publisher = new RoomEventBus(sfu, 'sfu-home', log);
    const signalingBus = new RoomEventBus(signaling, 'sig-1', log);
    const producerAdded = (producerId: string) =>
      signalingBus.publish('demo', 'room-1', { $case: 'producerAdded', value: { participantId: 'PA_1', track: { producerId, source: 'microphone', kind: 'audio', paused: false } } });
    producerAdded('PR_1');
    producerAdded('PR_2');
    await signalingBus.flush();
    await waitFor(() => asked.refreshes === 1, 5_000, 'one new capture');
    await new Promise((r) => setTimeout(r, 400));
    expect(asked.refreshes).toBe(1);

    // Another node of the room closing it (draining, dying) does not end the call.
    publisher.publish('demo', 'room-1', { $case: 'roomClosed', value: { reason: 'node_closed', nodeId: 'sfu-other' } });
    await publisher.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(asked.stops).toBe(0);
    publisher.publish('demo', 'room-1', { $case: 'roomClosed', value: { reason: 'node_closed', nodeId: 'sfu-home' } });
    await publisher.flush();
    await waitFor(() => asked.stops === 1, 5_000, 'the recording stopped');

    // Unfollowed: nothing more is asked.
    follower.unfollow('RC_1');
    publisher.publish('demo', 'room-1', { $case: 'roomClosed', value: { reason: 'node_closed', nodeId: 'sfu-home' } });
    await publisher.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(asked.stops).toBe(1);
  });

  it('stops when the last participant has left', async () => {
    const follower = new RoomFollower(new RoomEventBus(recorder, 'rec-1', log), participants, log);
    const { job, asked } = fakeJob('demo', 'room-2', 'RC_2');
    follower.follow(job, 'sfu-home');
    await recorder.flush();
    const signalingBus = new RoomEventBus(signaling, 'sig-1', log);
    left = [{} as ParticipantRecord];
    signalingBus.publish('demo', 'room-2', { $case: 'participantLeft', value: { participantId: 'PA_1', reason: 'left' } });
    await signalingBus.flush();
    await new Promise((r) => setTimeout(r, 200));
    expect(asked.stops).toBe(0);
    left = [];
    signalingBus.publish('demo', 'room-2', { $case: 'participantLeft', value: { participantId: 'PA_2', reason: 'left' } });
    await signalingBus.flush();
    await waitFor(() => asked.stops === 1, 5_000, 'the recording stopped');
    follower.unfollow('RC_2');
  });
});
