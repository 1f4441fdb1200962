import type { ParticipantSession } from '../participant/ParticipantSession.js';
import { chatHandlers, type ChatContext } from './chat.js';
import { dataHandlers, type DataContext } from './data.js';
import { deviceKeyHandlers, type DeviceKeyContext } from './deviceKeys.js';
import { lifecycleHandlers, type LifecycleContext } from './lifecycle.js';
import { mediaHandlers, type MediaContext } from './media.js';
import { participantHandlers, type ParticipantContext } from './participant.js';
import { recordingHandlers, type RecordingContext } from './recording.js';
import { smartActionHandlers, type SmartActionContext } from './smartActions.js';
import type { HandlerTable, RequestCase, RequestHandler, RequestMethod, ResponseResult } from './types.js';

/** What each concern's handlers are given; each gets its own part only. */
export interface RequestContexts {
  lifecycle: LifecycleContext;
  media: MediaContext;
  chat: ChatContext;
  data: DataContext;
  participant: ParticipantContext;
  recording: RecordingContext;
  smartActions: SmartActionContext;
  deviceKeys: DeviceKeyContext;
}

/** The handler of every `Request.method` case, one module per concern (the proto's sections). */
export function createHandlerTable(contexts: RequestContexts): HandlerTable {
  return {
    ...lifecycleHandlers(contexts.lifecycle),
    ...mediaHandlers(contexts.media),
    ...recordingHandlers(contexts.recording),
    ...chatHandlers(contexts.chat),
    ...dataHandlers(contexts.data),
    ...participantHandlers(contexts.participant),
    ...smartActionHandlers(contexts.smartActions),
    ...deviceKeyHandlers(contexts.deviceKeys),
  };
}

/** Serves one request of a joined participant; the response names the request's case. */
export async function dispatch(table: HandlerTable, session: ParticipantSession, method: RequestMethod): Promise<ResponseResult> {
  // The table pairs each case with its handler; TypeScript cannot follow that pairing through an
  // index, so the pair is widened here and the result is the handler's own case.
  const handler = table[method.$case] as unknown as RequestHandler<RequestCase>;
  const value = await handler(session, method.value as never);
  return { $case: method.$case, value } as unknown as ResponseResult;
}
