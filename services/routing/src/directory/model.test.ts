import { describe, expect, it } from 'vitest';
import { personSchema, profileSchema, queueSchema, teamSchema, toEngineAgent, toEngineProfile, toEngineQueue } from './model.js';

describe('the directory model', () => {
  it('takes a person with roles, skills and a profile, and requires a profile of an agent', () => {
    const person = personSchema.parse({ personId: 'ann', name: 'Ann Lee', roles: ['supervisor', 'agent', 'agent'], skills: { billing: 7 }, profileId: 'front' });
    expect(person.roles).toEqual(['agent', 'supervisor']);
    expect(toEngineAgent(person)).toEqual({ agentId: 'ann', profileId: 'front', skills: { billing: 7 } });
    expect(personSchema.safeParse({ personId: 'ann', name: 'Ann', roles: ['agent'] }).error?.issues[0]?.path).toEqual(['profileId']);
    const admin = personSchema.parse({ personId: 'root', name: 'Ada', roles: ['admin'] });
    expect(admin.skills).toEqual({});
    expect(toEngineAgent(admin)).toBeUndefined();
  });

  it.each([
    ['no roles', { roles: [] }],
    ['an unknown role', { roles: ['owner'] }],
    ['a skill level of 0', { skills: { billing: 0 } }],
    ['a skill level of 11', { skills: { billing: 11 } }],
    ['a fractional level', { skills: { billing: 1.5 } }],
    ['an upper-case skill', { skills: { Billing: 1 } }],
    ['a reserved skill name', { skills: { constructor: 1 } }],
    ['too many skills', { skills: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`s${i}`, 1])) }],
    ['an id with a dot', { personId: 'a.b' }],
    ['an empty name', { name: '' }],
    ['a name with a control character', { name: 'a\u0000b' }],
    ['a long name', { name: 'x'.repeat(129) }],
    ['an unknown field', { email: 'a@b.c' }],
  ])('refuses a person with %s', (_case, change) => {
    expect(personSchema.safeParse({ personId: 'ann', name: 'Ann', roles: ['admin'], ...change }).success).toBe(false);
  });

  it('fills a queue with its defaults and converts it for the engine', () => {
    const queue = queueSchema.parse({ queueId: 'billing', name: 'Billing', requiredSkills: { billing: 1 }, overflow: { queueId: 'support', afterSeconds: 120 }, maxWaitSeconds: 600 });
    expect(queue).toMatchObject({ priority: 0, serviceLevelSeconds: 20, offerTimeoutSeconds: 15 });
    expect(toEngineQueue(queue)).toEqual({
      queueId: 'billing',
      priority: 0,
      requiredSkills: { billing: 1 },
      serviceLevelSeconds: 20,
      overflow: { queueId: 'support', afterSeconds: 120 },
      maxWaitSeconds: 600,
      offerTimeoutSeconds: 15,
    });
    expect(toEngineQueue(queueSchema.parse({ queueId: 'q', name: 'Q' }))).toEqual({ queueId: 'q', priority: 0, requiredSkills: {}, serviceLevelSeconds: 20, offerTimeoutSeconds: 15 });
  });

  it.each([
    ['an unknown time zone', { businessHours: { timeZone: 'Mars/Olympus', weekly: [] } }],
    ['an hour of 25', { businessHours: { timeZone: 'UTC', weekly: [{ day: 1, open: '25:00', close: '26:00' }] } }],
    ['a span opening at 24:00', { businessHours: { timeZone: 'UTC', weekly: [{ day: 1, open: '24:00', close: '01:00' }] } }],
    ['a span of no length', { businessHours: { timeZone: 'UTC', weekly: [{ day: 1, open: '09:00', close: '09:00' }] } }],
    ['a day of 7', { businessHours: { timeZone: 'UTC', weekly: [{ day: 7, open: '09:00', close: '17:00' }] } }],
    ['a date that does not exist', { businessHours: { timeZone: 'UTC', weekly: [], closedDates: ['2026-02-30'] } }],
    ['a repeated context field', { contextFields: ['order', 'order'] }],
    ['an offer timeout of 1 s', { offerTimeoutSeconds: 1 }],
    ['a service level of 0', { serviceLevelSeconds: 0 }],
    ['an overflow without its timeout', { overflow: { queueId: 'x' } }],
  ])('refuses a queue with %s', (_case, change) => {
    expect(queueSchema.safeParse({ queueId: 'q', name: 'Q', ...change }).success).toBe(false);
  });

  it('takes a profile and converts it for the engine; refuses one that takes nothing or names a queue twice', () => {
    const profile = profileSchema.parse({
      profileId: 'front',
      name: 'Front line',
      queues: [
        { queueId: 'billing', priority: 1 },
        { queueId: 'support', priority: 2, delaySeconds: 30 },
      ],
      capacity: { call: 1, chat: 3 },
    });
    expect(toEngineProfile(profile)).toEqual({
      profileId: 'front',
      queues: [
        { queueId: 'billing', priority: 1 },
        { queueId: 'support', priority: 2, delaySeconds: 30 },
      ],
      capacity: { call: 1, chat: 3 },
    });
    expect(profileSchema.safeParse({ ...profile, capacity: { call: 0, chat: 0 } }).success).toBe(false);
    expect(profileSchema.safeParse({ ...profile, capacity: { call: 6, chat: 0 } }).success).toBe(false);
    expect(
      profileSchema.safeParse({
        ...profile,
        queues: [
          { queueId: 'billing', priority: 1 },
          { queueId: 'billing', priority: 2 },
        ],
      }).success,
    ).toBe(false);
    expect(profileSchema.safeParse({ ...profile, queues: [] }).success).toBe(false);
  });

  it('takes a team of supervisors, each once', () => {
    expect(teamSchema.parse({ teamId: 't1', name: 'Team one' }).supervisorIds).toEqual([]);
    expect(teamSchema.safeParse({ teamId: 't1', name: 'Team one', supervisorIds: ['sue', 'sue'] }).success).toBe(false);
  });
});
