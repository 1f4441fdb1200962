import type { Queue, RoutingProfile } from '../engine/model.js';
import type { DirectorySnapshot } from './DirectoryStore.js';
import { type BusinessHours, toEngineProfile, toEngineQueue } from './model.js';

/** What a tenant's routing needs of its directory: the queues, profiles and people. */
export interface DirectoryView {
  queues: ReadonlyArray<Queue & { name: string; contextFields?: readonly string[]; businessHours?: BusinessHours }>;
  profiles: readonly RoutingProfile[];
  people: ReadonlyArray<{ personId: string; name: string; roles: readonly string[]; skills: Readonly<Record<string, number>>; profileId?: string }>;
}

/** What routing takes of a tenant's stored directory: the engine's queues and profiles, with what the service shows and checks. */
export function directoryView(snapshot: DirectorySnapshot): DirectoryView {
  return {
    queues: snapshot.queues.map((queue) => ({
      ...toEngineQueue(queue),
      name: queue.name,
      ...(queue.contextFields ? { contextFields: queue.contextFields } : {}),
      ...(queue.businessHours ? { businessHours: queue.businessHours } : {}),
    })),
    profiles: snapshot.profiles.map(toEngineProfile),
    people: snapshot.people.map((person) => ({
      personId: person.personId,
      name: person.name,
      roles: person.roles,
      skills: person.skills,
      ...(person.profileId ? { profileId: person.profileId } : {}),
    })),
  };
}

/**
 * A tenant's directory as its routing reads it: the view, and its people and queues by id (the
 * commands' checks, the names supervisors see). Replaced whole when the tenant's admins change it.
 */
export class TenantDirectory {
  view!: DirectoryView;
  people!: Map<string, DirectoryView['people'][number]>;
  queues!: Map<string, DirectoryView['queues'][number]>;

  constructor(view: DirectoryView) {
    this.set(view);
  }

  set(view: DirectoryView): void {
    this.view = view;
    this.people = new Map(view.people.map((p) => [p.personId, p]));
    this.queues = new Map(view.queues.map((q) => [q.queueId, q]));
  }
}
