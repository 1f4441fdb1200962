import { NodeInfo, type NodeLoad } from '@gateway/proto/gateway/sfu/v1/sfu';
import { ErrorCode, GatewayError, bucketTtlMs, buckets, liveKeys, openBucket, type KV, type Logger, type NatsConnection } from '@gateway/common';

/**
 * Keeps this node's entry in the SFU registry (NATS KV) fresh. The bucket's TTL removes the
 * entry of a node that stops heartbeating; signaling also judges liveness from updatedAtMs.
 */
export class NodeRegistry {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly kv: KV,
    private readonly describe: () => { grpcAddress: string; load: NodeLoad; draining: boolean },
    private readonly nodeId: string,
    private readonly heartbeatMs: number,
    private readonly log: Logger,
  ) {}

  static async start(
    nc: NatsConnection,
    options: { nodeId: string; heartbeatMs: number },
    describe: () => { grpcAddress: string; load: NodeLoad; draining: boolean },
    log: Logger,
  ): Promise<NodeRegistry> {
    // The registry's TTL is provisioned (catalog.ts): a node must heartbeat well within it.
    const ttlMs = await bucketTtlMs(nc, buckets.sfuNodes);
    if (ttlMs > 0 && options.heartbeatMs * 2 > ttlMs) {
      throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  SFU_HEARTBEAT_SECONDS must be at most half the ${buckets.sfuNodes} bucket's TTL (${ttlMs / 1000} s)`);
    }
    const kv = await openBucket(nc, buckets.sfuNodes);
    const registry = new NodeRegistry(kv, describe, options.nodeId, options.heartbeatMs, log);
    await registry.heartbeat();
    registry.timer = setInterval(() => void registry.heartbeat(), options.heartbeatMs);
    return registry;
  }

  /** Publishes the current state now (e.g. right after draining starts). */
  async heartbeat(): Promise<void> {
    if (this.closed) return;
    const { grpcAddress, load, draining } = this.describe();
    const info = NodeInfo.create({
      nodeId: this.nodeId,
      grpcAddress,
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

  /** A live node's gRPC address, from its own heartbeat, or undefined. */
  async addressOf(nodeId: string): Promise<string | undefined> {
    const entry = await this.kv.get(nodeId);
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return NodeInfo.decode(entry.value).grpcAddress;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.kv.delete(this.nodeId).catch(() => undefined);
  }
}
