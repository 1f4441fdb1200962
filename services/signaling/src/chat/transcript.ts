import { Readable } from 'node:stream';
import { jetstream } from '@nats-io/jetstream';
import { TranscriptReady, type ContactReference } from '@gateway/proto/gateway/events/v1/events';
import type { Artifact } from '@gateway/proto/gateway/recorder/v1/recorder';
import { subjects, type ArtifactStore, type Logger, type NatsConnection } from '@gateway/common';
import type { ChatLog, Conversation } from './ChatLog.js';

/** The transcript of a conversation as stored for the CRM: JSON and plain text, both redacted. */
export function renderTranscript(tenant: string, room: string, conversation: Conversation, endedAtMs: number): { json: string; text: string } {
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
    },
    null,
    2,
  );
  const lines = conversation.messages.map((m) => `[${new Date(m.sentAtMs).toISOString()}] ${m.identity} (${m.role}): ${m.redacted ? '[message redacted]' : m.text}`);
  return { json, text: `${lines.join('\n')}\n` };
}

/** Everyone who wrote in the conversation, as the customer's app identified them. */
function contactsOf(conversation: Conversation): ContactReference[] {
  const byParticipant = new Map<string, ContactReference>();
  for (const m of conversation.messages) {
    byParticipant.set(m.participantId, { participantId: m.participantId, role: m.role, externalId: m.identity, crmContactId: '' });
  }
  return [...byParticipant.values()];
}

export interface TranscriptDeps {
  nc: NatsConnection;
  chat: ChatLog;
  artifacts: ArtifactStore;
  log: Logger;
}

/**
 * The room ended: its conversation becomes a transcript artifact (JSON and text, encrypted in
 * the Object Store), announced as transcript.ready, and the chat entries are deleted. Safe to
 * run on several replicas at once: artifacts and the event are keyed by the conversation id.
 */
export async function finishConversation(deps: TranscriptDeps, tenant: string, room: string): Promise<void> {
  const conversation = await deps.chat.read(tenant, room);
  if (!conversation) return;
  const endedAtMs = Date.now();
  const { json, text } = renderTranscript(tenant, room, conversation, endedAtMs);
  const artifacts: Artifact[] = [];
  for (const [suffix, contentType, body] of [['json', 'application/json', json], ['txt', 'text/plain', text]] as const) {
    const artifactId = `${conversation.conversationId}-${suffix}`;
    const stored = await deps.artifacts.put(tenant, artifactId, Readable.from([Buffer.from(body)]), contentType);
    artifacts.push({ artifactId, kind: 'transcript', contentType, participantId: '', sizeBytes: stored.size, durationMs: endedAtMs - conversation.startedAtMs, part: 0 });
  }
  const event = TranscriptReady.encode({
    tenant,
    room,
    conversationId: conversation.conversationId,
    artifacts,
    messageCount: conversation.messages.length,
    startedAtMs: conversation.startedAtMs,
    endedAtMs,
    contacts: contactsOf(conversation),
  }).finish();
  await jetstream(deps.nc).publish(subjects.transcriptReady(tenant), event, { msgID: conversation.conversationId, timeout: 10_000 });
  await deps.chat.close(tenant, room, conversation);
  deps.log.info({ room: `${tenant}/${room}`, conversationId: conversation.conversationId, messages: conversation.messages.length }, 'transcript stored');
}
