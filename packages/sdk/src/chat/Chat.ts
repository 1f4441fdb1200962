import type { ChatMessage as ChatMessageInfo, MessageRedacted } from '@gateway/proto/gateway/signaling/v1/signaling';
import { deliver } from '../deliver.js';
import { ErrorCode, GatewayError, hasCode } from '../errors.js';
import type { Emit } from '../events.js';
import type { SignalingClient } from '../signaling/SignalingClient.js';
import type { ChatMessage, Participant, RoomEvents } from '../types.js';
import { ChatHistory, chatMessageFrom } from './ChatHistory.js';

/**
 * Chat text whose JSON encoding is over this many bytes is refused before it is sent: far over
 * the server's limit (4,000 characters, which it answers with MESSAGE_TOO_LARGE), and under the
 * frame limit, so an oversized message never gets the connection closed.
 */
const MAX_MESSAGE_BYTES = 32_768;

/** What the chat needs of its room. */
export interface ChatContext {
  signaling: Pick<SignalingClient, 'request' | 'whenConnected'>;
  /** Throws ROOM_CLOSED once the room was left or disconnected. */
  assertOpen(): void;
  /**
   * Lets the room announce what it held back since connect() (the history among it) before
   * anything newer is taken in: an answer to the app can come first.
   */
  announceHeldBack(): void;
  /** Whether a participant id is ours, in this session or one a rejoin replaced. */
  isOwn(participantId: string): boolean;
  /** The local participant or someone in the room; undefined for anyone else. */
  participantOf(participantId: string | undefined): Participant | undefined;
  localParticipantId(): string;
  emit: Emit<Pick<RoomEvents, 'message' | 'messageRedacted'>>;
}

/** The room's chat: sending and redacting, and taking in every copy of a message once. */
export class Chat {
  private readonly history = new ChatHistory();

  constructor(private readonly context: ChatContext) {}

  get messages(): readonly ChatMessage[] {
    return this.history.messages;
  }

  /** See Room.sendMessage. */
  async send(text: string): Promise<ChatMessage> {
    this.context.assertOpen();
    if (typeof text !== 'string') throw new GatewayError(ErrorCode.BAD_REQUEST, 'a chat message is text');
    if (new TextEncoder().encode(JSON.stringify(text)).length > MAX_MESSAGE_BYTES) {
      throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, 'the message is too long');
    }
    const { signaling } = this.context;
    const clientMessageId = randomUuid();
    try {
      return await deliver(
        signaling,
        async () => this.take(await signaling.request('sendMessage', { text, clientMessageId })),
        () => this.history.sentWith(clientMessageId),
      );
    } catch (error) {
      // The server's frame limit is set lower than a message's: for the app it is the same thing.
      if (hasCode(error, ErrorCode.FRAME_TOO_LARGE)) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, 'the message is too long', { cause: error });
      throw error;
    }
  }

  /** See Room.redactMessage. */
  async redact(messageId: string): Promise<void> {
    this.context.assertOpen();
    const { signaling } = this.context;
    await deliver(
      signaling,
      async () => {
        await signaling.request('redactMessage', { messageId });
        this.takeRedaction({ messageId, by: this.context.localParticipantId() });
        return true;
      },
      () => (this.history.get(messageId)?.redacted ? true : undefined),
    );
  }

  /** Takes in a copy of a chat message (a notification, history, the sender's response) and returns the room's copy. */
  take(info: ChatMessageInfo): ChatMessage {
    this.context.announceHeldBack();
    const isLocal = this.context.isOwn(info.participantId);
    const { added, redacted, redactedBy } = this.history.upsert(info, isLocal);
    if (added) this.context.emit('message', added);
    if (redacted) this.context.emit('messageRedacted', redacted, this.context.participantOf(redactedBy));
    return this.history.get(info.messageId) ?? chatMessageFrom(info, isLocal);
  }

  takeRedaction(event: MessageRedacted): void {
    this.context.announceHeldBack();
    const message = this.history.redact(event.messageId);
    if (message) this.context.emit('messageRedacted', message, this.context.participantOf(event.by));
  }
}

/** A random UUID; crypto.randomUUID() exists only in secure contexts (https, localhost), getRandomValues everywhere. */
function randomUuid(): string {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === 'function') return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
