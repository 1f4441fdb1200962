import { NodeInfo, type NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import { isLiveEntry, ErrorCode, GatewayError, bucketTtlMs, buckets, liveKeys, openBucket, type KV, type Logger, type NatsConnection } from '@gateway/common';
import { decodeSfuNodeInfo } from './SfuDirectory.js';
import { heartbeatProblem } from './nodeLiveness.js';

/** What the registry says of another SFU node: where to call it, and where its pipes listen. */
export interface PeerAddress {
  grpcAddress: string;
  pipeIp: string;
}

/** What an SFU node publishes of itself at each heartbeat. */
export interface SfuNodeDescription {
  grpcAddress: string;
  pipeIp: string;
  load: NodeLoad;
  draining: boolean;
}

/**
 * An SFU node's own entry in the SFU registry (NATS KV), kept fresh by heartbeat; the registry
 * SfuDirectory reads. The bucket's TTL removes the entry of a node that stops heartbeating;
 * readers also judge liveness from updatedAtMs (nodeLiveness.ts, the same rule).
 */
export class SfuRegistry {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly kv: KV,
    private readonly describe: () => SfuNodeDescription,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  /** Registers the node now and every `heartbeatMs` (SFU_HEARTBEAT_SECONDS) until closed. */
  static async start(nc: NatsConnection, options: { nodeId: string; heartbeatMs: number }, describe: () => SfuNodeDescription, log: Logger): Promise<SfuRegistry> {
    // The registry's TTL is provisioned (catalog.ts): a node must heartbeat well within it.
    const problem = heartbeatProblem('SFU_HEARTBEAT_SECONDS', options.heartbeatMs, buckets.sfuNodes, await bucketTtlMs(nc, buckets.sfuNodes));
    if (problem) throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${problem}`);
    const kv = await openBucket(nc, buckets.sfuNodes);
    const registry = new SfuRegistry(kv, describe, options.nodeId, log);
    await registry.heartbeat();
    registry.timer = setInterval(() => void registry.heartbeat(), options.heartbeatMs);
    return registry;
  }

  /** Publishes the current state now (e.g. right after draining starts). */
  async heartbeat(): Promise<void> {
    if (this.closed) return;
    const { grpcAddress, pipeIp, load, draining } = this.describe();
    const info = NodeInfo.create({
      nodeId: this.nodeId,
      grpcAddress,
      pipeIp,
      load,
      draining,
      updatedAtMs: Date.now(),
      version: '1',
    });
    try {
      await this.kv.put(this.nodeId, NodeInfo.encode(info).finish());
    } catch (error) {
      this.log.warn({ err: error }, 'registry heartbeat failed');
    }
  }

  /**
   * Ids of the nodes in the registry, this one included. The bucket's TTL removes a node that
   * stops heartbeating, so presence is liveness, with no comparison of clocks across nodes.
   */
  async liveNodeIds(): Promise<Set<string>> {
    const live = new Set<string>();
    for (const key of await liveKeys(this.kv)) live.add(key);
    return live;
  }

  /** A live node's addresses, from its own heartbeat (checked), or undefined. */
  async peer(nodeId: string): Promise<PeerAddress | undefined> {
    const entry = await this.kv.get(nodeId);
    if (!isLiveEntry(entry)) return undefined;
    const info = decodeSfuNodeInfo(nodeId, entry.value, this.log);
    return info ? { grpcAddress: info.grpcAddress, pipeIp: info.pipeIp } : undefined;
  }

  /** Leaves the registry at once rather than when the entry expires. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.kv.delete(this.nodeId).catch(() => undefined);
  }
}
