import {
  AgentStatus as AgentStatusEnum,
  ContactPhase as ContactPhaseEnum,
  Channel as ChannelEnum,
  type AgentState as AgentStateMessage,
  ContactState,
  type Offer as OfferMessage,
  type QueueView as QueueViewMessage,
} from '@gateway/proto/gateway/routing/v1/routing';
import type { DeskJoin as DeskJoinMessage } from '@gateway/proto/gateway/routing/v1/desk';

/** How the end user is served: the room the agent joins carries video, voice only, or chat only. */
export type SupportChannel = 'video' | 'voice' | 'chat';

/**
 * Where a contact stands: `queued` (waiting for an agent), `offered` (an agent is being offered
 * it), `connected` (in a room with an agent), `callback` (the end user will be called back into
 * the app when an agent is free, keeping their place), `ended`.
 */
export type ContactPhase = 'queued' | 'offered' | 'connected' | 'callback' | 'ended';

/**
 * An agent's status: `available` and `away` are the agent's choice; `busy` (holding contacts),
 * `after_contact_work` (wrapping up) and `offline` (no desk connected) follow from what happens.
 */
export type AgentStatus = 'available' | 'away' | 'busy' | 'after_contact_work' | 'offline';

/** A contact: one end user's request for support, from queued to ended. */
export interface Contact {
  readonly contactId: string;
  readonly phase: ContactPhase;
  readonly queueId: string;
  readonly channel: SupportChannel;
  /** 1 for the next to be offered; 0 when not waiting. */
  readonly position: number;
  /** From the queue's recent handle times and the agents serving it; 0 when unknown. */
  readonly estimatedWaitSeconds: number;
  /** When connected: the room, and the agent in it (in an agent's state, a contact it is handing over gives its room whatever the phase). */
  readonly room: string;
  readonly agentId: string;
  /**
   * When ended: `completed`, `abandoned` or `expired`; told to the agent who handed it over,
   * `transferred` (cold) or `transferred_warm` (its part of a warm transfer is over).
   */
  readonly endReason: string;
  readonly requestedAtMs: number;
}

/** A contact offered to an agent, to accept or decline before `expiresAtMs`. */
export interface Offer {
  readonly contactId: string;
  readonly queueId: string;
  readonly channel: SupportChannel;
  /** When the offer moves on to another agent if not accepted (milliseconds since the epoch). */
  readonly expiresAtMs: number;
  /** The fields of the end user's app context that the queue lets agents see. */
  readonly context: Readonly<Record<string, string>>;
  /** The end user's name on screen, when the app gave one; empty otherwise. */
  readonly name: string;
  readonly requestedAtMs: number;
  /** Set for a transfer: the agent who handed it over. */
  readonly transferredBy: string;
}

/** An offer that went elsewhere. */
export interface OfferWithdrawn {
  readonly contactId: string;
  /** `declined`, `expired`, `withdrawn` or `abandoned`. */
  readonly reason: string;
}

/** An agent's state: its status, the offer it holds and the contacts it serves. */
export interface AgentState {
  readonly agentId: string;
  readonly status: AgentStatus;
  /** Why away (the agent's words), when it said. */
  readonly reason: string;
  /** The offer it holds now. */
  readonly offer: Offer | undefined;
  /** The contacts it holds now, with their rooms. */
  readonly contacts: readonly Contact[];
  /** The contacts whose after-contact work is open (see AgentDesk.wrapUp). */
  readonly wrapUpContactIds: readonly string[];
  /** The contacts it transferred warm and is still in the room of (among `contacts`): see AgentDesk.completeTransfer. */
  readonly handingOverContactIds: readonly string[];
}

/**
 * A room to join for a contact: pass `token` to `Gateway.connect({ url, token })` (the same `url`
 * as the desk's).
 */
export interface DeskJoin {
  /** The room's name. */
  readonly room: string;
  /** A join token for the room, with the grants of this side's role. */
  readonly token: string;
  readonly contact: Contact;
}

/** One queue's figures, for supervisors. */
export interface QueueStats {
  readonly queueId: string;
  readonly name: string;
  readonly waiting: number;
  readonly longestWaitSeconds: number;
  readonly offered: number;
  readonly connected: number;
  /** Answered within the service-level target today, as a share (0..1); 1 when none yet. */
  readonly serviceLevel: number;
  /** Abandoned as a share of those ended today (0..1). */
  readonly abandonRate: number;
  readonly answeredToday: number;
  readonly abandonedToday: number;
  readonly estimatedWaitSeconds: number;
  /** The queue's service-level target. */
  readonly serviceLevelSeconds: number;
}

/** One agent, as supervisors see it. */
export interface AgentSummary {
  readonly agentId: string;
  readonly name: string;
  readonly status: AgentStatus;
  readonly reason: string;
  readonly contactIds: readonly string[];
  /** Rooms of the agent's connected contacts. */
  readonly rooms: readonly string[];
}

/** Every queue's figures and every agent's state at `atMs`. */
export interface QueueView {
  readonly atMs: number;
  readonly queues: readonly QueueStats[];
  readonly agents: readonly AgentSummary[];
}

// ------------------------------------------------------------------------- from the protocol

const CHANNELS: Record<number, SupportChannel> = {
  [ChannelEnum.CHANNEL_VOICE]: 'voice',
  [ChannelEnum.CHANNEL_VIDEO]: 'video',
  [ChannelEnum.CHANNEL_CHAT]: 'chat',
};
const PHASES: Record<number, ContactPhase> = {
  [ContactPhaseEnum.CONTACT_PHASE_QUEUED]: 'queued',
  [ContactPhaseEnum.CONTACT_PHASE_OFFERED]: 'offered',
  [ContactPhaseEnum.CONTACT_PHASE_CONNECTED]: 'connected',
  [ContactPhaseEnum.CONTACT_PHASE_CALLBACK]: 'callback',
  [ContactPhaseEnum.CONTACT_PHASE_ENDED]: 'ended',
};
const STATUSES: Record<number, AgentStatus> = {
  [AgentStatusEnum.AGENT_STATUS_AVAILABLE]: 'available',
  [AgentStatusEnum.AGENT_STATUS_AWAY]: 'away',
  [AgentStatusEnum.AGENT_STATUS_BUSY]: 'busy',
  [AgentStatusEnum.AGENT_STATUS_AFTER_CONTACT_WORK]: 'after_contact_work',
  [AgentStatusEnum.AGENT_STATUS_OFFLINE]: 'offline',
};

/** An unset or unknown channel reads as video, the default of the queues. */
const channel = (value: ChannelEnum): SupportChannel => CHANNELS[value] ?? 'video';
const status = (value: AgentStatusEnum): AgentStatus => STATUSES[value] ?? 'offline';

export function toContact(message: ContactState): Contact {
  return {
    contactId: message.contactId,
    phase: PHASES[message.phase] ?? 'queued',
    queueId: message.queueId,
    channel: channel(message.channel),
    position: message.position,
    estimatedWaitSeconds: message.estimatedWaitSeconds,
    room: message.room,
    agentId: message.agentId,
    endReason: message.endReason,
    requestedAtMs: message.requestedAtMs,
  };
}

export function toOffer(message: OfferMessage): Offer {
  return {
    contactId: message.contactId,
    queueId: message.queueId,
    channel: channel(message.channel),
    expiresAtMs: message.expiresAtMs,
    context: parseContext(message.contextJson),
    name: message.name,
    requestedAtMs: message.requestedAtMs,
    transferredBy: message.transferredBy,
  };
}

/** The context's string fields; anything else (or JSON that does not parse) is left out. */
function parseContext(json: string): Record<string, string> {
  const context: Record<string, string> = {};
  if (!json) return context;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return context;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return context;
  for (const [key, value] of Object.entries(parsed)) if (typeof value === 'string') context[key] = value;
  return context;
}

export function toAgentState(message: AgentStateMessage): AgentState {
  return {
    agentId: message.agentId,
    status: status(message.status),
    reason: message.reason,
    offer: message.offer?.contactId ? toOffer(message.offer) : undefined,
    contacts: message.contacts.map(toContact),
    wrapUpContactIds: [...message.wrapUpContactIds],
    handingOverContactIds: [...message.handingOverContactIds],
  };
}

export function toDeskJoin(message: DeskJoinMessage): DeskJoin {
  const contact = toContact(message.contact ?? ContactState.fromJSON({}));
  return { room: contact.room, token: message.token, contact };
}

export function toQueueView(message: QueueViewMessage): QueueView {
  return {
    atMs: message.atMs,
    queues: message.queues.map((q) => ({
      queueId: q.queueId,
      name: q.name,
      waiting: q.waiting,
      longestWaitSeconds: q.longestWaitSeconds,
      offered: q.offered,
      connected: q.connected,
      serviceLevel: q.serviceLevel,
      abandonRate: q.abandonRate,
      answeredToday: q.answeredToday,
      abandonedToday: q.abandonedToday,
      estimatedWaitSeconds: q.estimatedWaitSeconds,
      serviceLevelSeconds: q.serviceLevelSeconds,
    })),
    agents: message.agents.map((a) => ({
      agentId: a.agentId,
      name: a.name,
      status: status(a.status),
      reason: a.reason,
      contactIds: [...a.contactIds],
      rooms: [...a.rooms],
    })),
  };
}
