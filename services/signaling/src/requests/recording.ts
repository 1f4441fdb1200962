import type { RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { RecordingStatus } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { RecorderDirectory } from '@gateway/cluster';
import type { ParticipantSession } from '../participant/ParticipantSession.js';
import { controlRoomRecording, refuseRecordingIfErased, startRoomRecording, type RecordingControl } from '../rooms/recording.js';
import type { ErasedIn } from './erasure.js';
import type { Handlers } from './types.js';

export interface RecordingContext {
  recorders: RecorderDirectory;
  /** The tenant's recording policy, as the recorder is told of it. */
  recordingOptions(tenant: string): RecordingOptions;
  erasedIn: ErasedIn;
}

export type RecordingCase = 'startRecording' | 'pauseRecording' | 'resumeRecording' | 'stopRecording';

/** Recording controls: agents whose token grants canRecord. */
export function recordingHandlers(ctx: RecordingContext): Handlers<RecordingCase> {
  function mayRecord(session: ParticipantSession): void {
    if (session.info.role !== 'agent' || !session.grant.grants.canRecord) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not control recording');
  }

  async function control(session: ParticipantSession, action: RecordingControl): Promise<RecordingStatus> {
    mayRecord(session);
    return controlRoomRecording(ctx.recorders, session.tenant, session.room, session.participantId, action);
  }

  return {
    async startRecording(session) {
      mayRecord(session);
      await refuseRecordingIfErased(ctx.erasedIn, session.tenant, session.room);
      return startRoomRecording(ctx.recorders, session.tenant, session.room, session.participantId, ctx.recordingOptions(session.tenant));
    },
    pauseRecording: (session) => control(session, 'pauseRecording'),
    resumeRecording: (session) => control(session, 'resumeRecording'),
    stopRecording: (session) => control(session, 'stopRecording'),
  };
}
