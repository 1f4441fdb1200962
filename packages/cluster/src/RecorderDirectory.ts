import { RecorderClient } from '@gateway/proto/gateway/recorder/v1/recorder';
import { ErrorCode, GatewayError, buckets, grpcClientCredentials, kvKeys, listJson, openBucket, type GrpcTls, type KV, type NatsConnection } from '@gateway/common';

/** A recorder node as it registers itself (expires without heartbeat). */
export interface RecorderNodeInfo {
  nodeId: string;
  grpcAddress: string;
  jobs: number;
  /** Estimated CPU of the running jobs and the node's budget, in cores. */
  cpuInUse: number;
  cpuBudget: number;
  updatedAtMs: number;
}

/** The recording a room has right now, and the node running it. */
export interface RoomRecording {
  recordingId: string;
  nodeId: string;
  grpcAddress: string;
  /** "started", "paused" or "resumed". */
  state: string;
}

/** Recorder nodes stop counting as alive after this long without a heartbeat. */
export const RECORDER_NODE_TTL_MS = 10_000;

/**
 * Finds recorder nodes (from their registry in NATS KV) and the recording of a room, and holds
 * one gRPC client per node. Recorders write both; signaling reads them.
 */
export class RecorderDirectory {
  private readonly clients = new Map<string, RecorderClient>();

  private constructor(
    readonly nodes: KV,
    readonly roomRecordings: KV,
    private readonly tls: GrpcTls | undefined,
  ) {}

  static async open(nc: NatsConnection, tls: GrpcTls | undefined): Promise<RecorderDirectory> {
    return new RecorderDirectory(
      await openBucket(nc, buckets.recorderNodes),
      await openBucket(nc, buckets.roomRecordings),
      tls,
    );
  }

  /**
   * Live nodes, least loaded first. The load is as of each node's last heartbeat, so a node
   * that looks full is still listed (last): the node itself decides, and refuses with NO_CAPACITY.
   */
  async candidates(): Promise<RecorderNodeInfo[]> {
    const now = Date.now();
    return (await listJson<RecorderNodeInfo>(this.nodes, '>'))
      .map((e) => e.value)
      .filter((n) => now - n.updatedAtMs < RECORDER_NODE_TTL_MS)
      .sort((a, b) => a.cpuInUse / a.cpuBudget - b.cpuInUse / b.cpuBudget);
  }

  async recordingOf(tenant: string, room: string): Promise<RoomRecording | undefined> {
    const entry = await this.roomRecordings.get(kvKeys.room(tenant, room));
    return entry && entry.operation === 'PUT' && entry.length > 0 ? entry.json<RoomRecording>() : undefined;
  }

  clientFor(grpcAddress: string): RecorderClient {
    let client = this.clients.get(grpcAddress);
    if (!client) {
      const { credentials, options } = grpcClientCredentials(this.tls);
      client = new RecorderClient(grpcAddress, credentials, options);
      this.clients.set(grpcAddress, client);
    }
    return client;
  }

  /** The client of the node recording the room; NOT_FOUND when the room is not being recorded. */
  async clientForRoom(tenant: string, room: string): Promise<{ recording: RoomRecording; client: RecorderClient }> {
    const recording = await this.recordingOf(tenant, room);
    if (!recording) throw new GatewayError(ErrorCode.NOT_FOUND, 'the room is not being recorded');
    return { recording, client: this.clientFor(recording.grpcAddress) };
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
