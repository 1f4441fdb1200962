import type { KV, KvEntry } from '@nats-io/kv';
import { z } from 'zod';
import { isLiveEntry, listEntries, schemas } from '@gateway/common';
import type { Agent, Contact } from '../engine/model.js';

/**
 * A tenant's agents and contacts as records in KV (docs/routing.md), each written with
 * compare-and-set on its own revision: whoever decides from a stale view (a replica that lost
 * its lease without knowing yet) fails its write instead of overwriting a newer decision.
 * Records read back are checked by schema like any input; one that does not read is left out
 * (and said so), never trusted.
 *
 * Keys: `<tenant>.agent.<agentId>`, `<tenant>.contact.<contactId>`.
 */

const id = schemas.id;
const count = z.number().int().min(0).max(1_000);
const at = z.number().int().min(0);
const skills = z.record(z.string().regex(/^[a-z0-9_-]{1,32}$/), z.number().int().min(0).max(10));

const transferSchema = z.strictObject({ fromAgentId: id(), toQueueId: id(), toAgentId: id().optional(), warm: z.boolean(), atMs: at });

/** Contacts an agent may hold ended and not wrapped up; older ones are sent without a disposition. */
export const MAX_PENDING_RECORDS = 10;

const pendingRecordSchema = z.strictObject({
  contactId: id(),
  queueId: id(),
  channel: z.enum(['voice', 'video', 'chat']),
  endUser: schemas.text(256),
  crmContactId: z.string().min(1).max(64).optional(),
  requestedAtMs: at,
  connectedAtMs: at,
  endedAtMs: at,
  agentId: schemas.optionalId(),
  room: schemas.optionalId(),
  transfers: z.array(transferSchema).max(50),
  overflowedFrom: z.array(id()).max(50),
  callback: z.boolean(),
  handedOver: z.boolean().optional(),
});

const agentSchema = z.strictObject({
  agentId: id(),
  status: z.enum(['available', 'away', 'after_contact_work', 'offline']),
  awayReason: z.string().max(64).optional(),
  profileId: id(),
  skills,
  load: z.strictObject({ call: count, chat: count }),
  idleSinceMs: at,
  offeredContactId: id().optional(),
  missedOffers: count,
  beforeDisconnect: z.enum(['available', 'away', 'after_contact_work']).optional(),
  pendingRecords: z.array(pendingRecordSchema).max(MAX_PENDING_RECORDS).optional(),
});

const base64 = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/);
const aboutSchema = z.strictObject({
  endUser: schemas.text(256, { min: 1 }),
  crmContactId: z.string().min(1).max(64).optional(),
  sealed: z.strictObject({ wrapped: z.strictObject({ kekId: z.string().min(1).max(256), value: base64(1_024) }), value: base64(12_000) }).optional(),
  connectedAtMs: at.optional(),
  room: id().optional(),
  overflowedFrom: z.array(id()).max(50).optional(),
  transfers: z.array(transferSchema).max(50).optional(),
  traceparent: z
    .string()
    .regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/)
    .optional(),
});

const contactSchema = z.strictObject({
  contactId: id(),
  queueId: id(),
  channel: z.enum(['voice', 'video', 'chat']),
  requestedAtMs: at,
  queuedAtMs: at,
  priority: z.number().int().min(-1_000).max(1_000),
  state: z.enum(['waiting', 'offered', 'connected', 'ended']),
  offer: z.strictObject({ agentId: id(), expiresAtMs: at }).optional(),
  passedBy: z.array(id()).max(1_000),
  agentId: id().optional(),
  targetAgentId: id().optional(),
  handingOver: z.array(id()).max(50).optional(),
  callback: z.boolean().optional(),
  about: aboutSchema.optional(),
});

export interface Stored<T> {
  record: T;
  revision: number;
}

/**
 * How long a write waits out a change of its stream's leader (a JetStream cluster electing a new
 * one answers "no responders" or nothing at all meanwhile, usually for well under a second).
 * Under the lease's age limit, so a replica that cannot write gives up before another one could
 * hold the tenant; what it decided is then not stored, so it never happened.
 */
const ELECTION_WAIT_MS = 6_000;
/** Each attempt's own time limit: a write sent to a leader that just stepped down is not answered. */
const ATTEMPT_TIMEOUT_MS = 2_000;

/** A failure that a leader election (or a busy server) causes and that passes: try again. */
function isPassingFailure(error: unknown): boolean {
  const names = [(error as Error)?.name, ((error as Error)?.cause as Error | undefined)?.name];
  if (names.some((name) => name === 'TimeoutError' || name === 'NoResponders' || name === 'JetStreamNotEnabled')) return true;
  return /no responders|timeout|temporarily unavailable|jetstream is not enabled/i.test(String((error as Error)?.message ?? error));
}

const isTimeout = (error: unknown) =>
  [(error as Error)?.name, ((error as Error)?.cause as Error | undefined)?.name].includes('TimeoutError') || /timeout/i.test(String((error as Error)?.message ?? error));
const isConflict = (error: unknown) => /wrong last sequence|key exists/i.test(String((error as Error)?.message ?? error));

/** Why a write did not happen: the record changed (or appeared, or went) since it was read. */
export class StaleRecord extends Error {
  constructor(readonly key: string) {
    super(`${key} changed since it was read`);
  }
}

export class RoutingRecords {
  constructor(
    private readonly kv: KV,
    private readonly onUnreadable: (key: string) => void = () => undefined,
    private readonly electionWaitMs = ELECTION_WAIT_MS,
  ) {}

  static agentKey = (tenant: string, agentId: string) => `${tenant}.agent.${agentId}`;
  static contactKey = (tenant: string, contactId: string) => `${tenant}.contact.${contactId}`;

  /** Every agent and contact of the tenant, with the revisions to write them back with. */
  async load(tenant: string): Promise<{ agents: Map<string, Stored<Agent>>; contacts: Map<string, Stored<Contact>> }> {
    const agents = new Map<string, Stored<Agent>>();
    const contacts = new Map<string, Stored<Contact>>();
    for (const entry of await listEntries(this.kv, `${tenant}.>`)) {
      const [, kind, recordId] = entry.key.split('.');
      const record = this.read(entry.key, entry.value, kind === 'agent' ? agentSchema : contactSchema);
      // A record must be filed under its own id: one copied under another key is not that one.
      if (kind === 'agent' && record && (record as Agent).agentId === recordId) agents.set(recordId!, { record: record as Agent, revision: entry.revision });
      else if (kind === 'contact' && record && (record as Contact).contactId === recordId) contacts.set(recordId!, { record: record as Contact, revision: entry.revision });
      else if (record) this.onUnreadable(entry.key);
    }
    return { agents, contacts };
  }

  async getAgent(tenant: string, agentId: string): Promise<Stored<Agent> | undefined> {
    const key = RoutingRecords.agentKey(tenant, agentId);
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return undefined;
    const record = this.read(key, entry.value, agentSchema);
    return record?.agentId === agentId ? { record, revision: entry.revision } : undefined;
  }

  async getContact(tenant: string, contactId: string): Promise<Stored<Contact> | undefined> {
    const key = RoutingRecords.contactKey(tenant, contactId);
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return undefined;
    const record = this.read(key, entry.value, contactSchema);
    return record?.contactId === contactId ? { record, revision: entry.revision } : undefined;
  }

  /** Writes an agent: created when `revision` is 0, else only over that revision. Returns the new revision. */
  async putAgent(tenant: string, agent: Agent, revision: number): Promise<number> {
    return this.write(RoutingRecords.agentKey(tenant, agent.agentId), agentSchema.parse(agent), revision);
  }

  async putContact(tenant: string, contact: Contact, revision: number): Promise<number> {
    return this.write(RoutingRecords.contactKey(tenant, contact.contactId), contactSchema.parse(contact), revision);
  }

  /** Removes an ended contact, only over the revision read. */
  async removeContact(tenant: string, contactId: string, revision: number): Promise<void> {
    const key = RoutingRecords.contactKey(tenant, contactId);
    await this.throughElection(
      () => this.kv.delete(key, { previousSeq: revision }),
      // An attempt that went unanswered may have deleted it: gone is what was asked.
      async () => {
        if (!isLiveEntry(await this.settled(key, revision))) return undefined;
        throw new StaleRecord(key);
      },
      key,
    );
  }

  /**
   * An offer, stored: the agent is reserved first (their record, over the revision read), then
   * the contact is marked (over its revision). When the contact changed meanwhile (another owner
   * offered it, the end user left), the agent's reservation is undone and StaleRecord thrown: a
   * contact is never offered to two agents, and an agent never holds two offers.
   */
  async offer(tenant: string, contact: Stored<Contact>, agent: Stored<Agent>, expiresAtMs: number): Promise<{ contact: Stored<Contact>; agent: Stored<Agent> }> {
    if (agent.record.offeredContactId) throw new StaleRecord(RoutingRecords.agentKey(tenant, agent.record.agentId));
    const reserved: Agent = { ...agent.record, offeredContactId: contact.record.contactId };
    const agentRevision = await this.putAgent(tenant, reserved, agent.revision);
    const offered: Contact = { ...contact.record, state: 'offered', offer: { agentId: agent.record.agentId, expiresAtMs } };
    try {
      const contactRevision = await this.putContact(tenant, offered, contact.revision);
      return { contact: { record: offered, revision: contactRevision }, agent: { record: reserved, revision: agentRevision } };
    } catch (error) {
      // Undone over our own reservation only: if that changed too, it is someone else's now.
      await this.putAgent(tenant, agent.record, agentRevision).catch(() => undefined);
      throw error;
    }
  }

  private async write(key: string, record: unknown, revision: number): Promise<number> {
    const value = JSON.stringify(record);
    return this.throughElection(
      () => (revision === 0 ? this.kv.create(key, value) : this.kv.update(key, value, revision, ATTEMPT_TIMEOUT_MS)),
      // An attempt that went unanswered may have been written: the record holding exactly this
      // value is ours, at its revision (a new leader answers the retry with a conflict).
      async () => {
        const entry = await this.settled(key, revision);
        if (isLiveEntry(entry) && new TextDecoder().decode(entry.value) === value) return entry.revision;
        throw new StaleRecord(key);
      },
      key,
    );
  }

  /**
   * The record after a conflict over `revision`: a copy that lags (gets are answered by any
   * server holding the stream) may still show that revision, so it is read again for a while.
   */
  private async settled(key: string, revision: number): Promise<KvEntry | null> {
    const deadline = Date.now() + 2_000;
    for (;;) {
      const entry = await this.kv.get(key);
      if ((entry?.revision ?? 0) !== revision || Date.now() >= deadline) return entry;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * Runs a compare-and-set write, tried again while a failure passes (a leader being elected)
   * for up to `electionWaitMs`. A conflict is StaleRecord, unless an earlier attempt went
   * unanswered: then `landed` tells from the store whether that one was written after all. A
   * write that timed out is never taken as lost nor as done without looking.
   */
  private async throughElection<T>(attempt: () => Promise<T>, landed: () => Promise<T>, key: string): Promise<T> {
    const deadline = Date.now() + this.electionWaitMs;
    let unanswered = false;
    for (let round = 0; ; round++) {
      try {
        return await attempt();
      } catch (error) {
        if (isConflict(error)) {
          if (unanswered) return landed();
          throw new StaleRecord(key);
        }
        if (!isPassingFailure(error) || Date.now() >= deadline) throw error;
        // Refused before anything was stored (no leader to take it) is not in doubt; a timeout is.
        unanswered ||= isTimeout(error);
        await new Promise((resolve) => setTimeout(resolve, Math.min(500, 25 * 2 ** round)));
      }
    }
  }

  private read<S extends z.ZodType>(key: string, value: Uint8Array, schema: S): z.infer<S> | undefined {
    try {
      const parsed = schema.safeParse(JSON.parse(new TextDecoder().decode(value)));
      if (parsed.success) return parsed.data;
    } catch {
      // Not JSON: unreadable, below.
    }
    this.onUnreadable(key);
    return undefined;
  }
}
