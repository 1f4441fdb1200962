import type { BusinessHours } from './model.js';

/**
 * A queue's business hours (model.ts) against the clock: opening spans are wall-clock times in
 * the queue's time zone, so they follow its daylight saving (Intl gives the zone's rules). A span
 * whose close is before its open runs overnight into the next day; a closed date closes the
 * spans that open on it. A span opening at a wall time a clock change skips (02:30 on the night
 * clocks go forward) opens as late as the skipped time (03:30), as Temporal's "compatible" does;
 * one at a time that happens twice opens the first time.
 */

interface CivilDate {
  y: number;
  m: number;
  d: number;
}

const DAY_MS = 86_400_000;
const formats = new Map<string, Intl.DateTimeFormat>();

function formatOf(timeZone: string): Intl.DateTimeFormat {
  let format = formats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formats.set(timeZone, format);
  }
  return format;
}

/** The wall-clock date and time at an instant in a zone. */
function wallClock(ms: number, timeZone: string): CivilDate & { hour: number; minute: number; second: number } {
  const parts: Record<string, number> = {};
  for (const part of formatOf(timeZone).formatToParts(ms)) if (part.type !== 'literal') parts[part.type] = Number(part.value);
  return { y: parts.year!, m: parts.month!, d: parts.day!, hour: parts.hour! % 24, minute: parts.minute!, second: parts.second! };
}

/** How far the zone's wall clock is ahead of UTC at an instant, in ms. */
function offsetAt(ms: number, timeZone: string): number {
  const wall = wallClock(ms, timeZone);
  return Date.UTC(wall.y, wall.m - 1, wall.d, wall.hour, wall.minute, wall.second) - Math.floor(ms / 1000) * 1000;
}

/** The instant a wall-clock time happens in a zone (a skipped time: as late as the skip; a repeated one: the first). */
function instantOf(date: CivilDate, minutes: number, timeZone: string): number {
  const wall = Date.UTC(date.y, date.m - 1, date.d, 0, minutes);
  const before = offsetAt(wall - DAY_MS, timeZone);
  const after = offsetAt(wall + DAY_MS, timeZone);
  if (before === after) return wall - before;
  const candidates = [wall - before, wall - after].filter((at) => at + offsetAt(at, timeZone) === wall);
  return candidates.length > 0 ? Math.min(...candidates) : wall - before;
}

const addDays = (date: CivilDate, days: number): CivilDate => {
  const at = new Date(Date.UTC(date.y, date.m - 1, date.d + days));
  return { y: at.getUTCFullYear(), m: at.getUTCMonth() + 1, d: at.getUTCDate() };
};
const weekdayOf = (date: CivilDate) => new Date(Date.UTC(date.y, date.m - 1, date.d)).getUTCDay();
const isoOf = (date: CivilDate) => `${String(date.y).padStart(4, '0')}-${String(date.m).padStart(2, '0')}-${String(date.d).padStart(2, '0')}`;
const minutesOf = (clock: string) => Number(clock.slice(0, 2)) * 60 + Number(clock.slice(3, 5));

/** Whether the queue takes contacts at `nowMs`. */
export function isOpen(hours: BusinessHours, nowMs: number): boolean {
  const wall = wallClock(nowMs, hours.timeZone);
  const minutes = wall.hour * 60 + wall.minute;
  const today = weekdayOf(wall);
  const closed = new Set(hours.closedDates ?? []);
  const openToday = !closed.has(isoOf(wall));
  const openYesterday = !closed.has(isoOf(addDays(wall, -1)));
  return hours.weekly.some((span) => {
    const open = minutesOf(span.open);
    const close = minutesOf(span.close);
    if (open < close) return span.day === today && openToday && minutes >= open && minutes < close;
    // Overnight: from `open` on its day to `close` on the next.
    return (span.day === today && openToday && minutes >= open) || (span.day === (today + 6) % 7 && openYesterday && minutes < close);
  });
}

/**
 * The first instant at or after `nowMs` the queue is open (`nowMs` itself when open now);
 * undefined when it never opens (no spans, or none that happens). Closed dates are at most 400, so
 * looking 407 days ahead finds any opening there is.
 */
export function nextOpening(hours: BusinessHours, nowMs: number): number | undefined {
  if (isOpen(hours, nowMs)) return nowMs;
  if (hours.weekly.length === 0) return undefined;
  const start = wallClock(nowMs, hours.timeZone);
  const closed = new Set(hours.closedDates ?? []);
  for (let days = 0; days <= 407; days++) {
    const date = addDays(start, days);
    if (closed.has(isoOf(date))) continue;
    const weekday = weekdayOf(date);
    const openings = hours.weekly
      .filter((span) => span.day === weekday)
      .map((span) => instantOf(date, minutesOf(span.open), hours.timeZone))
      .filter((at) => at > nowMs && isOpen(hours, at));
    if (openings.length > 0) return Math.min(...openings);
  }
  return undefined;
}
