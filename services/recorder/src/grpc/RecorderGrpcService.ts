import { z } from 'zod';
import { RecorderService, type Recording, type RecordingOptions, type RecordingRef, type StartRecordingRequest } from '@gateway/proto/gateway/recorder/v1/recorder';
import { type grpc, parseWith, schemas, unaryHandlers, withCheckedDecoding, type GrpcAccess, type Logger } from '@gateway/common';

/** What the gRPC API needs of the node's recordings (RecordingJobs is it): the API never depends on the node class. */
export interface RecordingControl {
  startRecording(tenant: string, room: string, requestedBy: string, options?: RecordingOptions): Promise<Recording>;
  /** A running job of the tenant on this node, or NOT_FOUND. */
  job(tenant: string, recordingId: string): { pause(by: string): Promise<Recording>; resume(by: string): Promise<Recording> };
  stopRecording(tenant: string, recordingId: string, by: string): Promise<Recording>;
  discardRecording(tenant: string, recordingId: string, by: string): Promise<{ recordingId: string; segments: number }>;
  getRecording(tenant: string, recordingId: string): Promise<Recording>;
}

const subjectToken = schemas.subjectToken;
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
export function registerRecorderService(server: grpc.Server, recordings: RecordingControl, options: { requireIdentity: boolean; log: Logger }): void {
  const { requireIdentity, log } = options;
  const handlers = {
    startRecording: async (request: StartRecordingRequest) => {
      const req = parseWith(startRequest, request, 'StartRecording request');
      return recordings.startRecording(req.tenant, req.room, req.requestedBy, req.options);
    },
    pauseRecording: async (request: RecordingRef) => {
      const req = ref(request, 'PauseRecording');
      return recordings.job(req.tenant, req.recordingId).pause(req.requestedBy);
    },
    resumeRecording: async (request: RecordingRef) => {
      const req = ref(request, 'ResumeRecording');
      return recordings.job(req.tenant, req.recordingId).resume(req.requestedBy);
    },
    stopRecording: async (request: RecordingRef) => {
      const req = ref(request, 'StopRecording');
      return recordings.stopRecording(req.tenant, req.recordingId, req.requestedBy);
    },
    discardRecording: async (request: RecordingRef) => {
      const req = ref(request, 'DiscardRecording');
      return recordings.discardRecording(req.tenant, req.recordingId, req.requestedBy);
    },
    getRecording: async (request: RecordingRef) => {
      const req = ref(request, 'GetRecording');
      return recordings.getRecording(req.tenant, req.recordingId);
    },
  };
  const access: GrpcAccess<typeof handlers> = recorderAccess;
  server.addService(
    withCheckedDecoding(RecorderService),
    unaryHandlers(handlers, {
      access,
      requireIdentity,
      log,
    }),
  );
}
