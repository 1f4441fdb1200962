import type { RecordingStatus } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { Emit } from '../events.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { Participant, RecordingEvent, RoomEvents } from '../types.js';

/** What the recording controls need of their room. */
export interface RecordingContext {
  signaling: Pick<SignalingClient, 'request'>;
  /** The local participant or another one present, by id. */
  participantById(participantId: string): Participant | undefined;
  emit: Emit<Pick<RoomEvents, 'recording'>>;
}

/** The room's recording: its controls, and its state as last heard of. */
export class Recording {
  /** Undefined while the room is not recorded. */
  private last: RecordingEvent | undefined;

  constructor(private readonly context: RecordingContext) {}

  /** The recording as last heard of. */
  get current(): RecordingEvent | undefined {
    return this.last;
  }

  async start(): Promise<RecordingEvent> {
    // Start and stop wait on the recorder service behind signaling (stop for up to a minute).
    return this.eventFrom(await this.context.signaling.request('startRecording', {}, 30_000));
  }

  async pause(): Promise<RecordingEvent> {
    return this.eventFrom(await this.context.signaling.request('pauseRecording', {}));
  }

  async resume(): Promise<RecordingEvent> {
    return this.eventFrom(await this.context.signaling.request('resumeRecording', {}));
  }

  async stop(): Promise<RecordingEvent> {
    return this.eventFrom(await this.context.signaling.request('stopRecording', {}, 60_000));
  }

  /** Takes in the recording's status (undefined: not recorded) and tells the app when the state changed. */
  update(status: RecordingStatus | undefined): void {
    if (!status) {
      // Not recorded (any more): a recording that ended while we were away is reported stopped.
      if (this.last && this.last.state !== 'stopped') this.update({ recordingId: this.last.recordingId, state: 'stopped', by: '' });
      return;
    }
    if (this.last?.recordingId === status.recordingId && this.last.state === status.state) return;
    this.last = this.eventFrom(status);
    this.context.emit('recording', this.last);
  }

  private eventFrom(status: RecordingStatus): RecordingEvent {
    return { recordingId: status.recordingId, state: status.state as RecordingEvent['state'], by: this.context.participantById(status.by) };
  }
}
