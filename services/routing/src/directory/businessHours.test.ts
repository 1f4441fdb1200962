import { describe, expect, it } from 'vitest';
import { isOpen, nextOpening } from './businessHours.js';
import { businessHoursSchema, type BusinessHours } from './model.js';

const hours = (input: unknown): BusinessHours => businessHoursSchema.parse(input);
const at = (iso: string) => Date.parse(iso);
const weekdays = (open: string, close: string) => [1, 2, 3, 4, 5].map((day) => ({ day, open, close }));

describe('business hours', () => {
  const berlin = hours({ timeZone: 'Europe/Berlin', weekly: weekdays('09:00', '17:00') });

  it("opens at the zone's wall-clock times, winter and summer", () => {
    // Friday 27 March 2026 is winter time (UTC+1), Monday 30 March summer time (UTC+2).
    expect(isOpen(berlin, at('2026-03-27T07:59:00Z'))).toBe(false);
    expect(isOpen(berlin, at('2026-03-27T08:00:00Z'))).toBe(true);
    expect(isOpen(berlin, at('2026-03-27T15:59:00Z'))).toBe(true);
    expect(isOpen(berlin, at('2026-03-27T16:00:00Z'))).toBe(false);
    expect(isOpen(berlin, at('2026-03-30T06:59:00Z'))).toBe(false);
    expect(isOpen(berlin, at('2026-03-30T07:00:00Z'))).toBe(true);
    expect(isOpen(berlin, at('2026-03-30T15:00:00Z'))).toBe(false);
    // The weekend between.
    expect(isOpen(berlin, at('2026-03-28T10:00:00Z'))).toBe(false);
  });

  it('finds the next opening across a weekend and the clock change', () => {
    // Friday after closing: Monday 09:00, which is summer time by then.
    expect(nextOpening(berlin, at('2026-03-27T17:00:00Z'))).toBe(at('2026-03-30T07:00:00Z'));
    // Open now: now.
    expect(nextOpening(berlin, at('2026-03-27T09:00:00Z'))).toBe(at('2026-03-27T09:00:00Z'));
    // Before opening the same day.
    expect(nextOpening(berlin, at('2026-03-30T05:00:00Z'))).toBe(at('2026-03-30T07:00:00Z'));
  });

  it('skips closed dates', () => {
    const holiday = hours({ timeZone: 'Europe/Berlin', weekly: weekdays('09:00', '17:00'), closedDates: ['2026-03-30'] });
    expect(isOpen(holiday, at('2026-03-30T08:00:00Z'))).toBe(false);
    expect(nextOpening(holiday, at('2026-03-27T17:00:00Z'))).toBe(at('2026-03-31T07:00:00Z'));
  });

  it('counts the real hours of a day the clocks go forward, and opens a skipped time late', () => {
    // Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST. 01:00-04:00 is two real hours.
    const sunday = hours({ timeZone: 'Europe/Berlin', weekly: [{ day: 0, open: '01:00', close: '04:00' }] });
    expect(isOpen(sunday, at('2026-03-28T23:59:00Z'))).toBe(false);
    expect(isOpen(sunday, at('2026-03-29T00:00:00Z'))).toBe(true);
    expect(isOpen(sunday, at('2026-03-29T01:30:00Z'))).toBe(true);
    expect(isOpen(sunday, at('2026-03-29T02:00:00Z'))).toBe(false);
    expect(nextOpening(sunday, at('2026-03-28T12:00:00Z'))).toBe(at('2026-03-29T00:00:00Z'));
    // 02:30 does not happen that night: it opens at 03:30 CEST.
    const skipped = hours({ timeZone: 'Europe/Berlin', weekly: [{ day: 0, open: '02:30', close: '05:00' }] });
    expect(nextOpening(skipped, at('2026-03-28T12:00:00Z'))).toBe(at('2026-03-29T01:30:00Z'));
  });

  it('opens a repeated time the first time it happens (clocks going back)', () => {
    // Sunday 1 November 2026 in New York: 01:00-01:59 happens twice (EDT, then EST).
    const early = hours({ timeZone: 'America/New_York', weekly: [{ day: 0, open: '01:30', close: '08:00' }] });
    expect(nextOpening(early, at('2026-10-31T12:00:00Z'))).toBe(at('2026-11-01T05:30:00Z'));
    expect(isOpen(early, at('2026-11-01T05:29:00Z'))).toBe(false);
    // 08:00 EST is 13:00 UTC: the night was an hour longer.
    expect(isOpen(early, at('2026-11-01T12:59:00Z'))).toBe(true);
    expect(isOpen(early, at('2026-11-01T13:00:00Z'))).toBe(false);
  });

  it('runs an overnight span into the next day, closed with the date it opens on', () => {
    const nights = hours({ timeZone: 'UTC', weekly: [{ day: 5, open: '22:00', close: '06:00' }] });
    // Friday 27 March 2026, 23:00; Saturday 05:59; not Saturday 06:00, nor Friday 21:59.
    expect(isOpen(nights, at('2026-03-27T23:00:00Z'))).toBe(true);
    expect(isOpen(nights, at('2026-03-28T05:59:00Z'))).toBe(true);
    expect(isOpen(nights, at('2026-03-28T06:00:00Z'))).toBe(false);
    expect(isOpen(nights, at('2026-03-27T21:59:00Z'))).toBe(false);
    expect(nextOpening(nights, at('2026-03-28T06:00:00Z'))).toBe(at('2026-04-03T22:00:00Z'));
    const holiday = hours({ timeZone: 'UTC', weekly: [{ day: 5, open: '22:00', close: '06:00' }], closedDates: ['2026-03-27'] });
    expect(isOpen(holiday, at('2026-03-27T23:00:00Z'))).toBe(false);
    expect(isOpen(holiday, at('2026-03-28T05:00:00Z'))).toBe(false);
    // A span to midnight.
    const evening = hours({ timeZone: 'UTC', weekly: [{ day: 5, open: '18:00', close: '24:00' }] });
    expect(isOpen(evening, at('2026-03-27T23:59:00Z'))).toBe(true);
    expect(isOpen(evening, at('2026-03-28T00:00:00Z'))).toBe(false);
  });

  it('never opens without spans, and looks past a year of closed dates', () => {
    expect(nextOpening(hours({ timeZone: 'UTC', weekly: [] }), at('2026-03-27T00:00:00Z'))).toBeUndefined();
    const dates = Array.from({ length: 400 }, (_, i) => new Date(at('2026-03-27T00:00:00Z') + i * 86_400_000).toISOString().slice(0, 10));
    const shut = hours({ timeZone: 'UTC', weekly: [{ day: 5, open: '09:00', close: '10:00' }], closedDates: dates });
    // The 400 closed dates cover 58 Fridays; the 59th opens.
    expect(nextOpening(shut, at('2026-03-27T12:00:00Z'))).toBe(at('2026-03-27T09:00:00Z') + 406 * 86_400_000);
  });
});
