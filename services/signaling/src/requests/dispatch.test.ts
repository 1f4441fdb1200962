import { describe, expect, it, vi } from 'vitest';
import type { RoomEvent } from '@gateway/proto/gateway/events/v1/events';
import { ErrorCode, GatewayError } from '@gateway/common';
import type { RecorderDirectory } from '@gateway/cluster';
import type { ChatLog } from '../chat/ChatLog.js';
import { requestSchemas } from '../ws/requests.js';
import { sessionFor } from '../testing/fakes.js';
import { createHandlerTable, dispatch, type RequestContexts } from './dispatch.js';
import type { HandlerTable, RequestCase, RequestMethod, RequestHandler } from './types.js';

/**
 * Every case of the generated `Request.method` oneof. Typed as a record over the cases, so a
 * case added to the proto and not listed here (or one listed that the proto lost) fails to compile.
 */
const everyCase = {
  join: true,
  resume: true,
  createTransport: true,
  connectTransport: true,
  restartIce: true,
  produce: true,
  pauseProducer: true,
  resumeProducer: true,
  closeProducer: true,
  consume: true,
  resumeConsumer: true,
  pauseConsumer: true,
  setPreferredLayers: true,
  getStats: true,
  ping: true,
  leave: true,
  startRecording: true,
  pauseRecording: true,
  resumeRecording: true,
  stopRecording: true,
  sendMessage: true,
  redactMessage: true,
  requestSmartAction: true,
  answerSmartAction: true,
  deviceKeyOptions: true,
  registerDeviceKey: true,
  artifactUrl: true,
  sendData: true,
  updateParticipant: true,
} satisfies Record<RequestCase, true>;
const cases = Object.keys(everyCase) as RequestCase[];

function contexts(over: { erased?: string[] } = {}) {
  const published: Array<RoomEvent['event']> = [];
  const hub = { publish: (_tenant: string, _room: string, event: RoomEvent['event']) => void published.push(event) };
  const erasedIn = async () => new Set(over.erased ?? []);
  const end = vi.fn(async (_session: unknown, _reason: string) => undefined);
  const appended: unknown[] = [];
  const chat = {
    append: async (_tenant: string, _room: string, draft: Parameters<ChatLog['append']>[2]) => {
      appended.push(draft);
      return { message: { ...draft, messageId: 'MS_1', sentAtMs: 1 }, duplicate: false };
    },
    redact: async () => {
      throw new Error('not used');
    },
  } as unknown as RequestContexts['chat']['chat'];
  const unused = () => {
    throw new Error('not used in this test');
  };
  const value: RequestContexts = {
    lifecycle: { end },
    media: {
      limits: { transports: 2, producers: 2, consumers: 2 },
      hub,
      participants: async () => [],
      nodes: { placementOf: unused, node: unused, clientForNode: unused } as never,
      iceServers: () => [],
    },
    chat: { chat, hub, limits: { maxChars: 10, ratePerSecond: 1, rateBurst: 2 }, redactionPolicy: () => ({ kinds: [] }) },
    data: { hub, limits: { ratePerSecond: 1, rateBurst: 2 } },
    participant: { hub },
    recording: { recorders: {} as RecorderDirectory, recordingOptions: unused as never, erasedIn },
    smartActions: { actions: { request: unused, answer: unused, attachmentUrl: unused } as never, hub, participants: async () => [], erasedIn },
    deviceKeys: { actions: { registrationOptions: async () => ({ challenge: 'c' }), register: unused } as never, erasedIn },
  };
  return { value, published, end, appended };
}

describe('the request dispatch table', () => {
  it('has a handler for every Request case, and nothing else', () => {
    const table = createHandlerTable(contexts().value);
    expect(Object.keys(table).sort()).toEqual([...cases].sort());
    for (const c of cases) expect(typeof table[c]).toBe('function');
  });

  it('covers every method the frame parser accepts', () => {
    expect(Object.keys(requestSchemas).sort()).toEqual([...cases].sort());
  });

  it('routes each case to its own handler and answers under the same case', async () => {
    const seen: string[] = [];
    const table = Object.fromEntries(
      cases.map((c) => [
        c,
        (async () => {
          seen.push(c);
          return { handledBy: c };
        }) as RequestHandler<RequestCase>,
      ]),
    ) as unknown as HandlerTable;
    const { session } = sessionFor();
    for (const c of cases) {
      const result = await dispatch(table, session, { $case: c, value: {} } as unknown as RequestMethod);
      expect(result).toEqual({ $case: c, value: { handledBy: c } });
    }
    expect(seen).toEqual(cases);
  });

  it('refuses a second join or resume on a joined connection', async () => {
    const table = createHandlerTable(contexts().value);
    const { session } = sessionFor();
    await expect(dispatch(table, session, { $case: 'join', value: { token: 't', protocolVersion: 1 } })).rejects.toMatchObject({ code: ErrorCode.ALREADY_JOINED });
    await expect(dispatch(table, session, { $case: 'resume', value: { resumeToken: 't', protocolVersion: 1 } })).rejects.toMatchObject({ code: ErrorCode.ALREADY_JOINED });
  });

  it('answers a ping and ends the session on leave', async () => {
    const { value, end } = contexts();
    const table = createHandlerTable(value);
    const { session } = sessionFor();
    const pong = await dispatch(table, session, { $case: 'ping', value: { clientTimeMs: 42 } });
    expect(pong).toMatchObject({ $case: 'ping', value: { clientTimeMs: 42, serverTimeMs: expect.any(Number) } });
    expect(await dispatch(table, session, { $case: 'leave', value: {} })).toEqual({ $case: 'leave', value: {} });
    expect(end).toHaveBeenCalledWith(session, 'left');
  });

  it('stores and announces a chat message, within the chat budget and size', async () => {
    const { value, published, appended } = contexts();
    const table = createHandlerTable(value);
    const { session } = sessionFor();
    const sent = await dispatch(table, session, { $case: 'sendMessage', value: { text: 'hello', clientMessageId: 'c1' } });
    expect(sent).toMatchObject({ $case: 'sendMessage', value: { messageId: 'MS_1', text: 'hello', participantId: 'PA_1' } });
    expect(published).toEqual([{ $case: 'chatMessage', value: expect.objectContaining({ messageId: 'MS_1' }) }]);
    await expect(dispatch(table, session, { $case: 'sendMessage', value: { text: 'x'.repeat(11), clientMessageId: '' } })).rejects.toMatchObject({ code: ErrorCode.MESSAGE_TOO_LARGE });
    await expect(dispatch(table, session, { $case: 'sendMessage', value: { text: 'again', clientMessageId: '' } })).rejects.toMatchObject({ code: ErrorCode.RATE_LIMITED });
    expect(appended).toHaveLength(1);
  });

  it('relays a data message to the room, never stored, with its sender and destinations, within its own budget', async () => {
    const { value, published, appended } = contexts();
    const table = createHandlerTable(value);
    const { session } = sessionFor();
    const sent = await dispatch(table, session, { $case: 'sendData', value: { topic: 'typing', payload: '1', destinationParticipantIds: ['PA_2', 'PA_2', 'PA_1'] } });
    expect(sent).toEqual({ $case: 'sendData', value: { sentAtMs: expect.any(Number) } });
    // Named twice or oneself: once, and not oneself.
    expect(published).toEqual([{ $case: 'dataMessage', value: { topic: 'typing', payload: '1', sentAtMs: expect.any(Number), participantId: 'PA_1', destinationParticipantIds: ['PA_2'] } }]);
    await expect(dispatch(table, session, { $case: 'sendData', value: { topic: '', payload: 'x', destinationParticipantIds: ['PA_1'] } })).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    await expect(dispatch(table, session, { $case: 'sendData', value: { topic: '', payload: 'x', destinationParticipantIds: [] } })).rejects.toMatchObject({ code: ErrorCode.RATE_LIMITED });
    expect(published).toHaveLength(1);
    expect(appended).toEqual([]);
  });

  it("changes a participant's own name and metadata when its token allows, saved before the room is told", async () => {
    const { value, published } = contexts();
    const table = createHandlerTable(value);
    const denied = sessionFor().session;
    await expect(dispatch(table, denied, { $case: 'updateParticipant', value: { name: 'Ann' } })).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    const { session, store } = sessionFor({
      grant: { name: 'Ann', metadata: '{"team":"billing"}', grants: { canPublish: true, canSubscribe: true, sources: [], canRecord: false, canUpdateMetadata: true } },
    });
    await expect(dispatch(table, session, { $case: 'updateParticipant', value: {} })).rejects.toMatchObject({ code: ErrorCode.BAD_REQUEST });
    const updated = await dispatch(table, session, { $case: 'updateParticipant', value: { name: 'Ann (Billing)' } });
    expect(updated).toEqual({ $case: 'updateParticipant', value: expect.objectContaining({ participantId: 'PA_1', name: 'Ann (Billing)', metadata: '{"team":"billing"}' }) });
    expect(published).toEqual([{ $case: 'participantUpdated', value: expect.objectContaining({ name: 'Ann (Billing)', tracks: [] }) }]);
    // In the record a resume or takeover starts from.
    expect((await store.list('demo', 'room-1')).map((r) => r.info?.name)).toEqual(['Ann (Billing)']);
  });

  it('keeps role and grant checks: end users neither redact nor ask, tokens without canRecord do not record', async () => {
    const table = createHandlerTable(contexts().value);
    const endUser = sessionFor({ grant: { role: 'end_user' } }).session;
    await expect(dispatch(table, endUser, { $case: 'redactMessage', value: { messageId: 'MS_1' } })).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    await expect(dispatch(table, endUser, { $case: 'requestSmartAction', value: { kind: 'photo', participantId: '' } })).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    const agent = sessionFor({ grant: { grants: { canPublish: true, canSubscribe: true, sources: [], canRecord: false, canUpdateMetadata: false } } }).session;
    for (const c of ['startRecording', 'pauseRecording', 'resumeRecording', 'stopRecording'] as const) {
      await expect(dispatch(table, agent, { $case: c, value: {} })).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    }
  });

  it('registers no device key for an end user erased during the call', async () => {
    const { session } = sessionFor({ grant: { role: 'end_user', identity: 'erased-1' } });
    const refused = createHandlerTable(contexts({ erased: ['erased-1'] }).value);
    await expect(dispatch(refused, session, { $case: 'deviceKeyOptions', value: {} })).rejects.toBeInstanceOf(GatewayError);
    await expect(dispatch(refused, session, { $case: 'deviceKeyOptions', value: {} })).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    const allowed = createHandlerTable(contexts().value);
    expect(await dispatch(allowed, session, { $case: 'deviceKeyOptions', value: {} })).toEqual({ $case: 'deviceKeyOptions', value: { challenge: 'c' } });
  });
});
