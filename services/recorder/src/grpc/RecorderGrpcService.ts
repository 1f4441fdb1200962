import { RecorderService, type RecordingRef, type StartRecordingRequest } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ErrorCode, GatewayError, grpc, unaryHandlers, type Logger } from '@gateway/common';
import type { RecorderNode } from '../RecorderNode.js';

function required(value: string, what: string): string {
  if (!value) throw new GatewayError(ErrorCode.BAD_REQUEST, `${what} is required`);
  return value;
}

/** gateway.recorder.v1.Recorder: every call is scoped to the tenant it names. */
export function registerRecorderService(server: grpc.Server, node: RecorderNode, log: Logger): void {
  const handlers = {
    startRecording: async (req: StartRecordingRequest) => node.startRecording(required(req.tenant, 'tenant'), required(req.room, 'room'), req.requestedBy, req.options),
    pauseRecording: async (req: RecordingRef) => node.job(required(req.tenant, 'tenant'), required(req.recordingId, 'recordingId')).pause(req.requestedBy),
    resumeRecording: async (req: RecordingRef) => node.job(required(req.tenant, 'tenant'), required(req.recordingId, 'recordingId')).resume(req.requestedBy),
    stopRecording: async (req: RecordingRef) => node.stopRecording(required(req.tenant, 'tenant'), required(req.recordingId, 'recordingId'), req.requestedBy),
    getRecording: async (req: RecordingRef) => node.getRecording(required(req.tenant, 'tenant'), required(req.recordingId, 'recordingId')),
  };
  server.addService(
    RecorderService,
    unaryHandlers(handlers, (method, error) => {
      if (error.code === ErrorCode.INTERNAL) log.error({ method, err: error }, 'gRPC handler failed');
    }),
  );
}
