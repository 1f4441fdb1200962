import { afterEach, describe, expect, it, vi } from 'vitest';
import { ChatMessage as ChatMessageInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ErrorCode, GatewayError } from '../errors.js';
import { Room } from '../Room.js';
import { FakeSignaling, agent } from '../testing/FakeSignaling.js';
import { connectOptions, record, recordChat, until } from '../testing/roomHelpers.js';
import type { ChatMessage, ConnectOptions, Participant } from '../types.js';
import { Chat, type ChatContext } from './Chat.js';

describe('Room chat', () => {
  let server: FakeSignaling;
  let room: Room | undefined;
  afterEach(async () => {
    await room?.leave();
    await server?.stop();
    room = undefined;
  });

  async function connect(extra: Partial<ConnectOptions> = {}): Promise<{ room: Room; events: string[] }> {
    room = await Room.connect(connectOptions(server, extra));
    return { room, events: record(room) };
  }

  it('announces the history after connect, then each message once although the sender gets it twice', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a'));
    server.storeMessage('PA_a', { text: 'hello, how can I help?' });
    const { room } = await connect();
    const chat = recordChat(room);
    expect(room.messages).toEqual([]);
    await until(() => chat.length === 1, 'the history');

    server.notifyBeforeAnswer = true;
    const first = await room.sendMessage('my card is 4111 1111 1111 1111');
    server.notifyBeforeAnswer = false;
    const second = await room.sendMessage('thanks');
    await new Promise((r) => setTimeout(r, 30));
    expect(chat).toEqual(['message:MS_000001:PA_a:hello, how can I help?', 'message:MS_000002:local:my card is [CARD]', 'message:MS_000003:local:thanks']);
    expect(first).toEqual({
      messageId: 'MS_000002',
      participantId: room.localParticipant.id,
      identity: 'me',
      role: 'end_user',
      text: 'my card is [CARD]',
      sentAtMs: 1_700_000_000_001,
      isLocal: true,
      redacted: false,
      redactedKinds: ['card'],
    });
    // The one object the room holds, whichever copy came first.
    expect(room.messages).toEqual([room.messages[0], first, second]);
    expect(room.messages[1]).toBe(first);
    // Omitted fields are defaulted.
    expect(room.messages[0]).toMatchObject({ redacted: false, redactedKinds: [], isLocal: false, role: 'agent' });
    const sent = server.log.filter((l) => l.method === 'sendMessage').map((l) => l.params);
    expect(sent.map((p) => p.clientMessageId)).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/), expect.stringMatching(/^[0-9a-f-]{36}$/)]);
    expect(sent[0]!.clientMessageId).not.toBe(sent[1]!.clientMessageId);
  });

  it('merges the history of a resume: nothing announced twice, what was missed announced, redactions applied', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a'));
    const { room, events } = await connect();
    const chat = recordChat(room);
    await room.sendMessage('one');
    const two = server.storeMessage('PA_a', { text: 'two' });
    server.notify({ message: two });
    await until(() => chat.length === 2, 'two messages');

    room._debugDropSocket();
    // While away: the agent redacts "one" and writes "three"; the history also holds an older
    // message sorted before the others (ids decide the order, not arrival).
    server.messages[0]!.redacted = true;
    server.messages[0]!.redactedBy = 'PA_a';
    delete server.messages[0]!.text;
    server.storeMessage('PA_a', { text: 'three' });
    server.messages.push({ messageId: 'MS_000000', participantId: 'PA_a', identity: 'agent-PA_a', role: 'agent', text: 'zero', sentAtMs: '1' });
    await until(() => events.includes('reconnected:resumed'), 'the resume');

    expect(chat).toEqual(['message:MS_000001:local:one', 'message:MS_000002:PA_a:two', 'redacted:MS_000001:PA_a', 'message:MS_000003:PA_a:three', 'message:MS_000000:PA_a:zero']);
    expect(room.messages.map((m) => `${m.messageId}:${m.text}:${m.redacted}`)).toEqual(['MS_000000:zero:false', 'MS_000001::true', 'MS_000002:two:false', 'MS_000003:three:false']);
    expect(room.messages[1]!.isLocal).toBe(true);
  });

  it('keeps our messages ours after a rejoin (new participant id) and merges the new session history', async () => {
    server = await FakeSignaling.start();
    const { room, events } = await connect();
    const chat = recordChat(room);
    await room.sendMessage('before');
    server.resumable = false;
    room._debugDropSocket();
    await until(() => events.includes('reconnected:rejoined'), 'the rejoin');
    await room.sendMessage('after');
    await until(() => chat.length === 2, 'the second message');
    expect(room.messages.map((m) => [m.text, m.isLocal])).toEqual([
      ['before', true],
      ['after', true],
    ]);
    expect(room.messages[0]!.participantId).not.toBe(room.messages[1]!.participantId);
  });

  it('redacts: the room copy is replaced and messageRedacted fires once, with who did it', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a'));
    const { room } = await connect();
    const chat = recordChat(room);
    const sent = await room.sendMessage('my ssn is 123-45-6789');
    // As the agent would; the server tells everyone.
    server.messages[0]!.redacted = true;
    server.notify({ messageRedacted: { messageId: sent.messageId, by: 'PA_a' } });
    await until(() => chat.length === 2, 'the redaction');
    expect(chat[1]).toBe(`redacted:${sent.messageId}:PA_a`);
    expect(room.messages[0]).toMatchObject({ messageId: sent.messageId, text: '', redacted: true });
    expect(sent.text).toBe('my ssn is 123-45-6789');
    // A redaction of our own (the server's notification follows the answer): one event.
    const other = server.storeMessage('PA_a', { text: 'call me at +1 415 555 0100' });
    server.notify({ message: other });
    await until(() => chat.length === 3, 'the agent message');
    await room.redactMessage(other.messageId);
    await new Promise((r) => setTimeout(r, 30));
    expect(chat.slice(3)).toEqual([`redacted:${other.messageId}:${room.localParticipant.id}`]);
    expect(room.messages[1]).toMatchObject({ text: '', redacted: true });
    // Already redacted: nothing to ask.
    const before = server.methods().length;
    await room.redactMessage(other.messageId);
    expect(server.methods().length).toBe(before);
  });

  it('sends again with the same clientMessageId when the connection is cut before the answer, and stores it once', async () => {
    server = await FakeSignaling.start();
    const { room, events } = await connect();
    const chat = recordChat(room);
    let sends = 0;
    server.onSendMessage = () => (++sends === 1 ? 'cut-before' : 'answer');
    const message = await room.sendMessage('first try lost');
    expect(events).toContain('reconnected:resumed');
    const ids = server.log.filter((l) => l.method === 'sendMessage').map((l) => l.params.clientMessageId);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(ids[1]);
    expect(message.text).toBe('first try lost');

    // Stored, then cut before the answer: the resume's history settles it without sending again.
    sends = 0;
    server.onSendMessage = () => (++sends === 1 ? 'cut-after' : 'answer');
    const second = await room.sendMessage('stored before the cut');
    expect(sends).toBe(1);
    expect(second.messageId).toBe(server.messages[1]!.messageId);
    await new Promise((r) => setTimeout(r, 30));
    expect(server.messages).toHaveLength(2);
    expect(chat).toHaveLength(2);
  });

  it('waits for the connection when sent while reconnecting', async () => {
    server = await FakeSignaling.start();
    const { room, events } = await connect();
    room._debugDropSocket();
    expect(room.state).toBe('reconnecting');
    const message = await room.sendMessage('sent while away');
    expect(events).toContain('reconnected:resumed');
    expect(message.isLocal).toBe(true);
    expect(server.methods().filter((m) => m === 'sendMessage')).toHaveLength(1);
  });

  it('rejects with the server error codes, and refuses text far over any limit without sending it', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    server.onSendMessage = (p) =>
      p.text === ''
        ? { code: 'BAD_REQUEST', message: 'empty' }
        : p.text.length > 4_000
          ? { code: 'MESSAGE_TOO_LARGE', message: 'over 4000 characters' }
          : { code: 'RATE_LIMITED', message: 'slow down', retryAfterMs: 800 };
    await expect(room.sendMessage('')).rejects.toMatchObject({ name: 'GatewayError', code: 'BAD_REQUEST' });
    await expect(room.sendMessage('x'.repeat(4_001))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    await expect(room.sendMessage('hi')).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 800 });
    const sent = server.methods().filter((m) => m === 'sendMessage').length;
    await expect(room.sendMessage('x'.repeat(40_000))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    expect(server.methods().filter((m) => m === 'sendMessage')).toHaveLength(sent);
    await expect(room.redactMessage('MS_nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(room.messages).toEqual([]);
  });

  it('keeps the messages readable after leaving, and refuses to send', async () => {
    server = await FakeSignaling.start();
    const { room: r } = await connect();
    const chat = recordChat(r);
    // At once after connect: resolved, it is in `messages` and was announced.
    const bye = await r.sendMessage('bye');
    expect(r.messages).toEqual([bye]);
    expect(chat).toEqual([`message:${bye.messageId}:local:bye`]);
    await r.leave();
    room = undefined;
    expect(r.messages.map((m) => m.text)).toEqual(['bye']);
    await expect(r.sendMessage('again')).rejects.toMatchObject({ code: 'ROOM_CLOSED' });
  });
});

describe('Chat', () => {
  const info = (messageId: string, participantId: string, extra: Record<string, unknown> = {}) =>
    ChatMessageInfo.fromJSON({ messageId, participantId, identity: participantId, role: 'agent', text: `text ${messageId}`, sentAtMs: '5', ...extra });

  function chatWith(request: (method: string, params: Record<string, unknown>) => Promise<unknown>) {
    const events: string[] = [];
    const context = {
      signaling: { request: vi.fn(request), whenConnected: async () => undefined },
      assertOpen: () => undefined,
      announceHeldBack: vi.fn(),
      isOwn: (id: string) => id === 'PA_me',
      participantOf: (id: string | undefined) => (id === 'PA_a' ? ({ id } as Participant) : undefined),
      localParticipantId: () => 'PA_me',
      emit: (event: string, message: ChatMessage, by?: Participant) => void events.push(`${event}:${message.messageId}${by ? `:${by.id}` : ''}`),
    };
    return { chat: new Chat(context as unknown as ChatContext), events, context };
  }

  it('refuses what is not text or far too long without sending it', async () => {
    const { chat, context } = chatWith(async () => ({}));
    await expect(chat.send(42 as unknown as string)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(chat.send('x'.repeat(40_000))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    expect(context.signaling.request).not.toHaveBeenCalled();
  });

  it('reports a message over the frame limit as too large', async () => {
    const { chat } = chatWith(async () => Promise.reject(new GatewayError(ErrorCode.FRAME_TOO_LARGE, 'frame too large')));
    const error = (await chat.send('long').catch((e: unknown) => e)) as GatewayError;
    expect(error).toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
    expect((error.cause as GatewayError).code).toBe('FRAME_TOO_LARGE');
  });

  it('takes each message once, ours marked local, after the room announced what it held back', () => {
    const { chat, events, context } = chatWith(async () => ({}));
    const first = chat.take(info('M1', 'PA_me'));
    expect(chat.take(info('M1', 'PA_me'))).toBe(first);
    expect(first.isLocal).toBe(true);
    chat.take(info('M2', 'PA_a'));
    chat.takeRedaction({ messageId: 'M2', by: 'PA_a' });
    chat.takeRedaction({ messageId: 'M2', by: 'PA_a' });
    expect(events).toEqual(['message:M1', 'message:M2', 'messageRedacted:M2:PA_a']);
    expect(chat.messages.map((m) => `${m.messageId}:${m.text}`)).toEqual(['M1:text M1', 'M2:']);
    expect(context.announceHeldBack).toHaveBeenCalledTimes(5);
  });

  it('redacts on the server, then here, as done by the local participant', async () => {
    const { chat, events, context } = chatWith(async () => ({}));
    chat.take(info('M1', 'PA_a'));
    await chat.redact('M1');
    expect(context.signaling.request).toHaveBeenCalledWith('redactMessage', { messageId: 'M1' });
    expect(events).toEqual(['message:M1', 'messageRedacted:M1']);
    // Already redacted here: nothing to ask.
    await chat.redact('M1');
    expect(context.signaling.request).toHaveBeenCalledTimes(1);
  });
});
