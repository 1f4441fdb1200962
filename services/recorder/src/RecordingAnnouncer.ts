import { jetstream } from '@nats-io/jetstream';
import { RecordingReady } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState, type Recording } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { ParticipantStore, RecorderDirectory, RoomEventBus } from '@gateway/cluster';
import { natsHeadersWithTrace, subjects, type Logger, type NatsConnection, sleepBackoff, WebhookEvents } from '@gateway/common';
import type { RecordingStatusName } from './RecordingJob.js';

/** Who announces: this node's id, and its gRPC address once its server listens. */
export interface AnnouncingNode {
  readonly nodeId: string;
  grpcAddress(): string;
}

/**
 * What a recorder says of its recordings: to the room (every participant, through signaling)
 * and in the room's recording record, as each one starts, pauses, resumes and stops; and
 * recording.ready on JetStream for crm-sync once a recording's files are stored.
 */
export class RecordingAnnouncer {
  /** Status updates in flight, by recording: a job's updates are applied in order. */
  private readonly statusUpdates = new Map<string, Promise<void>>();
  private readonly webhooks: WebhookEvents;

  constructor(
    private readonly nc: NatsConnection,
    private readonly node: AnnouncingNode,
    private readonly recorders: RecorderDirectory,
    private readonly roomEvents: RoomEventBus,
    private readonly participants: ParticipantStore,
    private readonly log: Logger,
  ) {
    this.webhooks = new WebhookEvents(nc, log);
  }

  /**
   * Tells the room and keeps the room's recording in KV. A recording's updates are applied in
   * order, so a quick stop never lands before its start.
   */
  status(recording: Recording, state: RecordingStatusName, by: string): Promise<void> {
    const id = recording.recordingId;
    const next = (this.statusUpdates.get(id) ?? Promise.resolve()).then(() => this.applyStatus(recording, state, by));
    this.statusUpdates.set(id, next);
    if (state === 'stopped') void next.finally(() => this.statusUpdates.get(id) === next && this.statusUpdates.delete(id));
    return next;
  }

  private async applyStatus(recording: Recording, state: RecordingStatusName, by: string): Promise<void> {
    const { tenant, room, recordingId } = recording;
    try {
      if (state === 'stopped') await this.recorders.clearRoomRecording(tenant, room, recordingId);
      else await this.recorders.setRoomRecording(tenant, room, { recordingId, nodeId: this.node.nodeId, grpcAddress: this.node.grpcAddress(), state });
    } catch (error) {
      this.log.warn({ err: error, recordingId }, 'updating the room recording failed');
    }
    try {
      this.roomEvents.publish(tenant, room, { $case: 'recording', value: { recordingId, state, by } });
    } catch (error) {
      this.log.warn({ err: error, recordingId }, 'telling the room the recording state failed');
    }
  }

  /** A recording this node finished for a recorder that died: the room's record of it goes. */
  async orphanEnded(recording: Recording): Promise<void> {
    await this.recorders.clearRoomRecording(recording.tenant, recording.room, recording.recordingId).catch(() => undefined);
  }

  /** recording.ready for crm-sync, with the participants' references and nothing else about them. */
  async ready(recording: Recording): Promise<void> {
    if (recording.artifacts.length === 0) return;
    const people = await this.participants.list(recording.tenant, recording.room).catch(() => []);
    const contacts = people
      .filter((p) => recording.participantIds.includes(p.info!.participantId))
      .map((p) => ({ participantId: p.info!.participantId, role: p.info!.role, externalId: p.info!.identity, crmContactId: '' }));
    const payload = RecordingReady.encode({ recording, contacts }).finish();
    // The message id makes a retry after a lost acknowledgement land only once.
    for (let attempt = 1; ; attempt++) {
      try {
        await jetstream(this.nc).publish(subjects.recordingReady(recording.tenant), payload, { msgID: recording.recordingId, timeout: 10_000, headers: natsHeadersWithTrace() });
        this.webhooks.emit(recording.tenant, {
          type: 'recording.ready',
          key: recording.recordingId,
          data: {
            room: { name: recording.room },
            recording: {
              recordingId: recording.recordingId,
              state: recording.state === RecordingState.RECORDING_STATE_COMPLETE ? 'complete' : recording.state === RecordingState.RECORDING_STATE_FAILED ? 'failed' : 'partial',
              startedAtMs: Number(recording.startedAtMs),
              endedAtMs: Number(recording.endedAtMs),
              artifacts: recording.artifacts.length,
            },
          },
        });
        return;
      } catch (error) {
        this.log.error({ err: error, recordingId: recording.recordingId, attempt }, 'announcing recording.ready failed');
        if (attempt >= 5 || this.nc.isClosed()) return;
        await sleepBackoff(attempt, { initialMs: 500, maxMs: 30_000 });
      }
    }
  }
}
