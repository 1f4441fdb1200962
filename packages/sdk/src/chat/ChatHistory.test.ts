import { describe, expect, it } from 'vitest';
import { ChatMessage as ChatMessageInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import { ChatHistory } from './ChatHistory.js';

/** A message as the server sends it, through the proto3 JSON mapping (omitted fields defaulted). */
const info = (messageId: string, extra: Record<string, unknown> = {}) =>
  ChatMessageInfo.fromJSON({ messageId, participantId: 'PA_a', identity: 'agent-1', role: 'agent', text: `text ${messageId}`, sentAtMs: '5', ...extra });

describe('ChatHistory', () => {
  it('orders by messageId whatever the order of arrival, and takes each message once', () => {
    const log = new ChatHistory();
    for (const id of ['M3', 'M1', 'M4', 'M2']) expect(log.upsert(info(id), false).added?.messageId).toBe(id);
    expect(log.upsert(info('M2'), false)).toEqual({});
    expect(log.messages.map((m) => m.messageId)).toEqual(['M1', 'M2', 'M3', 'M4']);
    expect(log.messages[0]).toEqual({
      messageId: 'M1',
      participantId: 'PA_a',
      identity: 'agent-1',
      role: 'agent',
      text: 'text M1',
      sentAtMs: 5,
      isLocal: false,
      redacted: false,
      redactedKinds: [],
    });
  });

  it('redacts with a new copy, once; a later unredacted copy stays redacted', () => {
    const log = new ChatHistory();
    const original = log.upsert(info('M1', { redactedKinds: ['card'] }), true).added!;
    const redacted = log.redact('M1')!;
    expect(redacted).toMatchObject({ messageId: 'M1', text: '', redacted: true, redactedKinds: [], isLocal: true });
    expect(original.text).toBe('text M1');
    expect(log.messages).toEqual([redacted]);
    expect(log.redact('M1')).toBeUndefined();
    expect(log.upsert(info('M1'), true)).toEqual({});
    expect(log.get('M1')).toBe(redacted);
  });

  it('applies a redaction that overtook its message, and one learnt from a copy', () => {
    const log = new ChatHistory();
    expect(log.redact('M2')).toBeUndefined();
    expect(log.upsert(info('M2'), false).added).toMatchObject({ text: '', redacted: true });
    log.upsert(info('M3'), false);
    const change = log.upsert(info('M3', { redacted: true, text: '', redactedBy: 'PA_b' }), false);
    expect(change).toEqual({ redacted: expect.objectContaining({ messageId: 'M3', redacted: true, text: '' }), redactedBy: 'PA_b' });
  });

  it('finds our stored message by the clientMessageId it was sent with, redacted or not', () => {
    const log = new ChatHistory();
    log.upsert(info('M1', { clientMessageId: 'c-1' }), true);
    log.upsert(info('M2', { clientMessageId: 'c-2' }), false);
    expect(log.sentWith('c-1')?.messageId).toBe('M1');
    expect(log.sentWith('c-2')).toBeUndefined();
    log.redact('M1');
    expect(log.sentWith('c-1')).toMatchObject({ messageId: 'M1', redacted: true });
  });
});
