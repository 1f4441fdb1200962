import type { RoutingEngine, RoutingEvent } from '../engine/RoutingEngine.js';
import type { Agent, Contact } from '../engine/model.js';
import { repairOffers } from '../state/repair.js';
import type { RoutingRecords } from '../state/RoutingRecords.js';

/**
 * The decisions of one tenant, by the replica holding its lease (docs/routing.md): the engine
 * decides in memory; every record a decision changed is then stored with compare-and-set over
 * the revision it was read at (agents before contacts, so an offer reserves its agent before it
 * marks its contact), and only then are the events given out. When a write finds a record
 * changed (another owner decided meanwhile: a lease lost without knowing it yet), the tenant is
 * loaded again from the store, which is the truth, and the operation is refused as stale: what
 * was not stored never happened. Operations run one at a time.
 */
export class TenantOwner {
  private readonly revisions = { agents: new Map<string, number>(), contacts: new Map<string, number>() };
  /** What the store holds, as last read or written: a decision writes only what differs. */
  private readonly stored = { agents: new Map<string, string>(), contacts: new Map<string, string>() };
  private queue: Promise<unknown> = Promise.resolve();
  private changes = 0;
  /**
   * Set while the engine may hold decisions the store does not (a write failed and the reload
   * that follows failed too, e.g. no leader for the records' stream yet): the next operation
   * reloads first instead of deciding from them.
   */
  private unsure = false;

  constructor(
    readonly tenant: string,
    private readonly records: RoutingRecords,
    /** Holds the tenant's queues and profiles (the directory); its agents and contacts come from the store. */
    readonly engine: RoutingEngine,
  ) {}

  /** Counts the operations run and reloads: what was derived from the engine's state at one version holds until the next. */
  get version(): number {
    return this.changes;
  }

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
    return this.serially(async () => {
      if (this.unsure) await this.reload();
      this.changes++;
      const events = operation(this.engine);
      try {
        await this.store();
      } catch (error) {
        await this.reload();
        throw error;
      }
      return events;
    });
  }

  private async reload(): Promise<void> {
    this.changes++;
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
   * Writes the agents, then the contacts, the operation changed (all of them after a reload) that
   * differ from the store; removes ended contacts.
   */
  private async store(everything = false): Promise<void> {
    const touched = this.engine.takeTouched();
    const agents = everything ? [...this.engine.agents.keys()] : [...touched.agents];
    const contacts = everything ? [...this.engine.contacts.keys(), ...this.revisions.contacts.keys()] : [...touched.contacts];
    for (const agentId of agents) {
      const agent = this.engine.agents.get(agentId);
      if (agent) await this.write('agents', agentId, agent);
    }
    for (const contactId of new Set(contacts)) {
      const contact = this.engine.contacts.get(contactId);
      if (contact) {
        await this.write('contacts', contactId, contact);
        continue;
      }
      const revision = this.revisions.contacts.get(contactId);
      if (revision === undefined) continue;
      await this.records.removeContact(this.tenant, contactId, revision);
      this.revisions.contacts.delete(contactId);
      this.stored.contacts.delete(contactId);
    }
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
