import { NODE_REGISTRY_TTL_MS } from '@gateway/common';

/**
 * One rule for the SFU and recorder registries, used by the nodes that write their records and
 * by everyone who reads them: a record not refreshed for this long belongs to a node that is
 * gone. It is the buckets' TTL too, so a reader never trusts a record the bucket still holds
 * only because its expiry has not run yet.
 */
export const NODE_STALE_MS = NODE_REGISTRY_TTL_MS;

/** Whether a registry record written at `updatedAtMs` is still that of a live node. */
export function isNodeFresh(updatedAtMs: number, now = Date.now()): boolean {
  return now - updatedAtMs < NODE_STALE_MS;
}

/**
 * Why a heartbeat interval is too long for the registry, or undefined: a node must write its
 * record at least twice within the bucket's TTL (when it has one) and within the stale limit,
 * so that one late beat does not make it look gone.
 */
export function heartbeatProblem(setting: string, heartbeatMs: number, bucket: string, bucketTtlMs: number): string | undefined {
  if (bucketTtlMs > 0 && heartbeatMs * 2 > bucketTtlMs) return `${setting} must be at most half the ${bucket} bucket's TTL (${bucketTtlMs / 1000} s)`;
  if (heartbeatMs * 2 > NODE_STALE_MS) return `${setting} must be at most half the time after which a node counts as gone (${NODE_STALE_MS / 1000} s)`;
  return undefined;
}
