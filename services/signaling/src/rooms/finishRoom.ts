import { Readable } from 'node:stream';
import { jetstream } from '@nats-io/jetstream';
import { AttachmentReady, TranscriptReady, type ContactReference } from '@gateway/proto/gateway/events/v1/events';
import type { SmartAction } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { Artifact } from '@gateway/proto/gateway/recorder/v1/recorder';
import { natsHeadersWithTrace, subjects, type ArtifactStore, type Logger, type NatsConnection, type SessionParticipant } from '@gateway/common';
import type { SmartActions } from '../actions/SmartActions.js';
import type { ChatLog, Conversation } from '../chat/ChatLog.js';
import { renderTranscript } from '../chat/transcript.js';

/** Everyone who wrote in the conversation, as the customer's app identified them. */
function contactsOf(conversation: Conversation, actions: SmartAction[]): ContactReference[] {
  const byParticipant = new Map<string, ContactReference>();
  for (const m of conversation.messages) {
    byParticipant.set(m.participantId, { participantId: m.participantId, role: m.role, externalId: m.identity, crmContactId: '' });
  }
  for (const a of actions) byParticipant.set(a.participantId, endUserOf(a));
  return [...byParticipant.values()];
}

function endUserOf(action: SmartAction): ContactReference {
  return { participantId: action.participantId, role: 'end_user', externalId: action.externalId, crmContactId: '' };
}

export interface RoomEndDeps {
  nc: NatsConnection;
  chat: ChatLog;
  actions: SmartActions;
  artifacts: ArtifactStore;
  log: Logger;
}

/**
 * The room ended: every attachment is announced (attachment.ready), the conversation becomes a
 * transcript artifact (JSON and text, encrypted in the Object Store) announced as
 * transcript.ready with the Smart Actions' outcomes, and the chat entries and action records
 * are deleted. Safe to run on several replicas at once: artifacts and events are keyed by ids
 * that all replicas derive alike, and JetStream drops the duplicate events.
 */
export async function finishRoom(deps: RoomEndDeps, tenant: string, room: string, participants: readonly SessionParticipant[] = []): Promise<string | undefined> {
  const [found, allActions] = await Promise.all([deps.chat.read(tenant, room), deps.actions.list(tenant, room)]);
  if (!found && allActions.length === 0) {
    // Nothing to announce; device key registrations begun in the room still end with it.
    await deps.actions.removeAll(tenant, room, []);
    return undefined;
  }
  // End users erased during the session: nothing of theirs is announced or kept, whenever it
  // was written (or under whichever of their participant ids); their uploads are shredded now.
  const erasedIds = new Set(participants.filter((p) => p.erased).map((p) => p.participantId));
  const erasedExternal = new Set(participants.filter((p) => p.erased).map((p) => p.externalId));
  const isErased = (participantId: string, externalId: string) => erasedIds.has(participantId) || erasedExternal.has(externalId);
  // An external id corrected during the session (rectification) replaces the one written with
  // their messages and actions.
  const externalIdOf = new Map(participants.map((p) => [p.participantId, p.externalId]));
  const actions = allActions.filter((a) => !isErased(a.participantId, a.externalId)).map((a) => ({ ...a, externalId: externalIdOf.get(a.participantId) ?? a.externalId }));
  for (const action of allActions) if (isErased(action.participantId, action.externalId) && action.artifactId) await deps.artifacts.delete(tenant, action.artifactId);
  const messages = (found?.messages ?? []).filter((m) => !isErased(m.participantId, m.identity)).map((m) => ({ ...m, identity: externalIdOf.get(m.participantId) ?? m.identity }));
  if (messages.length === 0 && actions.length === 0) {
    // Nothing left to hand over: no transcript at all.
    if (found) await deps.chat.close(tenant, room, found);
    await deps.actions.removeAll(tenant, room, allActions);
    return undefined;
  }
  const endedAtMs = Date.now();
  const conversation: Conversation = found ? { ...found, messages } : { conversationId: `CV-${actions[0]!.actionId}`, startedAtMs: Number(actions[0]!.requestedAtMs), messages: [], lastSeq: 0 };
  const js = jetstream(deps.nc);
  for (const action of actions.filter((a) => a.artifactId)) {
    const artifact: Artifact = {
      artifactId: action.artifactId,
      kind: action.kind,
      contentType: action.contentType,
      participantId: action.participantId,
      sizeBytes: action.sizeBytes,
      durationMs: 0,
      part: 0,
    };
    const event = AttachmentReady.encode({ tenant, room, conversationId: found?.conversationId ?? '', action, artifact, contact: endUserOf(action) }).finish();
    await js.publish(subjects.attachmentReady(tenant), event, { msgID: action.artifactId, timeout: 10_000, headers: natsHeadersWithTrace() });
  }
  const { json, text } = renderTranscript(tenant, room, conversation, actions, endedAtMs);
  const artifacts: Artifact[] = [];
  for (const [suffix, contentType, body] of [
    ['json', 'application/json', json],
    ['txt', 'text/plain', text],
  ] as const) {
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
    contacts: contactsOf(conversation, actions),
    smartActions: actions,
  }).finish();
  await js.publish(subjects.transcriptReady(tenant), event, { msgID: conversation.conversationId, timeout: 10_000, headers: natsHeadersWithTrace() });
  if (found) await deps.chat.close(tenant, room, found);
  await deps.actions.removeAll(tenant, room, allActions);
  deps.log.info({ room: `${tenant}/${room}`, conversationId: conversation.conversationId, messages: conversation.messages.length, smartActions: actions.length }, 'transcript stored');
  return conversation.conversationId;
}
