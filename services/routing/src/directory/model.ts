import { z } from 'zod';
import { schemas } from '@gateway/common';
import type { Agent, Queue, RoutingProfile } from '../engine/model.js';

/**
 * A tenant's directory (docs/routing.md, "Directory"): the people who work its contacts, their
 * teams, its queues and the routing profiles that say which queues an agent serves. Written by
 * the tenant's admins through the admin API (http/directory.ts), read by the routing owner of
 * the tenant, which hands the engine its Queue, RoutingProfile and agents (conversions below).
 * Every record is checked by these schemas on the way in and again when read back.
 */

export const directoryKinds = ['people', 'teams', 'queues', 'profiles'] as const;
export type DirectoryKind = (typeof directoryKinds)[number];

const id = schemas.id;
/** A skill's name: lower-case, as the engine's records hold it. */
const skillName = z
  .string()
  .regex(/^[a-z0-9_-]{1,32}$/, 'must be 1-32 lower-case letters, digits, _ or -')
  .refine((name) => !['__proto__', 'constructor', 'prototype'].includes(name), 'is a reserved name');
const level = z.number().int().min(1).max(10);
const MAX_SKILLS = 50;
const skills = z.record(skillName, level).refine((value) => Object.keys(value).length <= MAX_SKILLS, `at most ${MAX_SKILLS} skills`);
const seconds = (max: number) => z.number().int().min(1).max(max);
const uniqueIds = (max: number) =>
  z
    .array(id())
    .max(max)
    .refine((ids) => new Set(ids).size === ids.length, 'must not repeat an id');

export const roles = ['agent', 'supervisor', 'admin'] as const;

export const personSchema = z
  .strictObject({
    personId: id(),
    /** Display name: personal data, shown to the tenant's own users only, never logged. */
    name: schemas.text(128, { min: 1 }),
    roles: z
      .array(z.enum(roles))
      .min(1)
      .max(roles.length)
      .transform((given) => roles.filter((role) => given.includes(role))),
    skills: skills.default({}),
    teamId: id().optional(),
    /** The routing profile an agent works under; every agent has one. */
    profileId: id().optional(),
  })
  .refine((person) => !person.roles.includes('agent') || person.profileId !== undefined, { message: 'an agent needs a profileId', path: ['profileId'] });
export type Person = z.output<typeof personSchema>;

export const teamSchema = z.strictObject({
  teamId: id(),
  name: schemas.text(128, { min: 1 }),
  /** People with the supervisor role who watch this team. */
  supervisorIds: uniqueIds(100).default([]),
});
export type Team = z.output<typeof teamSchema>;

/** 'HH:MM', 00:00 to 24:00 (24:00 only as a closing time: the end of the day). */
const clock = z.string().regex(/^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$/, "must be 'HH:MM' (00:00-24:00)");
/** A calendar date, checked to exist (no 2026-02-30). */
const date = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "must be 'YYYY-MM-DD'")
  .refine((value) => {
    const [y, m, d] = value.split('-').map(Number) as [number, number, number];
    const at = new Date(Date.UTC(y, m - 1, d));
    return at.getUTCFullYear() === y && at.getUTCMonth() === m - 1 && at.getUTCDate() === d;
  }, 'must be a real date');

/** Whether the runtime knows the IANA time zone (Intl refuses an unknown one). */
function isTimeZone(value: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

export const businessHoursSchema = z.strictObject({
  /** IANA time zone the times are in ("Europe/Berlin"); opening times follow its daylight saving. */
  timeZone: z.string().max(64).refine(isTimeZone, 'must be an IANA time zone'),
  /**
   * Opening spans by weekday (0 Sunday … 6 Saturday). A span whose close is before its open runs
   * overnight into the next day; `close` 24:00 is midnight.
   */
  weekly: z
    .array(
      z
        .strictObject({ day: z.number().int().min(0).max(6), open: clock, close: clock })
        .refine((span) => span.open !== '24:00', { message: 'a span cannot open at 24:00', path: ['open'] })
        .refine((span) => span.open !== span.close, { message: 'a span must not open and close at the same time', path: ['close'] }),
    )
    .max(28),
  /** Local dates it stays closed (holidays): the spans that open on those dates do not. */
  closedDates: z
    .array(date)
    .max(400)
    .refine((dates) => new Set(dates).size === dates.length, 'must not repeat a date')
    .optional(),
});
export type BusinessHours = z.output<typeof businessHoursSchema>;

export const queueSchema = z.strictObject({
  queueId: id(),
  name: schemas.text(128, { min: 1 }),
  /** Lower is served first (the engine's order across the queues of one profile priority). */
  priority: z.number().int().min(0).max(1_000).default(0),
  /** Skills a contact of the queue needs, each at least at this level. */
  requiredSkills: skills.default({}),
  /** The service-level target: answered within this many seconds. */
  serviceLevelSeconds: seconds(3_600).default(20),
  /** After this long waiting here a contact moves to the overflow queue. */
  overflow: z.strictObject({ queueId: id(), afterSeconds: seconds(86_400) }).optional(),
  /** Past this long waiting the end user is offered a callback. */
  maxWaitSeconds: seconds(86_400).optional(),
  /** When the queue takes contacts; always when absent. */
  businessHours: businessHoursSchema.optional(),
  /** The keys of the app-supplied context an agent of this queue is shown; the others are withheld. */
  contextFields: z
    .array(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, _, . or -'))
    .max(50)
    .refine((keys) => new Set(keys).size === keys.length, 'must not repeat a key')
    .optional(),
  /** How long an offer waits for the agent's answer before it goes to the next one. */
  offerTimeoutSeconds: z.number().int().min(5).max(300).default(15),
});
export type QueueDefinition = z.output<typeof queueSchema>;

export const profileSchema = z.strictObject({
  profileId: id(),
  name: schemas.text(128, { min: 1 }),
  /** The queues its agents serve: lower priority first; a delay holds a queue's contacts back until they waited that long. */
  queues: z
    .array(z.strictObject({ queueId: id(), priority: z.number().int().min(0).max(100), delaySeconds: z.number().int().min(0).max(3_600).optional() }))
    .min(1)
    .max(100)
    .refine((queues) => new Set(queues.map((q) => q.queueId)).size === queues.length, 'must not name a queue twice'),
  /** Contacts at once by kind (voice and video share calls). */
  capacity: z.strictObject({ call: z.number().int().min(0).max(5), chat: z.number().int().min(0).max(10) }).refine((capacity) => capacity.call + capacity.chat > 0, 'must allow at least one contact'),
});
export type ProfileDefinition = z.output<typeof profileSchema>;

/** Each kind's schema and the field that holds its id. */
export const kindSchemas = {
  people: { schema: personSchema, idField: 'personId' },
  teams: { schema: teamSchema, idField: 'teamId' },
  queues: { schema: queueSchema, idField: 'queueId' },
  profiles: { schema: profileSchema, idField: 'profileId' },
} as const;

export interface DirectoryRecords {
  people: Person;
  teams: Team;
  queues: QueueDefinition;
  profiles: ProfileDefinition;
}

/** A whole directory, as the seed file holds it and the admin API's snapshot answers it. */
export const directorySchema = z.strictObject({
  people: z.array(z.unknown()).max(5_000).default([]),
  teams: z.array(z.unknown()).max(500).default([]),
  queues: z.array(z.unknown()).max(500).default([]),
  profiles: z.array(z.unknown()).max(500).default([]),
});

/** The queue as the engine decides over it. */
export function toEngineQueue(queue: QueueDefinition): Queue {
  return {
    queueId: queue.queueId,
    priority: queue.priority,
    requiredSkills: queue.requiredSkills,
    serviceLevelSeconds: queue.serviceLevelSeconds,
    ...(queue.overflow ? { overflow: { ...queue.overflow } } : {}),
    ...(queue.maxWaitSeconds !== undefined ? { maxWaitSeconds: queue.maxWaitSeconds } : {}),
    offerTimeoutSeconds: queue.offerTimeoutSeconds,
  };
}

/** The routing profile as the engine decides over it. */
export function toEngineProfile(profile: ProfileDefinition): RoutingProfile {
  return {
    profileId: profile.profileId,
    queues: profile.queues.map((q) => ({ queueId: q.queueId, priority: q.priority, ...(q.delaySeconds ? { delaySeconds: q.delaySeconds } : {}) })),
    capacity: { ...profile.capacity },
  };
}

/** What the engine takes of a person (RoutingEngine.setAgent); undefined for one who is not an agent. */
export function toEngineAgent(person: Person): Pick<Agent, 'agentId' | 'profileId' | 'skills'> | undefined {
  if (!person.roles.includes('agent') || person.profileId === undefined) return undefined;
  return { agentId: person.personId, profileId: person.profileId, skills: { ...person.skills } };
}
