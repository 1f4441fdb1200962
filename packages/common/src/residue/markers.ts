import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { residueMarkerSweeps } from '../jetstream/access.js';
import { readStream } from '../nats/streamRead.js';
import { parseJson } from './storeReader.js';

/**
 * Delete markers. Deleting or purging a KV key, or deleting an object, leaves one message in the
 * store's stream: the key or object name, no value (about 2.7 KiB per call over the stores a call
 * touches). A marker names a tenant and a room, an artifact or a hashed external id, so it is
 * swept like residue instead of waiting for its store's TTL, and in the stores that have none
 * (device keys, CRM contact ids: what an erasure deletes) it would otherwise stay for good.
 *
 * nats-server 2.9 has no marker TTL, so a marker goes by a purge of its own subject up to its
 * own sequence: a value written to the same key after the scan (a room placed again) stays.
 * Markers younger than `MARKER_GRACE_MS` stay, so every reader of the store sees the delete.
 */
export const MARKER_GRACE_MS = 15 * 60_000;

export interface DeleteMarker {
  /** The bucket or object store. */
  store: string;
  stream: string;
  subject: string;
  seq: number;
  ageMs: number;
}

export interface MarkerSummary {
  store: string;
  count: number;
  oldestAgeMs: number;
}

const objectMeta = z.object({ deleted: z.boolean().optional() });

/** Every delete marker of the stores markers are swept from (`residueMarkerSweeps`). */
export async function findDeleteMarkers(js: JetStreamClient, jsm: JetStreamManager, now = Date.now()): Promise<DeleteMarker[]> {
  const markers: DeleteMarker[] = [];
  const add = (store: string, stream: string, subject: string, seq: number, timestampNanos: number) =>
    markers.push({ store, stream, subject, seq, ageMs: Math.max(0, now - Math.floor(timestampNanos / 1e6)) });
  for (const bucket of residueMarkerSweeps.kv) {
    const stream = `KV_${bucket}`;
    for await (const message of readStream(js, jsm, stream, `$KV.${bucket}.>`, { lastPerSubject: true, headersOnly: true })) {
      const operation = message.headers?.get('KV-Operation');
      if (operation === 'DEL' || operation === 'PURGE') add(bucket, stream, message.subject, message.seq, message.info.timestampNanos);
    }
  }
  for (const store of residueMarkerSweeps.objects) {
    const stream = `OBJ_${store}`;
    // An object's meta record is small JSON; a deleted object's says so (its chunks are purged).
    for await (const message of readStream(js, jsm, stream, `$O.${store}.M.>`, { lastPerSubject: true })) {
      if (objectMeta.safeParse(parseJson(message.data)).data?.deleted) add(store, stream, message.subject, message.seq, message.info.timestampNanos);
    }
  }
  return markers;
}

/** Purges the markers at least `graceMs` old; returns how many messages went. */
export async function sweepDeleteMarkers(jsm: JetStreamManager, markers: readonly DeleteMarker[], graceMs = MARKER_GRACE_MS): Promise<number> {
  let purged = 0;
  for (const marker of markers) {
    if (marker.ageMs < graceMs) continue;
    // Up to and including the marker, on its subject only.
    const result = await jsm.streams.purge(marker.stream, { filter: marker.subject, seq: marker.seq + 1 });
    purged += result.purged;
  }
  return purged;
}

/** Markers per store, with the age of the oldest; the stores without any are left out. */
export function summarizeMarkers(markers: readonly DeleteMarker[]): MarkerSummary[] {
  const byStore = new Map<string, MarkerSummary>();
  for (const marker of markers) {
    const found = byStore.get(marker.store) ?? byStore.set(marker.store, { store: marker.store, count: 0, oldestAgeMs: 0 }).get(marker.store)!;
    found.count++;
    found.oldestAgeMs = Math.max(found.oldestAgeMs, marker.ageMs);
  }
  return [...byStore.values()].sort((a, b) => a.store.localeCompare(b.store));
}
