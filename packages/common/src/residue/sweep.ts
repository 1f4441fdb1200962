import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, GatewayError } from '../errors.js';
import { artifactSpaces, residueSweeps, type ArtifactSpace } from '../jetstream/access.js';
import { readJobRecord } from '../schemas/recordingRecords.js';
import { buckets } from '../nats/subjects.js';
import { summarize, sweeps, type ResidueItem, type ResidueReport, type ResidueSummary } from './report.js';
import type { StoreReader } from './storeReader.js';

/**
 * Removes what a scan found, in the stores the residue identity may sweep (jetstream/access.ts).
 * Each item is looked at again just before (compare-and-set on the revision it had, or re-read),
 * so what was written meanwhile stays. Returns what was removed.
 */
export async function sweepResidue(nc: NatsConnection, jsm: JetStreamManager, reader: StoreReader, report: ResidueReport): Promise<ResidueSummary[]> {
  const removed: ResidueItem[] = [];
  const kvm = new Kvm(nc);
  const objm = new Objm(nc);
  const sweepable = {
    kv: new Set<string>(residueSweeps.kv),
    objects: new Set<string>(residueSweeps.objects),
    streams: new Set<string>(residueSweeps.streams.map((s) => s.name)),
  };
  const kvs = new Map<string, Awaited<ReturnType<Kvm['open']>>>();
  const openKv = async (bucket: string) => kvs.get(bucket) ?? kvs.set(bucket, await kvm.open(bucket)).get(bucket)!;
  const dataKeys = await openKv(buckets.dataKeys);
  const deleteObject = async (store: string, name: string) => {
    const space = (Object.keys(artifactSpaces) as ArtifactSpace[]).find((s) => artifactSpaces[s] === store)!;
    const [tenant, ...rest] = name.split('.');
    // The key first: without it the bytes are unreadable whatever happens next.
    await dataKeys.purge(`${tenant}.${space}.${rest.join('.')}`);
    const objects = await objm.open(store);
    const info = await objects.info(name);
    if (info && !info.deleted) await objects.delete(name);
  };
  // The nuids live objects name, read again once per store before its abandoned chunks go.
  const liveNuids = new Map<string, Set<string>>();
  const namedNow = async (store: string) => liveNuids.get(store) ?? liveNuids.set(store, (await reader.readObjects(store)).liveNuids).get(store)!;
  for (const item of report.items) {
    if (!sweeps(item.kind)) continue;
    try {
      if (item.kind === 'abandoned-chunks') {
        if (!sweepable.objects.has(item.store) || (await namedNow(item.store)).has(item.key)) continue;
        // A chunk stored since the scan: a writer is alive after all.
        const last = await reader.lastChunk(item.store, item.key);
        if (!last || last.seq !== item.revision) continue;
        // Up to the scanned chunk, on its subject only.
        await jsm.streams.purge(`OBJ_${item.store}`, { filter: `$O.${item.store}.C.${item.key}`, seq: last.seq + 1 });
      } else if (sweepable.kv.has(item.store)) {
        const bucket = await openKv(item.store);
        // Deleted unless rewritten since the scan (then it is live again).
        const entry = await bucket.get(item.key);
        if (entry?.operation !== 'PUT' || entry.revision !== item.revision) continue;
        if (item.store === buckets.recordings && item.kind === 'dead-recorder') {
          // The recording is lost: its segments go with its record.
          const record = readJobRecord(entry.value);
          for (const segment of record.segments) await deleteObject(buckets.recordingSegments, `${record.recording!.tenant}.${segment.objectId}`);
        }
        await bucket.purge(item.key, { previousSeq: entry.revision });
      } else if (sweepable.objects.has(item.store)) {
        await deleteObject(item.store, item.key);
      } else if (sweepable.streams.has(item.store)) {
        await jsm.streams.deleteMessage(item.store, Number(item.key), false).catch((error: unknown) => {
          // Already gone (delivered meanwhile): nothing to remove.
          if (!String((error as Error)?.message ?? error).includes('no message found')) throw error;
        });
      } else {
        continue;
      }
      removed.push(item);
    } catch (error) {
      throw new GatewayError(ErrorCode.UNAVAILABLE, `sweeping ${item.store} failed`, { cause: error });
    }
  }
  return summarize(removed);
}
