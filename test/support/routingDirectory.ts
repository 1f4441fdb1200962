import { buckets, createLogger, openBucket } from '@gateway/common';
import type { NatsEndpoint } from '@gateway/testing';
import { DirectoryStore } from '../../services/routing/src/directory/DirectoryStore.js';

/**
 * The routing directories the tests put in a tenant before routing starts, and the seeding that
 * puts them there (as `make up` seeds the demo tenant's): queues, profiles and people, named for
 * what the cases rely on.
 */

/** The queues the desk's cases ask in. */
export const queues = {
  /** Needs billing; agents see the order and the topic of the app's context. */
  billing: { queueId: 'billing', name: 'Billing', priority: 1, requiredSkills: { billing: 1 }, serviceLevelSeconds: 20, contextFields: ['order', 'topic'] },
  support: { queueId: 'support', name: 'Support', priority: 2, requiredSkills: { support: 1 }, serviceLevelSeconds: 30 },
  /** Never open: a contact asking here is offered a callback at once. */
  night: { queueId: 'night', name: 'Night line', priority: 3, requiredSkills: {}, serviceLevelSeconds: 30, businessHours: { timeZone: 'UTC', weekly: [] } },
};

export const profiles = {
  /** Billing first, then support. */
  both: {
    profileId: 'both',
    name: 'Both',
    queues: [
      { queueId: 'billing', priority: 1 },
      { queueId: 'support', priority: 2 },
    ],
    capacity: { call: 1, chat: 3 },
  },
  supportOnly: { profileId: 'support-only', name: 'Support', queues: [{ queueId: 'support', priority: 1 }], capacity: { call: 1, chat: 3 } },
};

/** Ann and bob take billing and support (ann the more skilled at billing), cyd support only; sue supervises. */
export const people = {
  ann: { personId: 'ann', name: 'Ann', roles: ['agent'], skills: { billing: 5, support: 5 }, profileId: 'both' },
  bob: { personId: 'bob', name: 'Bob', roles: ['agent'], skills: { billing: 3, support: 5 }, profileId: 'both' },
  cyd: { personId: 'cyd', name: 'Cyd', roles: ['agent'], skills: { support: 5 }, profileId: 'support-only' },
  sue: { personId: 'sue', name: 'Sue', roles: ['supervisor'], skills: {} },
};

/** The desk's directory: billing, support and the night line; ann, bob, cyd and sue. */
export const deskDirectory = {
  queues: [queues.billing, queues.support, queues.night],
  profiles: [profiles.both, profiles.supportOnly],
  people: [people.ann, people.bob, people.cyd, people.sue],
};

/**
 * One billing queue (agents see the order) that ann and bob serve alike, for cases about one
 * offer at a time. Their names are for finding them where they must not be (a trace).
 */
export const billingDirectory = {
  queues: [{ queueId: 'billing', name: 'Billing', priority: 1, requiredSkills: { billing: 1 }, serviceLevelSeconds: 20, contextFields: ['order'] }],
  profiles: [{ profileId: 'billing', name: 'Billing', queues: [{ queueId: 'billing', priority: 1 }], capacity: { call: 1, chat: 3 } }],
  people: [
    { personId: 'ann', name: 'Ann Agent', roles: ['agent'], skills: { billing: 5 }, profileId: 'billing' },
    { personId: 'bob', name: 'Bob Agent', roles: ['agent'], skills: { billing: 5 }, profileId: 'billing' },
  ],
};

/** Seeds a tenant's routing directory (the demo tenant's unless named) over NATS, as routing's own identity. */
export async function seedRoutingDirectory(nats: NatsEndpoint, directory: unknown, tenant = 'demo'): Promise<void> {
  const nc = await nats.connect('routing');
  try {
    await new DirectoryStore(await openBucket(nc, buckets.routingDirectory), createLogger('test', 'silent')).seed(tenant, directory);
  } finally {
    await nc.close();
  }
}
