import { TypedEmitter } from '@gateway/common';
import type { Recording } from '@gateway/proto/gateway/recorder/v1/recorder';

/**
 * What a recorder node tells monitoring (metrics), apart from what drives its jobs, as
 * mediasoup's `observer`: the metrics listen here and never reach into the node.
 */
export type RecorderObserverEvents = {
  /** A job was admitted (it counts as running from now until it is removed). */
  jobadded: [recordingId: string];
  /** A job ended, or failed to start. */
  jobremoved: [recordingId: string];
  /** A job of this node ended: its final state, what it stored, the CPU its captures used. */
  jobended: [recording: Recording, cpuSeconds: number];
  /** A job started a capture (one ffmpeg run): the first of a recording, or one replacing another. */
  capturestarted: [];
  /** This node finished the recording of a recorder that died. */
  orphanfinished: [recording: Recording];
};

export class RecorderObserver extends TypedEmitter<RecorderObserverEvents> {}
