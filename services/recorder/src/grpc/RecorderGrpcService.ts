import { z } from 'zod';
import { RecorderService, type RecordingRef, type StartRecordingRequest } from '@gateway/proto/gateway/recorder/v1/recorder';
import { SUBJECT_TOKEN, grpc, parseWith, schemas, unaryHandlers, withCheckedDecoding, type GrpcAccess, type Logger } from '@gateway/common';
import type { RecorderNode } from '../RecorderNode.js';

const subjectToken = () => z.string().regex(SUBJECT_TOKEN, 'must be 1-64 letters, digits, _ or -');
/** Who asked: a participant id, or empty when the platform itself did (the tenant's policy). */
const requestedBy = schemas.optionalId;

const recordingRef = z.object({ tenant: subjectToken(), recordingId: schemas.id(), requestedBy: requestedBy() });
const startRequest = z.object({
  tenant: subjectToken(),
  room: subjectToken(),
  requestedBy: requestedBy(),
  options: z.object({ transcodeMp4: z.boolean(), skipPausedAudio: z.boolean() }).optional(),
});

const ref = (request: RecordingRef, method: string) => parseWith(recordingRef, request, `${method} request`);

/** Which services may call each method: only signaling controls recordings. */
export const recorderAccess = {
  startRecording: ['signaling'],
  pauseRecording: ['signaling'],
  resumeRecording: ['signaling'],
  stopRecording: ['signaling'],
  getRecording: ['signaling'],
  // Signaling serves data-subject erasures of live rooms.
  discardRecording: ['signaling'],
} as const;

/** gateway.recorder.v1.Recorder: every call is scoped to the tenant it names, and checked before use. */
export function registerRecorderService(server: grpc.Server, node: RecorderNode, log: Logger): void {
  const handlers = {
    startRecording: async (request: StartRecordingRequest) => {
      const req = parseWith(startRequest, request, 'StartRecording request');
      return node.startRecording(req.tenant, req.room, req.requestedBy, req.options);
    },
    pauseRecording: async (request: RecordingRef) => {
      const req = ref(request, 'PauseRecording');
      return node.job(req.tenant, req.recordingId).pause(req.requestedBy);
    },
    resumeRecording: async (request: RecordingRef) => {
      const req = ref(request, 'ResumeRecording');
      return node.job(req.tenant, req.recordingId).resume(req.requestedBy);
    },
    stopRecording: async (request: RecordingRef) => {
      const req = ref(request, 'StopRecording');
      return node.stopRecording(req.tenant, req.recordingId, req.requestedBy);
    },
    discardRecording: async (request: RecordingRef) => {
      const req = ref(request, 'DiscardRecording');
      return node.discardRecording(req.tenant, req.recordingId, req.requestedBy);
    },
    getRecording: async (request: RecordingRef) => {
      const req = ref(request, 'GetRecording');
      return node.getRecording(req.tenant, req.recordingId);
    },
  };
  const access: GrpcAccess<typeof handlers> = recorderAccess;
  server.addService(
    withCheckedDecoding(RecorderService),
    unaryHandlers(handlers, {
      access,
      requireIdentity: node.config.grpcTls !== undefined,
      log
    }),
  );
}
