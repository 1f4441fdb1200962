import type { ParticipantStore, RoomEventBus, RoomEventSubscription } from '@gateway/cluster';
import type { Logger } from '@gateway/common';
import type { RecordingJob } from './RecordingJob.js';

/** Waits after a new producer for the others that usually come with it (camera and microphone). */
const REFRESH_DELAY_MS = 300;

/**
 * Follows the room of each running recording: new or resumed producers join the recording;
 * the room ending (or emptying) ends it.
 */
export class RoomFollower {
  private readonly followed = new Map<string, RoomEventSubscription>();

  constructor(
    private readonly roomEvents: RoomEventBus,
    private readonly participants: ParticipantStore,
    private readonly log: Logger,
  ) {}

  /** `sfuNodeId`: the node the job taps (the room's home when it started). */
  follow(job: RecordingJob, sfuNodeId: string): void {
    const { tenant, room, recordingId } = job.recording;
    let refresh: NodeJS.Timeout | undefined;
    // The event's trace (a new track, a leave) goes on into what the recording does about it.
    const subscription = this.roomEvents.subscribe(
      tenant,
      room,
      async (event) => {
        const kind = event.event?.$case;
        if (kind === 'producerAdded' || kind === 'producerResumed') {
          // Several producers usually arrive together: one new capture for all.
          clearTimeout(refresh);
          refresh = setTimeout(() => void job.refreshStreams(), REFRESH_DELAY_MS);
        } else if (kind === 'roomClosed') {
          // Only the tapped node closing the room ends the recording: another node of the room
          // draining or dying does not end the call.
          const closedOn = event.event?.$case === 'roomClosed' ? event.event.value.nodeId : '';
          if (closedOn === '' || closedOn === sfuNodeId) void job.stop('', '');
        } else if (kind === 'participantLeft') {
          const left = await this.participants.list(tenant, room).catch(() => undefined);
          if (left?.length === 0) void job.stop('', '');
        }
      },
      this.log.child({ recordingId }),
    );
    this.followed.set(recordingId, subscription);
  }

  /** The recording ended: its room is followed no more. */
  unfollow(recordingId: string): void {
    this.followed.get(recordingId)?.unsubscribe();
    this.followed.delete(recordingId);
  }
}
