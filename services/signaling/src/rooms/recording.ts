import type { RecordingStatus } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { RecordingOptions } from '@gateway/proto/gateway/recorder/v1/recorder';
import type { RecorderDirectory } from '@gateway/cluster';
import { ErrorCode, GatewayError, callUnary } from '@gateway/common';
import { erasedRefusal, type ErasedIn } from '../requests/erasure.js';

/**
 * The one rule on whether a call may be recorded (an agent's request, the room API, the
 * automatic recording of agents' calls): not once an end user of it asked for erasure, as the
 * recording would hold them again.
 */
export async function mayBeRecorded(erasedIn: ErasedIn, tenant: string, room: string): Promise<boolean> {
  return (await erasedIn(tenant, room)).size === 0;
}

/** Throws PERMISSION_DENIED when the call may not be recorded (mayBeRecorded). */
export async function refuseRecordingIfErased(erasedIn: ErasedIn, tenant: string, room: string): Promise<void> {
  if (!(await mayBeRecorded(erasedIn, tenant, room))) throw erasedRefusal('this call may not be recorded');
}

/**
 * Starts recording a room on the least-loaded recorder with room for it; a node that turns out
 * to be full (NO_CAPACITY) passes the job to the next one.
 */
export async function startRoomRecording(recorders: RecorderDirectory, tenant: string, room: string, requestedBy: string, options: RecordingOptions | undefined): Promise<RecordingStatus> {
  if (await recorders.recordingOf(tenant, room)) throw new GatewayError(ErrorCode.ALREADY_EXISTS, 'the room is already being recorded');
  const candidates = await recorders.candidates();
  if (candidates.length === 0) throw new GatewayError(ErrorCode.UNAVAILABLE, 'no recorder is available');
  let last: unknown;
  for (const node of candidates) {
    const client = recorders.clientFor(node.grpcAddress);
    try {
      const recording = await callUnary(client, client.startRecording, { tenant, room, requestedBy, options });
      return { recordingId: recording.recordingId, state: 'started', by: requestedBy };
    } catch (error) {
      if (!(error instanceof GatewayError) || (error.code !== ErrorCode.NO_CAPACITY && error.code !== ErrorCode.UNAVAILABLE && error.code !== ErrorCode.DRAINING)) throw error;
      last = error;
    }
  }
  throw new GatewayError(ErrorCode.UNAVAILABLE, 'every recorder is full', { cause: last });
}

export type RecordingControl = 'pauseRecording' | 'resumeRecording' | 'stopRecording';

/**
 * Pauses, resumes or stops the room's recording on the recorder holding it (NOT_FOUND when the
 * room is not being recorded); stopping waits for the recorder to finish the file. `requestedBy`
 * is a participant id, empty for the system (the room API).
 */
export async function controlRoomRecording(recorders: RecorderDirectory, tenant: string, room: string, requestedBy: string, action: RecordingControl): Promise<RecordingStatus> {
  const { recording, client } = await recorders.clientForRoom(tenant, room);
  const ref = { tenant, recordingId: recording.recordingId, requestedBy };
  const call = action === 'pauseRecording' ? client.pauseRecording : action === 'resumeRecording' ? client.resumeRecording : client.stopRecording;
  await callUnary(client, call, ref, action === 'stopRecording' ? 60_000 : 10_000);
  const state = action === 'pauseRecording' ? 'paused' : action === 'resumeRecording' ? 'resumed' : 'stopped';
  return { recordingId: recording.recordingId, state, by: requestedBy };
}
