import type { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { Conversation } from './ChatLog.js';

/** The transcript of a conversation as stored for the CRM: JSON and plain text, both redacted. */
export function renderTranscript(tenant: string, room: string, conversation: Conversation, actions: SmartAction[], endedAtMs: number): { json: string; text: string } {
  const messages = conversation.messages.map((m) => ({
    messageId: m.messageId,
    participantId: m.participantId,
    identity: m.identity,
    role: m.role,
    sentAt: new Date(m.sentAtMs).toISOString(),
    text: m.text,
    redacted: m.redacted,
    ...(m.redactedKinds.length ? { redactedKinds: m.redactedKinds } : {}),
  }));
  const json = JSON.stringify(
    {
      tenant,
      room,
      conversationId: conversation.conversationId,
      startedAt: new Date(conversation.startedAtMs).toISOString(),
      endedAt: new Date(endedAtMs).toISOString(),
      messages,
      smartActions: actions.map((a) => ({
        actionId: a.actionId,
        kind: a.kind,
        state: a.state,
        requestedAt: new Date(Number(a.requestedAtMs)).toISOString(),
        ...(a.completedAtMs ? { completedAt: new Date(Number(a.completedAtMs)).toISOString() } : {}),
        ...(a.kind === 'verification' && a.state === 'completed' ? { verified: a.verified } : {}),
        ...(a.artifactId ? { artifactId: a.artifactId } : {}),
        ...(a.reason ? { reason: a.reason } : {}),
      })),
    },
    null,
    2,
  );
  const lines = conversation.messages.map(
    (m) => `[${new Date(m.sentAtMs).toISOString()}] ${escapeLine(m.identity)} (${escapeLine(m.role)}): ${m.redacted ? '[message redacted]' : escapeLine(m.text)}`,
  );
  for (const a of actions) {
    const outcome = a.kind === 'verification' && a.state === 'completed' ? (a.verified ? 'verified' : 'not verified') : a.state;
    lines.push(`[${new Date(Number(a.completedAtMs || a.requestedAtMs)).toISOString()}] smart action ${a.kind}: ${outcome}`);
  }
  return { json, text: `${lines.join('\n')}\n` };
}

/**
 * One line of the plain-text transcript holds exactly one message: line breaks and other control
 * characters (and the bidirectional overrides that could make a line read as another) are written
 * as escapes, so no text or identity can forge a line.
 */
export function escapeLine(value: string): string {
  return value.replace(/[\\\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    if (c === '\\') return '\\\\';
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}
