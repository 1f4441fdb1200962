import type { RoutingEngine } from '../engine/RoutingEngine.js';
import type { RoutingEvent } from '../engine/events.js';
import type { Agent, Contact } from '../engine/model.js';
import { repairOffers } from '../state/repair.js';
import type { RoutingRecords } from '../state/RoutingRecords.js';

/** Operations decided together and stored with one round of writes (agents, then contacts). */
const MAX_BATCH = 100;

interface Waiting {
  operation: (engine: RoutingEngine) => RoutingEvent[];
  resolve: (events: RoutingEvent[]) => void;
  reject: (error: unknown) => void;
}

/**
 * The decisions of one tenant, by the replica holding its lease (docs/routing.md): the engine
 * decides in memory; every record a decision changed is then stored with compare-and-set over
 * the revision it was read at (agents before contacts, so an offer reserves its agent before it
 * marks its contact), and only then are the events given out. When a write finds a record
 * changed (another owner decided meanwhile: a lease lost without knowing it yet), the tenant is
 * loaded again from the store, which is the truth, and the operation is refused as stale: what
 * was not stored never happened. Operations run one at a time, in the order they came; those
 * that came while the previous ones were being stored are decided one after another and stored
 * together (a group commit: the agents' writes at once, then the contacts'), so a burst of
 * commands costs a few round trips to the store, not two per command.
 */
export class TenantOwner {
  private readonly revisions = { agents: new Map<string, number>(), contacts: new Map<string, number>() };
  /** What the store holds, as last read or written: a decision writes only what differs. */
  private readonly stored = { agents: new Map<string, string>(), contacts: new Map<string, string>() };
  private queue: Promise<unknown> = Promise.resolve();
  /** Operations not decided yet, and whether a batch is queued to take them. */
  private readonly waiting: Waiting[] = [];
  private batchQueued = false;
  /**
   * Set while the engine may hold decisions the store does not (a write failed and the reload
   * that follows failed too, e.g. no leader for the records' stream yet): the next batch reloads
   * first instead of deciding from them.
   */
  private unsure = false;

  constructor(
    readonly tenant: string,
    private readonly records: RoutingRecords,
    /** Holds the tenant's queues and profiles (the directory); its agents and contacts come from the store. */
    readonly engine: RoutingEngine,
  ) {}

  /** Whether the engine holds what the store holds (false after a write and its reload both failed, until the next reload). */
  get trusted(): boolean {
    return !this.unsure;
  }

  /** Reads the tenant from the store, undoes half-made offers, and stores those repairs. */
  load(): Promise<void> {
    return this.serially(() => this.reload());
  }

  /**
   * Runs an operation on the engine (a command or a pass), stores what it changed, and returns
   * its events; throws StaleRecord (after reloading) when another owner changed a record first.
   */
  run(operation: (engine: RoutingEngine) => RoutingEvent[]): Promise<RoutingEvent[]> {
    const done = new Promise<RoutingEvent[]>((resolve, reject) => this.waiting.push({ operation, resolve, reject }));
    this.queueBatch();
    return done;
  }

  private queueBatch(): void {
    if (this.batchQueued || this.waiting.length === 0) return;
    this.batchQueued = true;
    void this.serially(() => this.runBatch());
  }

  /** Decides the waiting operations in order, stores what they changed, then answers each (a refusal is that operation's alone; a failed write, all of theirs). */
  private async runBatch(): Promise<void> {
    this.batchQueued = false;
    const batch = this.waiting.splice(0, MAX_BATCH);
    this.queueBatch();
    if (this.unsure) {
      try {
        await this.reload();
      } catch (error) {
        for (const { reject } of batch) reject(error);
        return;
      }
    }
    const outcomes = batch.map(({ operation }): { events: RoutingEvent[] } | { error: unknown } => {
      try {
        return { events: operation(this.engine) };
      } catch (error) {
        return { error };
      }
    });
    try {
      await this.store();
    } catch (error) {
      let failure = error;
      await this.reload().catch((reloadError: unknown) => (failure = reloadError));
      for (const { reject } of batch) reject(failure);
      return;
    }
    batch.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i]!;
      if ('error' in outcome) reject(outcome.error);
      else resolve(outcome.events);
    });
  }

  private async reload(): Promise<void> {
    this.unsure = true;
    const { agents, contacts } = await this.records.load(this.tenant);
    const agentRecords = new Map([...agents].map(([id, stored]) => [id, stored.record]));
    const contactRecords = new Map([...contacts].map(([id, stored]) => [id, stored.record]));
    this.revisions.agents = new Map([...agents].map(([id, stored]) => [id, stored.revision]));
    this.revisions.contacts = new Map([...contacts].map(([id, stored]) => [id, stored.revision]));
    this.stored.agents = new Map([...agentRecords].map(([id, record]) => [id, JSON.stringify(record)]));
    this.stored.contacts = new Map([...contactRecords].map(([id, record]) => [id, JSON.stringify(record)]));
    repairOffers(agentRecords, contactRecords);
    this.engine.restore(agentRecords.values(), contactRecords.values());
    await this.store(true);
    this.unsure = false;
  }

  /**
   * Writes the agents, then the contacts, the operations changed (all of them after a reload)
   * that differ from the store; removes ended contacts. Each kind's writes go out together, and
   * the contacts' only once every agent's is done: an offer's agent is reserved before its
   * contact is marked.
   */
  private async store(everything = false): Promise<void> {
    const touched = this.engine.takeTouched();
    const agents = everything ? [...this.engine.agents.keys()] : [...touched.agents];
    const contacts = everything ? [...this.engine.contacts.keys(), ...this.revisions.contacts.keys()] : [...touched.contacts];
    await allWritten(agents, async (agentId) => {
      const agent = this.engine.agents.get(agentId);
      if (agent) await this.write('agents', agentId, agent);
    });
    await allWritten([...new Set(contacts)], async (contactId) => {
      const contact = this.engine.contacts.get(contactId);
      if (contact) {
        await this.write('contacts', contactId, contact);
        return;
      }
      const revision = this.revisions.contacts.get(contactId);
      if (revision === undefined) return;
      await this.records.removeContact(this.tenant, contactId, revision);
      this.revisions.contacts.delete(contactId);
      this.stored.contacts.delete(contactId);
    });
  }

  private async write(kind: 'agents' | 'contacts', id: string, record: Agent | Contact): Promise<void> {
    const json = JSON.stringify(record);
    if (this.stored[kind].get(id) === json) return;
    const revision = this.revisions[kind].get(id) ?? 0;
    const written = kind === 'agents' ? await this.records.putAgent(this.tenant, record as Agent, revision) : await this.records.putContact(this.tenant, record as Contact, revision);
    this.revisions[kind].set(id, written);
    this.stored[kind].set(id, json);
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Writes in flight at once, at most: a reload may rewrite a whole tenant. */
const MAX_WRITES_IN_FLIGHT = 64;

/**
 * Runs `write` for every id, `MAX_WRITES_IN_FLIGHT` at a time, and waits for those started to
 * settle before throwing the first failure: a write still in flight would land after the reload that
 * follows a failure, and its revision would overwrite the one just read.
 */
async function allWritten(ids: readonly string[], write: (id: string) => Promise<void>): Promise<void> {
  let next = 0;
  const failures: unknown[] = [];
  const worker = async () => {
    // After a failure nothing more is started: the reload that follows is the truth.
    while (next < ids.length && failures.length === 0) {
      const id = ids[next++]!;
      await write(id).catch((error: unknown) => failures.push(error));
    }
  };
  await Promise.all(Array.from({ length: Math.min(MAX_WRITES_IN_FLIGHT, ids.length) }, worker));
  if (failures.length > 0) throw failures[0];
}
