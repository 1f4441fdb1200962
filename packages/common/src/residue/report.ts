import type { DeleteMarker, MarkerSummary } from './markers.js';
/**
 * What a residue scan reports and a sweep removes: the entries NATS still holds after their
 * purpose ended (docs/data-lifecycle.md), by store and kind; keys and names only, never a value.
 */

export type ResidueKind =
  /** Older than its store's lifetime. */
  | 'outlived'
  /** An event whose artifacts are all gone: its communication was delivered (or erased), the event still names the contact. */
  | 'delivered'
  /** Encrypted bytes without their data key: unreadable, nothing can deliver them. */
  | 'artifact-without-key'
  /** A data key without its artifact. */
  | 'key-without-artifact'
  /** An artifact that no pending event, Smart Action or running recording names. */
  | 'artifact-without-event'
  /** A record of a room that has ended (no session, no participant). */
  | 'room-ended'
  /**
   * A room session whose room has no participant left, or whose finish stopped half-way:
   * signaling's sweep should have finished it. Reported, never swept: sweeping it would drop its
   * session.ended undelivered; once it outlived a day it is swept as `outlived`.
   */
  | 'unfinished'
  /** A recording record (and its segments) whose recorder stopped refreshing it and that no other recorder recovered. */
  | 'dead-recorder'
  /** A finished recording's record: recording.ready is out, nothing needs it. */
  | 'finished'
  /**
   * An object store's chunks (`$O.<store>.C.<nuid>`) that no live object names, none stored for
   * longer than a write may take: what a refused or interrupted write left. Keyed by nuid.
   */
  | 'abandoned-chunks'
  /** Anything else that refers to something gone (a segment of no recording, a room's recording that ended, chat without its key). */
  | 'orphan';

export interface ResidueItem {
  store: string;
  kind: ResidueKind;
  /** The KV key, object name or stream sequence. */
  key: string;
  ageMs: number;
  /**
   * A KV entry's revision when scanned (the sweep removes that revision only), or the stream
   * sequence of abandoned chunks' last one (the sweep leaves them when another came since).
   */
  revision?: number;
}

export interface ResidueSummary {
  store: string;
  kind: ResidueKind;
  count: number;
  oldestAgeMs: number;
}

export interface ResidueReport {
  scannedAtMs: number;
  durationMs: number;
  /** Entries read (KV keys, objects, messages). */
  entries: number;
  summary: ResidueSummary[];
  /** Every item found; keys and names only (tenants, rooms, ids), never a value. */
  items: ResidueItem[];
  /**
   * Delete markers by store (markers.ts). Not residue items: every delete leaves one, swept once
   * 15 minutes old, so under traffic there are always some, and the residue alert ignores them.
   */
  markers: MarkerSummary[];
  deleteMarkers: DeleteMarker[];
}

/** Whether the sweep removes a kind (the others are for a service to finish). */
export function sweeps(kind: ResidueKind): boolean {
  return kind !== 'unfinished';
}

/** Counts and oldest ages by store and kind, in a stable order. */
export function summarize(items: ResidueItem[]): ResidueSummary[] {
  const byKey = new Map<string, ResidueSummary>();
  for (const item of items) {
    const id = `${item.store}/${item.kind}`;
    const found = byKey.get(id) ?? byKey.set(id, { store: item.store, kind: item.kind, count: 0, oldestAgeMs: 0 }).get(id)!;
    found.count++;
    found.oldestAgeMs = Math.max(found.oldestAgeMs, item.ageMs);
  }
  return [...byKey.values()].sort((a, b) => a.store.localeCompare(b.store) || a.kind.localeCompare(b.kind));
}
