import { ErrorCode, GatewayError, redact, type RedactionPolicy } from '@gateway/common';
import type { ChatLog } from '../chat/ChatLog.js';
import { limiterPerKey } from '../limits/RateLimiter.js';
import type { ParticipantSession } from '../participant/ParticipantSession.js';
import type { RoomHub } from '../rooms/RoomHub.js';
import type { Handlers } from './types.js';

export interface ChatContext {
  chat: Pick<ChatLog, 'append' | 'redact'>;
  hub: Pick<RoomHub, 'publish'>;
  limits: { maxChars: number; ratePerSecond: number; rateBurst: number };
  /** The tenant's chat redaction policy. */
  redactionPolicy(tenant: string): RedactionPolicy;
}

export type ChatCase = 'sendMessage' | 'redactMessage';

/** In-session text chat. */
export function chatHandlers(ctx: ChatContext): Handlers<ChatCase> {
  // Chat has its own budget per participant, well below the request rate limit; it goes with the session.
  const limiterOf = limiterPerKey<ParticipantSession>(ctx.limits.ratePerSecond, ctx.limits.rateBurst);

  return {
    /** Redacts, stores, then tells the room; the response is the sender's acknowledgement. */
    async sendMessage(session, { text, clientMessageId }) {
      // The conversation is everyone's, and stored for the CRM: a hidden supervisor has no voice in it.
      if (session.info.visibleTo !== '') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'a hidden participant cannot send chat messages');
      const wait = limiterOf(session).take();
      if (wait > 0) throw new GatewayError(ErrorCode.RATE_LIMITED, 'too many messages; slow down', { details: { retryAfterMs: wait } });
      if (text.trim().length === 0) throw new GatewayError(ErrorCode.BAD_REQUEST, 'text must not be empty');
      const { maxChars } = ctx.limits;
      if ([...text].length > maxChars) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, `a message holds at most ${maxChars} characters`);
      if (clientMessageId.length > 64) throw new GatewayError(ErrorCode.BAD_REQUEST, 'clientMessageId holds at most 64 characters');
      const redacted = redact(text, ctx.redactionPolicy(session.tenant));
      const { message, duplicate } = await ctx.chat.append(session.tenant, session.room, {
        participantId: session.participantId,
        identity: session.info.identity,
        role: session.info.role,
        text: redacted.text,
        clientMessageId,
        redacted: false,
        redactedKinds: Object.keys(redacted.counts),
        redactedBy: '',
      });
      if (!duplicate) ctx.hub.publish(session.tenant, session.room, { $case: 'chatMessage', value: message });
      return message;
    },

    /** Agents take a message out of the conversation after the fact, for everyone and in storage. */
    async redactMessage(session, { messageId }) {
      if (session.info.role !== 'agent') throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'only agents may redact messages');
      if (!messageId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'messageId is required');
      await ctx.chat.redact(session.tenant, session.room, messageId, session.participantId);
      ctx.hub.publish(session.tenant, session.room, { $case: 'messageRedacted', value: { messageId, by: session.participantId } });
      return {};
    },
  };
}
