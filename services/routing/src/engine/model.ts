/**
 * The routing model (docs/routing.md): queues, routing profiles, agents and contacts of one
 * tenant, as the engine decides over them. Plain data: the owner of a tenant keeps it in NATS
 * JetStream and hands it to the engine.
 */

/** How a contact reaches the agent; voice and video are both calls and share one capacity. */
export type Channel = 'voice' | 'video' | 'chat';
export type CapacityKind = 'call' | 'chat';
export const capacityKindOf = (channel: Channel): CapacityKind => (channel === 'chat' ? 'chat' : 'call');

export interface Queue {
  queueId: string;
  /** Lower is served first when an agent could take contacts of several queues of the same profile priority. */
  priority: number;
  /** Skills a contact of this queue needs, each at a level at least this (1-10). */
  requiredSkills: Readonly<Record<string, number>>;
  /** Seconds within which a contact should be answered (service level). */
  serviceLevelSeconds: number;
  /** After this long waiting here, a contact moves to the overflow queue (keeping its place by the time it asked). */
  overflow?: { queueId: string; afterSeconds: number };
  /** Past this long waiting, the end user is offered a callback. */
  maxWaitSeconds?: number;
  /** An offer of this queue not answered within this goes to the next agent (default: the engine's). */
  offerTimeoutSeconds?: number;
}

export interface RoutingProfile {
  profileId: string;
  /** The queues its agents serve: lower priority first; a delay holds contacts back from them until they waited that long. */
  queues: ReadonlyArray<{ queueId: string; priority: number; delaySeconds?: number }>;
  /** Contacts at once by kind: e.g. 1 call, 3 chats. */
  capacity: Readonly<Record<CapacityKind, number>>;
}

export type AgentStatus = 'available' | 'away' | 'after_contact_work' | 'offline';

export interface Agent {
  agentId: string;
  status: AgentStatus;
  /** Why away ("lunch", "missed_offers"). */
  awayReason?: string;
  profileId: string;
  skills: Readonly<Record<string, number>>;
  /** Contacts held now, by kind. */
  load: Record<CapacityKind, number>;
  /** When the agent last became free (available with nothing held): the longest idle is offered first. */
  idleSinceMs: number;
  /** The contact offered to them now; one offer at a time. */
  offeredContactId?: string;
  /** Offers in a row that timed out; two set the agent away. */
  missedOffers: number;
  /** The app went away (away, `disconnected`): the status to take back if it returns within the grace period. */
  beforeDisconnect?: 'available' | 'away' | 'after_contact_work';
  /** Records of contacts the agent ended and has not wrapped up yet (the service's, not the engine's). */
  pendingRecords?: PendingRecord[];
}

/** A contact's record waiting for the agent's wrap-up (disposition, notes) before it goes to crm-sync. */
export interface PendingRecord {
  contactId: string;
  queueId: string;
  channel: Channel;
  endUser: string;
  crmContactId?: string;
  requestedAtMs: number;
  connectedAtMs: number;
  endedAtMs: number;
  agentId: string;
  room: string;
  transfers: Array<{ fromAgentId: string; toQueueId: string; toAgentId?: string; warm: boolean; atMs: number }>;
  overflowedFrom: string[];
  callback: boolean;
  /**
   * The agent's part of a contact that went on with another agent (a warm transfer): its wrap-up
   * ends the agent's after-contact work and sends nothing, as the contact's record is the last agent's.
   */
  handedOver?: boolean;
}

export type ContactState = 'waiting' | 'offered' | 'connected' | 'ended';

export interface Contact {
  contactId: string;
  queueId: string;
  channel: Channel;
  /** When the end user asked: the order of service, kept through overflow and transfers. */
  requestedAtMs: number;
  /** When it entered its current queue (overflow counts from here). */
  queuedAtMs: number;
  /** Higher is served first within a queue (a transfer, a callback coming due). */
  priority: number;
  state: ContactState;
  offer?: { agentId: string; expiresAtMs: number };
  /** Agents who declined it or let its offer time out: offered to others first. */
  passedBy: string[];
  /** The agent it is connected to. */
  agentId?: string;
  /** A transfer to a named agent: only that agent is offered it. */
  targetAgentId?: string;
  /**
   * Agents who transferred it warm and are still in its room: it counts against their capacity
   * (they stay busy) until they complete the hand-over, their app is gone for good, or it ends.
   */
  handingOver?: string[];
  /** Waited past the queue's maximum: the end user was offered a callback and keeps their place. */
  callback?: boolean;
  /** Who asked (the end user's identity) and what the service keeps beside the decisions; no decision reads these (the engine only finds contacts by end user). */
  about?: ContactAbout;
}

/** What the routing service keeps about a contact beside the decisions (docs/routing.md). */
export interface ContactAbout {
  /** The end user's identity (the customer's external identifier). */
  endUser: string;
  /** The contact's id in the customer's CRM, when the app's token gave it. */
  crmContactId?: string;
  /** The app's context and the end user's name, sealed with the tenant's key. */
  sealed?: { wrapped: { kekId: string; value: string }; value: string };
  connectedAtMs?: number;
  room?: string;
  /** Queues it overflowed from, in order. */
  overflowedFrom?: string[];
  transfers?: Array<{ fromAgentId: string; toQueueId: string; toAgentId?: string; warm: boolean; atMs: number }>;
  /**
   * The W3C traceparent of the contact's trace (begun by the end user's request): kept with the
   * record so that every owner records its offers and accept in that one trace.
   */
  traceparent?: string;
}
