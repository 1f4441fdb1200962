import type { AgentStatus, Contact } from './model.js';

/** What a decision changed, for the owner to store and announce. */
export type RoutingEvent =
  | { type: 'offered'; contactId: string; agentId: string; expiresAtMs: number }
  | { type: 'offer_expired'; contactId: string; agentId: string }
  | { type: 'declined'; contactId: string; agentId: string }
  | { type: 'connected'; contactId: string; agentId: string }
  | { type: 'agent_status'; agentId: string; status: AgentStatus; reason?: string }
  | { type: 'overflowed'; contactId: string; fromQueueId: string; toQueueId: string }
  | { type: 'callback_offered'; contactId: string }
  /** `contact` is the contact as it was when it ended (the offer out, for an abandon). */
  | { type: 'ended'; contactId: string; reason: 'completed' | 'abandoned'; contact: Readonly<Contact> }
  | { type: 'transferred'; contactId: string; fromAgentId: string; queueId: string; targetAgentId?: string; warm: boolean }
  /** An agent's part of a warm transfer is over: they left its room (or their app is gone, or the contact ended). `contact` as it was then. */
  | { type: 'handed_over'; contactId: string; agentId: string; contact: Readonly<Contact> };

export type RoutingErrorCode = 'NOT_FOUND' | 'OFFER_MOVED_ON' | 'INVALID_STATE' | 'NO_CAPACITY';

/** A refused operation; the code is what the caller maps to its error (an offer that moved on is not a failure of ours). */
export class RoutingRefusal extends Error {
  constructor(
    readonly code: RoutingErrorCode,
    message: string,
  ) {
    super(message);
  }
}
