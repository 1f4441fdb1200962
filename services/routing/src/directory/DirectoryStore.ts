import type { KV } from '@nats-io/kv';
import { ErrorCode, GatewayError, ID_PATTERN, isLiveEntry, listEntries, parseWith, type Logger } from '@gateway/common';
import { directoryKinds, directorySchema, kindSchemas, type DirectoryKind, type DirectoryRecords } from './model.js';

/**
 * Tenants' directories in the `gateway_routing_directory` KV bucket: one record per key,
 * `<tenant>.<kind>.<id>` (kind: people, teams, queues, profiles), JSON checked by its schema on
 * the way in and again when read back; a record that does not read (or sits under another id)
 * is left out and reported, never trusted and never fatal.
 *
 * References are checked on every write: a person's profile and team exist, a team's
 * supervisors are people with the supervisor role, a profile's queues exist, a queue's overflow
 * exists, is not the queue itself and does not lead back to it; a record something refers to is
 * not deleted (INVALID_STATE, 409, naming what refers to it). The writes of one tenant are made
 * one at a time in a replica; across replicas, a write whose checks ran while another write of
 * the tenant landed checks again once both are stored, and is undone if they now fail (settle).
 *
 * Changes: every write ends by rewriting `<tenant>.revision`, whose KV revision only grows.
 * The routing owner of a tenant reads the snapshot (with the revision it was read at), then
 * `watch`es that key: a direct get per interval, no consumer, so it needs only the read
 * permission, survives reconnects, and a change cannot be missed (a revision is compared, not
 * an event received). A writer that dies between its record and the marker leaves that change
 * to be seen with the next one, or when an owner loads the tenant.
 */

/** Records of each kind one tenant may hold. */
export const DIRECTORY_LIMITS: Readonly<Record<DirectoryKind, number>> = { people: 5_000, teams: 500, queues: 500, profiles: 500 };

const singular: Record<DirectoryKind, string> = { people: 'person', teams: 'team', queues: 'queue', profiles: 'profile' };

export interface DirectorySnapshot {
  people: DirectoryRecords['people'][];
  teams: DirectoryRecords['teams'][];
  queues: DirectoryRecords['queues'][];
  profiles: DirectoryRecords['profiles'][];
  /** The tenant's change revision when the snapshot was read (0: never written); `watch` from it. */
  revision: number;
}

/** What the checks read: the store's records (KV) or a directory being seeded (memory). */
interface View {
  get<K extends DirectoryKind>(kind: K, id: string): Promise<DirectoryRecords[K] | undefined>;
  list<K extends DirectoryKind>(kind: K): Promise<DirectoryRecords[K][]>;
}

const idOf = (kind: DirectoryKind, record: DirectoryRecords[DirectoryKind]): string => (record as unknown as Record<string, string>)[kindSchemas[kind].idField]!;

/** "profiles front, back and 3 more" */
function naming(kind: DirectoryKind, ids: string[]): string {
  const shown = ids.slice(0, 5).map((id) => `"${id}"`);
  return `${kind} ${shown.join(', ')}${ids.length > shown.length ? ` and ${ids.length - shown.length} more` : ''}`;
}

const missing = (field: string, kind: DirectoryKind, id: string) => new GatewayError(ErrorCode.BAD_REQUEST, `${field}: there is no ${singular[kind]} "${id}"`);

/** The references a record about to be written makes (and, for a person, the roles others count on). */
async function checkWrite<K extends DirectoryKind>(kind: K, record: DirectoryRecords[K], before: DirectoryRecords[K] | undefined, view: View): Promise<void> {
  switch (kind) {
    case 'people': {
      const person = record as DirectoryRecords['people'];
      if (person.profileId !== undefined && !(await view.get('profiles', person.profileId))) throw missing('profileId', 'profiles', person.profileId);
      if (person.teamId !== undefined && !(await view.get('teams', person.teamId))) throw missing('teamId', 'teams', person.teamId);
      const was = before as DirectoryRecords['people'] | undefined;
      if (was?.roles.includes('supervisor') && !person.roles.includes('supervisor')) {
        const supervised = (await view.list('teams')).filter((team) => team.supervisorIds.includes(person.personId)).map((team) => team.teamId);
        if (supervised.length > 0)
          throw new GatewayError(ErrorCode.INVALID_STATE, `person "${person.personId}" supervises ${naming('teams', supervised)}: take them off those teams before removing the supervisor role`);
      }
      return;
    }
    case 'teams': {
      const team = record as DirectoryRecords['teams'];
      for (const [index, supervisorId] of team.supervisorIds.entries()) {
        const person = await view.get('people', supervisorId);
        if (!person) throw missing(`supervisorIds.${index}`, 'people', supervisorId);
        if (!person.roles.includes('supervisor')) throw new GatewayError(ErrorCode.BAD_REQUEST, `supervisorIds.${index}: person "${supervisorId}" does not have the supervisor role`);
      }
      return;
    }
    case 'queues': {
      const queue = record as DirectoryRecords['queues'];
      if (!queue.overflow) return;
      if (queue.overflow.queueId === queue.queueId) throw new GatewayError(ErrorCode.BAD_REQUEST, 'overflow.queueId: a queue cannot overflow to itself');
      // Following the overflows from the target must not come back here (contacts would circle).
      let next: string | undefined = queue.overflow.queueId;
      for (let hops = 0; next !== undefined && hops <= DIRECTORY_LIMITS.queues; hops++) {
        if (next === queue.queueId) throw new GatewayError(ErrorCode.BAD_REQUEST, `overflow.queueId: overflowing to "${queue.overflow.queueId}" would lead back to this queue`);
        const target: DirectoryRecords['queues'] | undefined = await view.get('queues', next);
        if (!target && hops === 0) throw missing('overflow.queueId', 'queues', next);
        next = target?.overflow?.queueId;
      }
      return;
    }
    case 'profiles': {
      const profile = record as DirectoryRecords['profiles'];
      for (const [index, { queueId }] of profile.queues.entries()) if (!(await view.get('queues', queueId))) throw missing(`queues.${index}.queueId`, 'queues', queueId);
      return;
    }
  }
}

/** What refers to a record about to be deleted: it stays while anything does. */
async function checkDelete(kind: DirectoryKind, id: string, view: View): Promise<void> {
  const users: Array<[DirectoryKind, string[]]> = [];
  if (kind === 'queues') {
    users.push(['profiles', (await view.list('profiles')).filter((p) => p.queues.some((q) => q.queueId === id)).map((p) => p.profileId)]);
    users.push(['queues', (await view.list('queues')).filter((q) => q.overflow?.queueId === id).map((q) => q.queueId)]);
  } else if (kind === 'profiles') {
    users.push(['people', (await view.list('people')).filter((p) => p.profileId === id).map((p) => p.personId)]);
  } else if (kind === 'teams') {
    users.push(['people', (await view.list('people')).filter((p) => p.teamId === id).map((p) => p.personId)]);
  } else {
    users.push(['teams', (await view.list('teams')).filter((t) => t.supervisorIds.includes(id)).map((t) => t.teamId)]);
  }
  const used = users.filter(([, ids]) => ids.length > 0);
  if (used.length > 0) throw new GatewayError(ErrorCode.INVALID_STATE, `${singular[kind]} "${id}" is in use by ${used.map(([k, ids]) => naming(k, ids)).join(' and ')}: change those first`);
}

export class DirectoryStore {
  /** The write in progress per tenant: a tenant's writes go one at a time. */
  private readonly writing = new Map<string, Promise<unknown>>();

  constructor(
    private readonly kv: KV,
    private readonly log: Logger,
    private readonly limits: Readonly<Record<DirectoryKind, number>> = DIRECTORY_LIMITS,
  ) {}

  private static key(tenant: string, kind: DirectoryKind, id: string): string {
    return `${tenant}.${kind}.${id}`;
  }

  private static revisionKey(tenant: string): string {
    return `${tenant}.revision`;
  }

  /** One record; NOT_FOUND when there is none (or it does not read). */
  async get<K extends DirectoryKind>(tenant: string, kind: K, id: string): Promise<DirectoryRecords[K]> {
    const record = (await this.stored(tenant, kind, checkedId(id)))?.record;
    if (!record) throw new GatewayError(ErrorCode.NOT_FOUND, `there is no ${singular[kind]} "${id}"`);
    return record;
  }

  /** Every record of a kind, by id. */
  async list<K extends DirectoryKind>(tenant: string, kind: K): Promise<DirectoryRecords[K][]> {
    const records: DirectoryRecords[K][] = [];
    for (const entry of await listEntries(this.kv, `${tenant}.${kind}.*`)) {
      const record = this.read(kind, entry.key, entry.value);
      if (record) records.push(record);
    }
    return records.sort((a, b) => (idOf(kind, a) < idOf(kind, b) ? -1 : 1));
  }

  /** Everything of a tenant, with the revision to `watch` from. */
  async snapshot(tenant: string): Promise<DirectorySnapshot> {
    // The revision first: a change made while the records are read shows as a newer one.
    const revision = await this.revision(tenant);
    const [people, teams, queues, profiles] = await Promise.all([this.list(tenant, 'people'), this.list(tenant, 'teams'), this.list(tenant, 'queues'), this.list(tenant, 'profiles')]);
    return { people, teams, queues, profiles, revision };
  }

  /**
   * Creates or replaces a record from input (the id may be left out of it: the path gives it).
   * Checked by its schema, the tenant's limits and its references.
   */
  async put<K extends DirectoryKind>(tenant: string, kind: K, id: string, input: unknown): Promise<{ record: DirectoryRecords[K]; created: boolean }> {
    const { schema, idField } = kindSchemas[kind];
    checkedId(id);
    if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
      const given = (input as Record<string, unknown>)[idField];
      if (given !== undefined && given !== id) throw new GatewayError(ErrorCode.BAD_REQUEST, `${idField}: must be the path's id, or left out`);
      input = { ...input, [idField]: id };
    }
    const record = parseWith(schema, input, 'the body') as DirectoryRecords[K];
    return this.serialized(tenant, async () => {
      const marker = await this.revision(tenant);
      const existing = await this.stored(tenant, kind, id);
      const check = async (written: boolean) => {
        if (!existing) await this.checkLimit(tenant, kind, written);
        await checkWrite(kind, record, existing?.record, this.view(tenant));
      };
      await check(false);
      const key = DirectoryStore.key(tenant, kind, id);
      let revision: number;
      try {
        revision = existing ? await this.kv.update(key, JSON.stringify(record), existing.revision) : await this.kv.create(key, JSON.stringify(record));
      } catch (error) {
        if (isStale(error)) throw new GatewayError(ErrorCode.INVALID_STATE, `the ${singular[kind]} changed while it was written; read it and try again`, { cause: error });
        throw error;
      }
      await this.settle(
        tenant,
        marker,
        () => check(true),
        async () => {
          if (existing) await this.kv.update(key, existing.value, revision);
          else await this.kv.delete(key, { previousSeq: revision });
        },
      );
      return { record, created: !existing };
    });
  }

  /** Deletes a record nothing refers to; NOT_FOUND when there is none. */
  async remove(tenant: string, kind: DirectoryKind, id: string): Promise<void> {
    checkedId(id);
    await this.serialized(tenant, async () => {
      const marker = await this.revision(tenant);
      const existing = await this.stored(tenant, kind, id);
      if (!existing) throw new GatewayError(ErrorCode.NOT_FOUND, `there is no ${singular[kind]} "${id}"`);
      await checkDelete(kind, id, this.view(tenant));
      const key = DirectoryStore.key(tenant, kind, id);
      try {
        await this.kv.delete(key, { previousSeq: existing.revision });
      } catch (error) {
        if (isStale(error)) throw new GatewayError(ErrorCode.INVALID_STATE, `the ${singular[kind]} changed while it was deleted; read it and try again`, { cause: error });
        throw error;
      }
      await this.settle(
        tenant,
        marker,
        () => checkDelete(kind, id, this.view(tenant)),
        async () => {
          await this.kv.create(key, existing.value);
        },
      );
    });
  }

  /** The tenant's change revision: it grows with every write (0: never written). */
  async revision(tenant: string): Promise<number> {
    const entry = await this.kv.get(DirectoryStore.revisionKey(tenant));
    return entry?.revision ?? 0;
  }

  /**
   * Calls `onChange` with the new revision whenever the tenant's directory changes after
   * `sinceRevision` (a snapshot's), checking every `intervalMs`. Returns the function that stops it.
   */
  watch(tenant: string, sinceRevision: number, onChange: (revision: number) => void, intervalMs = 1_000): () => void {
    let seen = sinceRevision;
    let checking = false;
    const timer = setInterval(() => {
      if (checking) return;
      checking = true;
      this.revision(tenant)
        .then(
          (revision) => {
            if (revision === seen) return;
            seen = revision;
            try {
              onChange(revision);
            } catch (error) {
              this.log.error({ tenant, err: error }, 'a directory change listener failed');
            }
          },
          (error: unknown) => this.log.warn({ tenant, err: error }, 'the directory revision could not be read; trying again'),
        )
        .finally(() => {
          checking = false;
        });
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * Writes a whole directory (`{people, teams, queues, profiles}`), checked as a whole against
   * what the tenant already holds: every record by its schema, the limits and every reference.
   * Nothing is written when anything fails. Records it names replace the stored ones; others stay.
   */
  async seed(tenant: string, directory: unknown): Promise<Record<DirectoryKind, number>> {
    const given = parseWith(directorySchema, directory, 'the directory');
    return this.serialized(tenant, async () => {
      const current = await this.snapshot(tenant);
      const merged = new Map<DirectoryKind, Map<string, DirectoryRecords[DirectoryKind]>>(directoryKinds.map((kind) => [kind, new Map(current[kind].map((r) => [idOf(kind, r), r]))]));
      const incoming: Array<{ kind: DirectoryKind; record: DirectoryRecords[DirectoryKind]; before?: DirectoryRecords[DirectoryKind] }> = [];
      for (const kind of directoryKinds) {
        const seen = new Set<string>();
        for (const [index, input] of given[kind].entries()) {
          const record = parseWith(kindSchemas[kind].schema, input, `${kind}.${index}`) as DirectoryRecords[DirectoryKind];
          const id = idOf(kind, record);
          if (seen.has(id)) throw new GatewayError(ErrorCode.BAD_REQUEST, `${kind}.${index}: "${id}" is given twice`);
          seen.add(id);
          incoming.push({ kind, record, before: merged.get(kind)!.get(id) });
          merged.get(kind)!.set(id, record);
        }
        if (merged.get(kind)!.size > this.limits[kind]) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a tenant has at most ${this.limits[kind]} ${kind}`);
      }
      const view: View = {
        get: async (kind, id) => merged.get(kind)!.get(id) as never,
        list: async (kind) => [...merged.get(kind)!.values()] as never,
      };
      for (const { kind, record, before } of incoming) {
        try {
          await checkWrite(kind, record, before, view);
        } catch (error) {
          throw new GatewayError(ErrorCode.BAD_REQUEST, `${singular[kind]} "${idOf(kind, record)}": ${(error as Error).message}`);
        }
      }
      for (let at = 0; at < incoming.length; at += 100) {
        await Promise.all(incoming.slice(at, at + 100).map(({ kind, record }) => this.kv.put(DirectoryStore.key(tenant, kind, idOf(kind, record)), JSON.stringify(record))));
      }
      await this.changed(tenant);
      return Object.fromEntries(directoryKinds.map((kind) => [kind, given[kind].length])) as Record<DirectoryKind, number>;
    });
  }

  /** Refuses a record more than the limit: before it is written (`written` false) or after. */
  private async checkLimit(tenant: string, kind: DirectoryKind, written: boolean): Promise<void> {
    const held = (await listEntries(this.kv, `${tenant}.${kind}.*`)).length - (written ? 1 : 0);
    if (held >= this.limits[kind]) throw new GatewayError(ErrorCode.LIMIT_EXCEEDED, `a tenant has at most ${this.limits[kind]} ${kind}`);
  }

  /** The checks' reads, from KV. */
  private view(tenant: string): View {
    return {
      get: async (kind, id) => (await this.stored(tenant, kind, id))?.record,
      list: (kind) => this.list(tenant, kind),
    };
  }

  /** A stored record with its revision; the revision alone when it does not read (a write replaces it). */
  private async stored<K extends DirectoryKind>(tenant: string, kind: K, id: string): Promise<{ record?: DirectoryRecords[K]; value: Uint8Array; revision: number } | undefined> {
    const key = DirectoryStore.key(tenant, kind, id);
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) return undefined;
    return { record: this.read(kind, key, entry.value), value: entry.value, revision: entry.revision };
  }

  private read<K extends DirectoryKind>(kind: K, key: string, value: Uint8Array): DirectoryRecords[K] | undefined {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(value));
    } catch {
      parsed = undefined;
    }
    const result = kindSchemas[kind].schema.safeParse(parsed);
    // A record must be filed under its own id: one copied under another key is not that one.
    if (result.success && key === DirectoryStore.key(key.split('.')[0]!, kind, idOf(kind, result.data as DirectoryRecords[K]))) return result.data as DirectoryRecords[K];
    // A person's id is the tenant's choice and may hold a name: not logged.
    const [tenant, , id] = key.split('.');
    this.log.error({ tenant, kind, ...(kind === 'people' ? {} : { id }) }, 'a directory record is unreadable; left out');
    return undefined;
  }

  /**
   * Ends a write by moving the tenant's revision on from `marker`, the one read before the
   * checks. When another write of the tenant moved it meanwhile (another replica: this one's
   * writes go one at a time), the checks run again with both changes in view, and this change
   * is undone when they now fail: of two writes that pass their checks only apart, the one
   * that moves the revision first stands.
   */
  private async settle(tenant: string, marker: number, recheck: () => Promise<void>, undo: () => Promise<void>): Promise<void> {
    const key = DirectoryStore.revisionKey(tenant);
    const value = JSON.stringify({ changedAtMs: Date.now() });
    try {
      await (marker === 0 ? this.kv.create(key, value) : this.kv.update(key, value, marker));
      return;
    } catch (error) {
      if (!isStale(error)) throw error;
    }
    try {
      await recheck();
    } catch (error) {
      await undo().catch((undoError: unknown) => this.log.warn({ tenant, err: undoError }, 'a directory change refused after the fact could not be undone'));
      throw error;
    }
    await this.changed(tenant);
  }

  private async changed(tenant: string): Promise<void> {
    await this.kv.put(DirectoryStore.revisionKey(tenant), JSON.stringify({ changedAtMs: Date.now() }));
  }

  private serialized<T>(tenant: string, work: () => Promise<T>): Promise<T> {
    const previous = this.writing.get(tenant) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.writing.set(tenant, settled);
    void settled.then(() => this.writing.get(tenant) === settled && this.writing.delete(tenant));
    return next;
  }
}

/** A compare-and-set that found the key changed (or created) since it was read. */
const isStale = (error: unknown) => /wrong last sequence|key exists/i.test(String((error as Error)?.message ?? error));

function checkedId(id: string): string {
  if (!ID_PATTERN.test(id)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'the id must be 1-64 letters, digits, _ or -');
  return id;
}

/** Seeds a tenant's directory from a directory file's JSON (`make up`'s demo tenant): see DirectoryStore.seed. */
export function seedDirectory(store: DirectoryStore, tenant: string, directory: unknown): Promise<Record<DirectoryKind, number>> {
  return store.seed(tenant, directory);
}
