import { NodeInfo, SfuClient } from '@gateway/proto/gateway/sfu/v1/sfu';
import {
  isLiveEntry,
  ErrorCode,
  GatewayError,
  buckets,
  decodeChecked,
  grpcClientCredentials,
  kvKeys,
  openBucket,
  type GrpcTls,
  type KV,
  type Logger,
  type NatsConnection,
  liveEntries,
} from '@gateway/common';
import { sfuNodeInfoSchema } from './schemas.js';
import { isNodeFresh } from './nodeLiveness.js';
import { sfuLoadScore } from './loadScore.js';

/** How long a read of the SFU registry serves the joins after it (the nodes write theirs every few seconds). */
const REGISTRY_READ_REUSE_MS = 1_000;

export interface PlacedRoom {
  nodeId: string;
  client: SfuClient;
  node: NodeInfo;
}

/**
 * Knows the live SFU nodes (from the registry in NATS KV, written by SfuRegistry), where each room is placed, and holds
 * one gRPC client per node.
 */
export class SfuDirectory {
  private readonly clients = new Map<string, { address: string; client: SfuClient }>();
  private readonly registryReads = new Map<string, { atMs: number; value: Promise<unknown> }>();

  private constructor(
    private readonly nodesKv: KV,
    private readonly placementKv: KV,
    private readonly log: Logger,
    private readonly tls: GrpcTls | undefined,
  ) {}

  static async open(nc: NatsConnection, tls: GrpcTls | undefined, log: Logger): Promise<SfuDirectory> {
    const nodesKv = await openBucket(nc, buckets.sfuNodes);
    const placementKv = await openBucket(nc, buckets.roomPlacement);
    return new SfuDirectory(nodesKv, placementKv, log, tls);
  }

  /** A live node (fresh in the registry), as read at most REGISTRY_READ_REUSE_MS ago. */
  async node(nodeId: string): Promise<NodeInfo | undefined> {
    return this.reused(`node:${nodeId}`, async () => {
      const entry = await this.nodesKv.get(nodeId);
      return isLiveEntry(entry) ? this.freshNode(nodeId, entry.value) : undefined;
    });
  }

  /**
   * Every live node, read afresh: a room is placed from it, and a placement on a node that began
   * draining a moment ago would stay (its joins would be refused).
   */
  async liveNodes(): Promise<NodeInfo[]> {
    const nodes = (await liveEntries(this.nodesKv)).map((entry) => this.freshNode(entry.key, entry.value));
    return nodes.filter((n): n is NodeInfo => n !== undefined);
  }

  /** The next reads of the registry go to NATS (a node refused as draining what its last read said it would take). */
  forgetRegistryReads(): void {
    this.registryReads.clear();
  }

  /**
   * A registry read shared by the joins of the next moments: the nodes rewrite their records
   * only every few seconds, and every join reads them (a failed read is not kept).
   */
  private reused<T>(key: string, read: () => Promise<T>): Promise<T> {
    const now = Date.now();
    const kept = this.registryReads.get(key);
    if (kept && now - kept.atMs < REGISTRY_READ_REUSE_MS) return kept.value as Promise<T>;
    const value = read();
    this.registryReads.set(key, { atMs: now, value });
    value.catch(() => this.registryReads.get(key)?.value === value && this.registryReads.delete(key));
    return value;
  }

  /** A registry record that decodes, is checked and is fresh; undefined otherwise. */
  private freshNode(nodeId: string, value: Uint8Array): NodeInfo | undefined {
    const info = decodeSfuNodeInfo(nodeId, value, this.log);
    return info && isNodeFresh(info.updatedAtMs) ? info : undefined;
  }

  /**
   * Returns the node serving the room, placing it on the least-loaded live node when it has no
   * placement or its node is gone. Concurrent placements by several replicas agree through
   * the KV's compare-and-set.
   */
  async place(tenant: string, room: string): Promise<PlacedRoom> {
    const key = kvKeys.room(tenant, room);
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await this.placementKv.get(key);
      const placedOn = isLiveEntry(entry) ? entry.string() : undefined;
      if (placedOn) {
        const node = await this.node(placedOn);
        if (node) return { nodeId: node.nodeId, client: this.clientForNode(node), node };
      }
      const candidates = (await this.liveNodes()).filter((n) => !n.draining);
      if (candidates.length === 0) throw new GatewayError(ErrorCode.ROOM_UNAVAILABLE, 'no media node is available');
      const best = candidates.reduce((a, b) => (sfuLoadScore(b.load) < sfuLoadScore(a.load) ? b : a));
      try {
        if (entry) await this.placementKv.update(key, best.nodeId, entry.revision);
        else await this.placementKv.create(key, best.nodeId);
        this.log.info({ room: key, nodeId: best.nodeId }, 'room placed');
        return { nodeId: best.nodeId, client: this.clientForNode(best), node: best };
      } catch {
        // Another replica placed it first: read again.
      }
    }
    throw new GatewayError(ErrorCode.ROOM_UNAVAILABLE, 'could not agree on a media node for the room');
  }

  /**
   * The node for a new participant of a room who will consume `consumers` streams: the room's
   * home node (placed first when the room has none) while it has capacity and is not draining;
   * otherwise a node the room already spans, then the least-loaded other node with capacity.
   * Media between the nodes flows through pipes. With no capacity anywhere, the home node
   * takes the participant over its limit rather than turning the call away. The nodes the room
   * spans are asked for (`roomNodes`) only when the home node cannot take the participant.
   */
  async placeParticipant(tenant: string, room: string, need: { consumers: number; roomNodes: () => Promise<Iterable<string>> }): Promise<PlacedRoom> {
    const home = await this.place(tenant, room);
    const fits = (node: NodeInfo) => !node.draining && (!node.load?.maxConsumers || (node.load.consumers ?? 0) + need.consumers <= node.load.maxConsumers);
    if (fits(home.node)) return home;
    const spanned = new Set(await need.roomNodes());
    const others = (await this.liveNodes()).filter((n) => n.nodeId !== home.nodeId && fits(n));
    if (others.length === 0) {
      this.log.warn({ room: kvKeys.room(tenant, room), nodeId: home.nodeId }, "no media node has capacity; the room's node takes the participant");
      return home;
    }
    const rank = (n: NodeInfo) => (spanned.has(n.nodeId) ? 0 : 1_000_000) + sfuLoadScore(n.load);
    const best = others.reduce((a, b) => (rank(b) < rank(a) ? b : a));
    this.log.info({ room: kvKeys.room(tenant, room), home: home.nodeId, nodeId: best.nodeId }, 'participant placed on another node of the room');
    return { nodeId: best.nodeId, client: this.clientForNode(best), node: best };
  }

  async placementOf(tenant: string, room: string): Promise<string | undefined> {
    const entry = await this.placementKv.get(kvKeys.room(tenant, room));
    return isLiveEntry(entry) ? entry.string() : undefined;
  }

  /** Forgets a placement on a node, unless the room was placed elsewhere meanwhile. */
  async forgetPlacement(tenant: string, room: string, nodeId: string): Promise<void> {
    const key = kvKeys.room(tenant, room);
    const entry = await this.placementKv.get(key);
    if (entry && entry.operation === 'PUT' && entry.string() === nodeId) {
      await this.placementKv.delete(key, { previousSeq: entry.revision }).catch(() => undefined);
    }
  }

  /** The room ended: its placement goes (unless it changed meanwhile). */
  async forgetRoom(tenant: string, room: string): Promise<void> {
    const key = kvKeys.room(tenant, room);
    const entry = await this.placementKv.get(key);
    if (isLiveEntry(entry)) await this.placementKv.purge(key, { previousSeq: entry.revision });
  }

  /**
   * A participant joined a room on `nodeId`: the room keeps a placement even if its previous
   * session ended (and its placement went) while the participant was joining.
   */
  async keepPlacement(tenant: string, room: string, nodeId: string): Promise<void> {
    // A create refused because the placement exists is the usual case (the placement was just
    // read or made): nothing to read first.
    await this.placementKv.create(kvKeys.room(tenant, room), nodeId).catch(() => undefined);
  }

  clientFor(nodeId: string): SfuClient | undefined {
    return this.clients.get(nodeId)?.client;
  }

  clientForNode(node: NodeInfo): SfuClient {
    const known = this.clients.get(node.nodeId);
    if (known && known.address === node.grpcAddress) return known.client;
    known?.client.close();
    const { credentials, options } = grpcClientCredentials(this.tls, 'sfu');
    const client = new SfuClient(node.grpcAddress, credentials, options);
    this.clients.set(node.nodeId, { address: node.grpcAddress, client });
    return client;
  }

  close(): void {
    for (const { client } of this.clients.values()) client.close();
    this.clients.clear();
  }
}

/**
 * An SFU registry record as read back from KV, checked: a record that does not decode, breaks
 * the schema or sits under another node's key is ignored (and logged), never trusted.
 */
export function decodeSfuNodeInfo(key: string, bytes: Uint8Array, log: Logger): NodeInfo | undefined {
  try {
    const info = decodeChecked(NodeInfo, bytes, sfuNodeInfoSchema, 'SFU registry record');
    if (info.nodeId !== key) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'SFU registry record names another node');
    return info;
  } catch (error) {
    log.warn({ err: error, code: GatewayError.from(error).code }, 'ignoring an SFU registry record that fails its checks');
    return undefined;
  }
}
