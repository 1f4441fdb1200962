import type { ArtifactContent, ArtifactSpace } from '@gateway/common';
import type { DestinationConnections, DestinationNetwork } from './network.js';

export type { ArtifactContent };

/**
 * One artifact to hand over. Its bytes are decrypted only as a destination reads them, segment
 * by segment, each authenticated before it is released: destinations stream them on and never
 * hold a whole artifact (recordings run to gigabytes).
 */
export interface DeliveryArtifact {
  artifactId: string;
  /** "voice", "camera", "screen", "transcript", "photo", "screenshot". */
  kind: string;
  contentType: string;
  /** As the event says; the size that counts is the one `open()` gives. */
  sizeBytes: number;
  part: number;
  /** The artifact space its producer writes to (the event says which): looked in first when it is read or deleted. */
  space?: ArtifactSpace;
  /** Opens the bytes for one read from the start (size and SHA-256 known before any byte is read). */
  open(): Promise<ArtifactContent>;
}

/**
 * A contact-center contact's record (kind `contact`): its delivery's metadata. Never names,
 * context or phone numbers; the end user is the delivery's one contact. Optional fields are
 * absent when the contact did not have them (never connected, no agent, no wrap-up).
 */
export interface ContactMetadata {
  contactId: string;
  queueId: string;
  channel: 'voice' | 'video' | 'chat';
  requestedAtMs: number;
  connectedAtMs: number | undefined;
  endedAtMs: number;
  waitSeconds: number;
  handleSeconds: number;
  agentId: string | undefined;
  outcome: 'completed' | 'abandoned' | 'expired';
  transfers: Array<{ fromAgentId: string; toQueueId: string; toAgentId: string | undefined; warm: boolean; atMs: number }>;
  /** The agent's wrap-up code (at most 64 characters). */
  disposition: string | undefined;
  /** The agent's wrap-up notes (at most 2,000 characters). */
  notes: string | undefined;
  /** Queues the contact overflowed through, in order. */
  overflowedFrom: string[];
  callback: boolean;
}

/** The metadata of a delivery of kind `contact` (set by events.ts from a checked record). */
export function contactMetadataOf(delivery: Delivery): ContactMetadata {
  return delivery.metadata as unknown as ContactMetadata;
}

/** A communication to deliver: a recording, a transcript, an attachment, a session or a contact-center contact's record, with its contacts. */
export interface Delivery {
  /** Stable across retries and duplicates: the destination's idempotency key. */
  deliveryId: string;
  /**
   * Which attempt at the event this is (JetStream's delivery count), when known. A first
   * attempt may still meet its own earlier writes (a duplicate event), so destinations stay
   * idempotent; they only skip their "already delivered?" check for it when that check costs a
   * request the write itself would answer.
   */
  attempt?: number;
  kind: 'recording' | 'transcript' | 'attachment' | 'session' | 'contact';
  tenant: string;
  room: string;
  startedAtMs: number;
  endedAtMs: number;
  /** For a session, also what the customer's app gave: phone number (E.164) and device ids. */
  contacts: Array<{ participantId: string; role: string; externalId: string; crmContactId: string; phoneNumber?: string; deviceIds?: string[] }>;
  /** A session's participants arrive sealed; they are opened just before delivery. */
  sealedContacts?: { sessionId: string; sealed: string };
  artifacts: DeliveryArtifact[];
  /** What else the event says (no personal data beyond the contacts' references; a contact's notes are the agent's). */
  metadata: Record<string, unknown>;
}

/** A customer's system that takes deliveries. Deliveries must be idempotent. */
export interface Destination {
  /** Checks that the destination answers and accepts the credentials. */
  test(): Promise<void>;
  deliver(delivery: Delivery): Promise<void>;
  close(): Promise<void>;
}

/**
 * The CRM contact ids a destination found or created for a tenant's end users, by the
 * customer's external id. Kept in KV so a contact is looked up once; deleted when the tenant
 * removes the connector.
 */
export interface ContactMap {
  get(externalId: string): Promise<string | undefined>;
  set(externalId: string, crmContactId: string): Promise<void>;
}

/** What a destination gets besides its own settings. */
export interface DestinationDeps {
  contacts: ContactMap;
  /** Structured logs; never log personal data or a destination's response bodies. */
  log: import('@gateway/common').Logger;
  /** Refuses a host that is not on the public internet (unless the deployment allows it). */
  checkHost(host: string): Promise<void>;
  /** Where destinations may connect, and the connections that go only to addresses checked against it. */
  network: DestinationNetwork;
  connections: DestinationConnections;
  /** The longest a destination may wait for one answer, whatever the tenant set (an operator's cap). */
  maxRequestTimeoutMs: number;
}
