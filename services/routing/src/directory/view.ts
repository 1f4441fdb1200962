import type { DirectoryView } from '../ownership/TenantRouting.js';
import type { DirectorySnapshot } from './DirectoryStore.js';
import { toEngineProfile, toEngineQueue } from './model.js';

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
