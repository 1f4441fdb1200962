import { z } from 'zod';
import { decodeChecked, schemas } from './validation.js';
import { RecordingJobRecord } from '@gateway/proto/gateway/recorder/v1/recorder';

/**
 * A recording job's record read back from KV: another node may finish it from this record
 * (stream ids become file names, segment ids are read from the object store), so it is checked
 * before anything uses it.
 */
const id = schemas.id();
const optionalId = schemas.optionalId();
const millis = z.number().int().min(0).max(8.64e15);

const recordingSchema = z.object({
  recordingId: id,
  tenant: schemas.subjectToken(),
  room: schemas.room(),
  startedAtMs: millis,
  endedAtMs: millis,
  pauses: z.array(z.object({ startMs: millis, endMs: millis, pausedBy: optionalId, resumedBy: optionalId })).max(10_000),
  artifacts: z
    .array(
      z.object({
        artifactId: id,
        kind: z.string().max(32),
        contentType: z.string().max(128),
        participantId: optionalId,
        sizeBytes: z.number().int().min(0),
        durationMs: z.number().int().min(0),
        part: z.number().int().min(0).max(100_000),
      }),
    )
    .max(10_000),
  failureReason: schemas.text(1_024),
  startedBy: optionalId,
  participantIds: z.array(id).max(1_000),
});

export const recordingJobRecordSchema = z.object({
  recording: recordingSchema,
  nodeId: z.string().regex(/^[A-Za-z0-9_.-]{0,253}$/),
  refreshedAtMs: millis,
  streams: z
    .array(
      z.object({
        streamId: id,
        participantId: optionalId,
        role: z.string().max(16),
        source: z.enum(['camera', 'microphone', 'screen', 'screen_audio']),
        kind: z.enum(['audio', 'video']),
        mimeType: z
          .string()
          .max(64)
          .regex(/^[a-zA-Z0-9/._+-]*$/),
      }),
    )
    .max(1_000),
  segments: z.array(z.object({ streamId: id, objectId: id, startS: z.number().finite(), endS: z.number().finite() })).max(1_000_000),
  tapId: optionalId,
});

/**
 * A finished recording's record stays this long, so that any recorder answers GetRecording for
 * it (recording.ready is out by then), and is then deleted by whichever recorder sees it first;
 * the residue scanner reports one older than that.
 */
export const FINISHED_RECORDING_KEPT_MS = 10 * 60_000;

export function readJobRecord(bytes: Uint8Array): RecordingJobRecord {
  return decodeChecked(RecordingJobRecord, bytes, recordingJobRecordSchema, 'recording job record');
}
