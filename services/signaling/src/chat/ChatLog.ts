import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { jetstream, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { LRUCache } from 'lru-cache';
import { ChatKeyRecord, ChatSealed } from '@gateway/proto/gateway/events/v1/events';
import { ChatMessage } from '@gateway/proto/gateway/signaling/v1/signaling';
import {
  isLiveEntry,
  ErrorCode,
  GatewayError,
  buckets,
  chatKeyRecordSchema,
  chatMessageSchema,
  chatSealedSchema,
  decodeChecked,
  ensureStream,
  kvKeys,
  newId,
  openBucket,
  readSubject,
  streams,
  subjects,
  type Keyring,
  type NatsConnection,
} from '@gateway/common';

export interface Conversation {
  conversationId: string;
  startedAtMs: number;
  /** Every message in order, redactions applied. */
  messages: ChatMessage[];
  /** Stream sequence of the last entry read (purging stops there). */
  lastSeq: number;
}

/** Conversations whose unwrapped key a replica keeps at once; more live rooms than a replica serves. */
const DATA_KEYS_CACHED = 2_000;
/** How long an unwrapped key stays without use; a message after that unwraps it again. */
const DATA_KEY_TTL_MS = 10 * 60_000;

/**
 * A room's chat, kept in JetStream until the conversation's transcript is stored. Each entry is
 * sealed with AES-256-GCM under the conversation's data key; the data key is wrapped by the
 * tenant's key and kept in KV, so deleting it makes every stored copy unreadable.
 */
export class ChatLog {
  /** Entries left out of conversations because they did not decode, open or pass their checks. */
  skipped = 0;
  /**
   * Unwrapped data keys by conversation id, to spare a KMS round trip per message. Bounded in
   * number and time: a replica that did not end a conversation (another one did) or that served
   * one erased on request does not keep its key for as long as it runs.
   */
  private readonly dataKeys = new LRUCache<string, Buffer>({ max: DATA_KEYS_CACHED, ttl: DATA_KEY_TTL_MS });

  private constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly keys: KV,
    private readonly keyring: Keyring,
  ) {}

  static async open(nc: NatsConnection, keyring: Keyring): Promise<ChatLog> {
    const jsm = await ensureStream(nc, streams.chat);
    await ensureStream(nc, streams.transcripts);
    return new ChatLog(jetstream(nc), jsm, await openBucket(nc, buckets.chatKeys), keyring);
  }

  /**
   * Stores a message and returns it with its server id and time. A retry with the same client
   * message id within the duplicate window returns the message stored the first time, marked
   * as a duplicate (the room has already been told of it).
   */
  async append(tenant: string, room: string, draft: Omit<ChatMessage, 'messageId' | 'sentAtMs'>): Promise<{ message: ChatMessage; duplicate: boolean }> {
    const sentAtMs = Date.now();
    const message: ChatMessage = { ...draft, messageId: sortableId(sentAtMs), sentAtMs };
    const dedupId = draft.clientMessageId ? `${tenant}.${room}.${draft.participantId}.${draft.clientMessageId}` : undefined;
    const ack = await this.seal(tenant, room, message, dedupId);
    if (!ack.duplicate) return { message, duplicate: false };
    const conversation = await this.read(tenant, room);
    const first = conversation?.messages.find((m) => m.participantId === draft.participantId && m.clientMessageId === draft.clientMessageId);
    if (!first) throw new GatewayError(ErrorCode.INTERNAL, 'a retried message was not found in the conversation');
    return { message: first, duplicate: true };
  }

  /** Redacts a stored message for good: the replacement is stored and the original erased. */
  async redact(tenant: string, room: string, messageId: string, by: string): Promise<ChatMessage> {
    const found = await this.read(tenant, room, { withSequences: true });
    const original = found?.messages.find((m) => m.messageId === messageId);
    if (!found || !original) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such message in this room');
    const replacement: ChatMessage = { ...original, text: '', redacted: true, redactedKinds: [], redactedBy: by };
    await this.seal(tenant, room, replacement);
    for (const seq of found.sequences.get(messageId) ?? []) {
      await this.jsm.streams.deleteMessage(streams.chat.name, seq, true).catch(() => undefined);
    }
    return replacement;
  }

  /**
   * A data-subject erasure: every stored message the end user wrote in the room (as sent or as
   * redacted; by their external id, or by a participant id of theirs when the external id was
   * corrected since) is erased from the stream, and this replica lets go of the conversation's
   * unwrapped key. Returns the number of messages erased.
   */
  async eraseWrittenBy(tenant: string, room: string, identity: string, participantIds: readonly string[] = []): Promise<number> {
    const found = await this.read(tenant, room, { withSequences: true });
    if (!found) return 0;
    let erased = 0;
    for (const message of found.messages) {
      if (message.identity !== identity && !participantIds.includes(message.participantId)) continue;
      for (const seq of found.sequences.get(message.messageId) ?? []) {
        await this.jsm.streams.deleteMessage(streams.chat.name, seq, true).catch((error: unknown) => {
          // Already gone (a redaction, a purge at room end) is what was wanted.
          if (!/not found|no message/i.test(String((error as Error).message))) throw error;
        });
      }
      erased++;
    }
    this.dataKeys.delete(found.conversationId);
    return erased;
  }

  /** Unwrapped conversation keys this replica holds now (gateway_signaling_chat_keys_cached). */
  get cachedKeys(): number {
    this.dataKeys.purgeStale();
    return this.dataKeys.size;
  }

  /** The conversation so far (undefined when the room has none), the last `limit` messages when given. */
  async history(tenant: string, room: string, limit?: number): Promise<ChatMessage[]> {
    const conversation = await this.read(tenant, room);
    const messages = conversation?.messages ?? [];
    return limit === undefined ? messages : messages.slice(-limit);
  }

  /** Reads the whole conversation of a room, decrypted, with redactions applied. */
  async read(tenant: string, room: string): Promise<Conversation | undefined>;
  async read(tenant: string, room: string, options: { withSequences: true }): Promise<(Conversation & { sequences: Map<string, number[]> }) | undefined>;
  async read(tenant: string, room: string, options: { withSequences?: boolean } = {}) {
    const key = await this.currentKey(tenant, room);
    if (!key) return undefined;
    const subject = subjects.chat(tenant, room);
    const byId = new Map<string, ChatMessage>();
    const sequences = new Map<string, number[]>();
    let lastSeq = 0;
    for await (const entry of readSubject(this.js, this.jsm, streams.chat.name, subject)) {
      lastSeq = entry.seq;
      let sealed: ChatSealed;
      let message: ChatMessage;
      try {
        sealed = decodeChecked(ChatSealed, entry.data, chatSealedSchema, 'chat entry');
        // Entries of an earlier conversation in this room (not purged yet) are not this one's.
        if (sealed.conversationId !== key.record.conversationId) continue;
        message = decodeChecked(ChatMessage, open(key.dataKey, tenant, room, sealed), chatMessageSchema, 'chat message');
      } catch {
        // An entry that does not decode, open or check was not written by us under this
        // conversation's key: it is not part of the conversation (and must not stop its transcript).
        this.skipped++;
        continue;
      }
      byId.set(message.messageId, message);
      sequences.set(message.messageId, [...(sequences.get(message.messageId) ?? []), entry.seq]);
    }
    const messages = [...byId.values()].sort((a, b) => (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0));
    const conversation: Conversation = { conversationId: key.record.conversationId, startedAtMs: key.record.startedAtMs, messages, lastSeq };
    return options.withSequences ? { ...conversation, sequences } : conversation;
  }

  /**
   * Ends the room's conversation once its transcript is stored: the data key is deleted (every
   * sealed entry becomes unreadable) and the entries read are purged. Returns false when another
   * replica ended it first.
   */
  async close(tenant: string, room: string, conversation: Conversation): Promise<boolean> {
    const entry = await this.keys.get(kvKeys.room(tenant, room));
    if (entry?.operation !== 'PUT' || readKeyRecord(entry.value).conversationId !== conversation.conversationId) return false;
    try {
      await this.keys.delete(kvKeys.room(tenant, room), { previousSeq: entry.revision });
    } catch {
      return false;
    }
    await this.keys.purge(kvKeys.room(tenant, room)).catch(() => undefined);
    this.dataKeys.delete(conversation.conversationId);
    if (conversation.lastSeq > 0) {
      await this.jsm.streams.purge(streams.chat.name, { filter: subjects.chat(tenant, room), seq: conversation.lastSeq + 1 });
    }
    return true;
  }

  private async seal(tenant: string, room: string, message: ChatMessage, dedupId?: string) {
    const key = (await this.currentKey(tenant, room)) ?? (await this.startConversation(tenant, room));
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key.dataKey, iv).setAAD(aad(tenant, room, key.record.conversationId));
    const ciphertext = Buffer.concat([cipher.update(ChatMessage.encode(message).finish()), cipher.final()]);
    const sealed = ChatSealed.encode({ conversationId: key.record.conversationId, iv, ciphertext, tag: cipher.getAuthTag() }).finish();
    return this.js.publish(subjects.chat(tenant, room), sealed, { ...(dedupId ? { msgID: dedupId } : {}), timeout: 5_000 });
  }

  private async currentKey(tenant: string, room: string): Promise<{ record: ChatKeyRecord; dataKey: Buffer } | undefined> {
    const entry = await this.keys.get(kvKeys.room(tenant, room));
    if (!isLiveEntry(entry)) return undefined;
    const record = readKeyRecord(entry.value);
    let dataKey = this.dataKeys.get(record.conversationId);
    if (!dataKey) {
      dataKey = await this.keyring.unwrap(tenant, { kekId: record.kekId, value: record.wrappedKey });
      this.dataKeys.set(record.conversationId, dataKey);
    }
    return { record, dataKey };
  }

  /** A room's first message: a fresh data key, created once even when replicas race. */
  private async startConversation(tenant: string, room: string): Promise<{ record: ChatKeyRecord; dataKey: Buffer }> {
    const dataKey = randomBytes(32);
    const wrapped = await this.keyring.wrap(tenant, dataKey);
    const record: ChatKeyRecord = { conversationId: newId('CV'), kekId: wrapped.kekId, wrappedKey: wrapped.value, startedAtMs: Date.now() };
    try {
      await this.keys.create(kvKeys.room(tenant, room), ChatKeyRecord.encode(record).finish());
    } catch {
      const existing = await this.currentKey(tenant, room);
      if (existing) return existing;
      throw new GatewayError(ErrorCode.UNAVAILABLE, 'could not start the conversation; try again');
    }
    this.dataKeys.set(record.conversationId, dataKey);
    return { record, dataKey };
  }
}

function aad(tenant: string, room: string, conversationId: string): Buffer {
  return Buffer.from(`chat:${tenant}.${room}.${conversationId}`);
}

function open(dataKey: Buffer, tenant: string, room: string, sealed: ChatSealed): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', dataKey, sealed.iv).setAAD(aad(tenant, room, sealed.conversationId));
  decipher.setAuthTag(sealed.tag);
  try {
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch (error) {
    throw new GatewayError(ErrorCode.INTERNAL, 'a chat entry failed its integrity check', { cause: error });
  }
}

let lastIdMs = 0;
let idCounter = 0;
/** Message ids sort by time of arrival at this replica: milliseconds, a counter, then randomness. */
function sortableId(nowMs: number): string {
  idCounter = nowMs === lastIdMs ? idCounter + 1 : 0;
  lastIdMs = nowMs;
  return `MS_${nowMs.toString(36).padStart(9, '0')}${idCounter.toString(36).padStart(3, '0')}${randomBytes(4).toString('hex')}`;
}

function readKeyRecord(bytes: Uint8Array): ChatKeyRecord {
  return decodeChecked(ChatKeyRecord, bytes, chatKeyRecordSchema, 'chat key record');
}
