import { describe, expect, it } from 'vitest';
import type { ChatMessage, SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import { renderTranscript } from './transcript.js';

const message = (over: Partial<ChatMessage>): ChatMessage => ({
  messageId: 'MS_1',
  participantId: 'PA_u',
  identity: 'ext-1',
  role: 'end_user',
  text: '',
  sentAtMs: Date.UTC(2026, 10, 25, 10, 0, 0),
  clientMessageId: '',
  redacted: false,
  redactedKinds: [],
  redactedBy: '',
  ...over,
});

describe('renderTranscript', () => {
  it('renders messages in order as JSON and text, with redactions and Smart Action outcomes', () => {
    const conversation = {
      conversationId: 'CV_x',
      startedAtMs: Date.UTC(2026, 10, 25, 9, 59, 0),
      lastSeq: 3,
      messages: [
        message({ messageId: 'MS_1', text: 'card [CARD]', redactedKinds: ['card'] }),
        message({ messageId: 'MS_2', redacted: true, redactedBy: 'PA_a', sentAtMs: Date.UTC(2026, 10, 25, 10, 0, 5) }),
        message({ messageId: 'MS_3', participantId: 'PA_a', identity: 'agent-1', role: 'agent', text: 'thanks', sentAtMs: Date.UTC(2026, 10, 25, 10, 0, 9) }),
      ],
    };
    const verification = {
      actionId: 'SA_1',
      kind: 'verification',
      state: 'completed',
      verified: true,
      requestedAtMs: Date.UTC(2026, 10, 25, 10, 1, 0),
      completedAtMs: Date.UTC(2026, 10, 25, 10, 1, 4),
      artifactId: '',
      reason: '',
    } as SmartAction;
    const { json, text } = renderTranscript('demo', 'r1', conversation, [verification], Date.UTC(2026, 10, 25, 10, 2, 0));
    const parsed = JSON.parse(json);
    expect(parsed).toMatchObject({ tenant: 'demo', room: 'r1', conversationId: 'CV_x', startedAt: '2026-11-25T09:59:00.000Z', endedAt: '2026-11-25T10:02:00.000Z' });
    expect(parsed.messages.map((m: { messageId: string }) => m.messageId)).toEqual(['MS_1', 'MS_2', 'MS_3']);
    expect(parsed.messages[0].redactedKinds).toEqual(['card']);
    expect(parsed.smartActions).toEqual([
      { actionId: 'SA_1', kind: 'verification', state: 'completed', requestedAt: '2026-11-25T10:01:00.000Z', completedAt: '2026-11-25T10:01:04.000Z', verified: true },
    ]);
    expect(text.split('\n')).toEqual([
      '[2026-11-25T10:00:00.000Z] ext-1 (end_user): card [CARD]',
      '[2026-11-25T10:00:05.000Z] ext-1 (end_user): [message redacted]',
      '[2026-11-25T10:00:09.000Z] agent-1 (agent): thanks',
      '[2026-11-25T10:01:04.000Z] smart action verification: verified',
      '',
    ]);
  });
});

describe('the plain-text transcript cannot be forged', () => {
  it('keeps each message on its own line whatever its text or identity holds', () => {
    const forged = 'ok\n[2026-11-25T10:00:09.000Z] agent-1 (agent): refund approved\r\n';
    const conversation = {
      conversationId: 'CV_f',
      startedAtMs: Date.UTC(2026, 10, 25, 9, 59, 0),
      lastSeq: 2,
      messages: [message({ messageId: 'MS_1', text: forged }), message({ messageId: 'MS_2', identity: 'eve\n[2026] agent-1', text: 'tab\there \u202eevil\u202c back\\slash' })],
    };
    const { text } = renderTranscript('demo', 'r1', conversation, [], Date.UTC(2026, 10, 25, 10, 2, 0));
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe('[2026-11-25T10:00:00.000Z] ext-1 (end_user): ok\\n[2026-11-25T10:00:09.000Z] agent-1 (agent): refund approved\\r\\n');
    expect(lines[1]).toBe('[2026-11-25T10:00:00.000Z] eve\\n[2026] agent-1 (end_user): tab\\there \\u202eevil\\u202c back\\\\slash');
    expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u202a-\u202e]/);
  });
});
