import type { ChatMessage as ChatMessageInfo } from '@gateway/proto/gateway/signaling/v1/signaling';
import type { ChatMessage } from '../types.js';

/** What taking in a copy of a message changed: a message new to us, or one now redacted (and by whom, when said). */
export interface ChatChange {
  added?: ChatMessage;
  redacted?: ChatMessage;
  redactedBy?: string;
}

/**
 * The room's chat as the client knows it: one entry per messageId whichever way it came (the
 * sender's response, the notification, a join or resume history), ordered by messageId, and
 * redactions that stick (a copy that arrives unredacted after the redaction stays redacted).
 * No I/O: Chat feeds it and emits what it reports.
 */
export class ChatHistory {
  private readonly list: ChatMessage[] = [];
  private readonly byId = new Map<string, ChatMessage>();
  /** Redacted message ids, also of messages not seen yet (a redaction may overtake its message). */
  private readonly redactedIds = new Set<string>();
  /** Our messages by the clientMessageId they were sent with, to settle a send retried after a cut. */
  private readonly sentByClientId = new Map<string, ChatMessage>();

  get messages(): readonly ChatMessage[] {
    return this.list;
  }

  get(messageId: string): ChatMessage | undefined {
    return this.byId.get(messageId);
  }

  /** Our message sent with this clientMessageId, if the server stored it. */
  sentWith(clientMessageId: string): ChatMessage | undefined {
    return this.sentByClientId.get(clientMessageId);
  }

  /** Takes in a copy of a message; `isLocal` says whether we sent it. A duplicate changes nothing. */
  upsert(info: ChatMessageInfo, isLocal: boolean): ChatChange {
    if (!info.messageId) return {};
    if (info.redacted) this.redactedIds.add(info.messageId);
    const redacted = this.redactedIds.has(info.messageId);
    const known = this.byId.get(info.messageId);
    if (known) return redacted && !known.redacted ? { redacted: this.replace(known, redactedCopy(known)), redactedBy: info.redactedBy } : {};
    const message: ChatMessage = {
      messageId: info.messageId,
      participantId: info.participantId,
      identity: info.identity,
      role: info.role,
      text: redacted ? '' : info.text,
      sentAtMs: info.sentAtMs,
      isLocal,
      redacted,
      redactedKinds: redacted ? [] : [...info.redactedKinds],
    };
    this.list.splice(this.insertionIndex(message.messageId), 0, message);
    this.byId.set(message.messageId, message);
    if (isLocal && info.clientMessageId) this.sentByClientId.set(info.clientMessageId, message);
    return { added: message };
  }

  /** Marks a message redacted; returns the updated copy, or undefined when nothing changed. */
  redact(messageId: string): ChatMessage | undefined {
    if (!messageId) return undefined;
    this.redactedIds.add(messageId);
    const known = this.byId.get(messageId);
    if (!known || known.redacted) return undefined;
    return this.replace(known, redactedCopy(known));
  }

  private replace(old: ChatMessage, next: ChatMessage): ChatMessage {
    this.list[this.list.indexOf(old)] = next;
    this.byId.set(next.messageId, next);
    for (const [clientId, message] of this.sentByClientId) if (message === old) this.sentByClientId.set(clientId, next);
    return next;
  }

  /** After every message with a smaller or equal id: live messages (the usual case) go last at once. */
  private insertionIndex(messageId: string): number {
    let low = 0;
    let high = this.list.length;
    if (high === 0 || this.list[high - 1]!.messageId <= messageId) return high;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.list[mid]!.messageId <= messageId) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}

/** As the server stores a redacted message: no text, and no kinds (they described the text). */
function redactedCopy(message: ChatMessage): ChatMessage {
  return { ...message, text: '', redacted: true, redactedKinds: [] };
}

/** The SDK's copy of a message as it came, for a message the history does not hold (it has no id). */
export function chatMessageFrom(info: ChatMessageInfo, isLocal: boolean): ChatMessage {
  const { messageId, participantId, identity, role, text, sentAtMs, redacted, redactedKinds } = info;
  return { messageId, participantId, identity, role, text: redacted ? '' : text, sentAtMs, isLocal, redacted, redactedKinds: redacted ? [] : [...redactedKinds] };
}
