import { Objm } from '@nats-io/obj';
import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { isLiveEntry, buckets, streams } from '@gateway/common';

export interface Residue {
  /** Artifacts whose bytes are still in the Object Store. */
  objects: string[];
  /** Artifacts whose wrapped data keys are still in KV. */
  dataKeys: string[];
  /** Undelivered events (recording.ready, transcript.ready, attachment.ready, session.ended) still in their streams. */
  pendingEvents: number;
}

/**
 * What the platform still holds of a set of artifacts: their bytes, their data keys, and any
 * event that could still name them. After delivery all three must be empty.
 */
export async function scanResidue(nc: NatsConnection, tenant: string, artifactIds: Iterable<string>): Promise<Residue> {
  const wanted = new Set([...artifactIds].map((id) => `${tenant}.${id}`));
  const objects: string[] = [];
  for (const bucket of [buckets.artifacts, buckets.conversationArtifacts, buckets.recordingSegments]) {
    const store = await new Objm(nc).open(bucket);
    for (const info of await store.list()) if (!info.deleted && wanted.has(info.name)) objects.push(info.name);
  }
  const dataKeys: string[] = [];
  const keys = await new Kvm(nc).open(buckets.dataKeys);
  // Data keys are `<tenant>.<space>.<artifact>`.
  for await (const key of await keys.keys(`${tenant}.*.*`)) {
    const name = `${tenant}.${key.split('.').slice(2).join('.')}`;
    if (!wanted.has(name)) continue;
    const entry = await keys.get(key);
    if (isLiveEntry(entry)) dataKeys.push(name);
  }
  const jsm = await jetstreamManager(nc);
  let pendingEvents = 0;
  for (const stream of [streams.recordings.name, streams.transcripts.name, streams.sessions.name]) {
    const info = await jsm.streams.info(stream).catch(() => undefined);
    pendingEvents += info?.state.messages ?? 0;
  }
  return { objects, dataKeys, pendingEvents };
}
