import { RecorderClient } from '@gateway/proto/gateway/recorder/v1/recorder';
import {
  isLiveEntry,
  ErrorCode,
  GatewayError,
  buckets,
  createLogger,
  grpcClientCredentials,
  kvKeys,
  listEntries,
  openBucket,
  parseWith,
  type GrpcTls,
  type KV,
  type Logger,
  type NatsConnection,
} from '@gateway/common';
import { recorderNodeInfoSchema, roomRecordingSchema } from './schemas.js';
import { NODE_STALE_MS, isNodeFresh } from './nodeLiveness.js';

/** A recorder node as it registers itself (expires without heartbeat). */
export interface RecorderNodeInfo {
  nodeId: string;
  grpcAddress: string;
  /** The address the SFU nodes send this node's taps to (RECORDER_RTP_IP). */
  rtpIp: string;
  jobs: number;
  /** Estimated CPU of the running jobs and the node's budget, in cores. */
  cpuInUse: number;
  cpuBudget: number;
  /** Draining: no new recordings are placed on it; its running ones go on (and may still tap). */
  draining: boolean;
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

/** Recorder nodes stop counting as alive after this long without a heartbeat (the rule of both registries). */
export const RECORDER_NODE_TTL_MS = NODE_STALE_MS;

/** Opens the recorder registry bucket (the same options wherever it is opened first). */
export function openRecorderNodes(nc: NatsConnection): Promise<KV> {
  return openBucket(nc, buckets.recorderNodes);
}

/**
 * The live recorder nodes of the registry, draining ones included, each record checked: one
 * that is not JSON, breaks the schema or sits under another node's key is ignored (and logged),
 * never trusted.
 */
export async function liveRecorderNodes(nodes: KV, log: Logger): Promise<RecorderNodeInfo[]> {
  const now = Date.now();
  const decoder = new TextDecoder();
  const live: RecorderNodeInfo[] = [];
  for (const entry of await listEntries(nodes, '>')) {
    try {
      let json: unknown;
      try {
        json = JSON.parse(decoder.decode(entry.value));
      } catch (error) {
        throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'recorder registry record is not JSON', { cause: error });
      }
      const info = parseWith(recorderNodeInfoSchema, json, 'recorder registry record', ErrorCode.MALFORMED_MESSAGE);
      if (info.nodeId !== entry.key) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'recorder registry record names another node');
      if (isNodeFresh(info.updatedAtMs, now)) live.push(info);
    } catch (error) {
      log.warn({ err: error, code: GatewayError.from(error).code }, 'ignoring a recorder registry record that fails its checks');
    }
  }
  return live;
}

/**
 * Finds recorder nodes (from their registry in NATS KV) and the recording of a room, and holds
 * one gRPC client per node. Recorders write both, through the writer methods below (a node its
 * own registry record, the node running a room's recording that room's record); signaling reads
 * them.
 */
export class RecorderDirectory {
  private readonly clients = new Map<string, RecorderClient>();

  private constructor(
    private readonly nodes: KV,
    private readonly roomRecordings: KV,
    private readonly tls: GrpcTls | undefined,
    private readonly log: Logger,
  ) {}

  static async open(nc: NatsConnection, tls: GrpcTls | undefined, log: Logger = createLogger('cluster')): Promise<RecorderDirectory> {
    return new RecorderDirectory(await openRecorderNodes(nc), await openBucket(nc, buckets.roomRecordings), tls, log);
  }

  /**
   * Live nodes that take recordings (not draining), least loaded first. The load is as of each
   * node's last heartbeat, so a node that looks full is still listed (last): the node itself
   * decides, and refuses with NO_CAPACITY.
   */
  async candidates(): Promise<RecorderNodeInfo[]> {
    return (await liveRecorderNodes(this.nodes, this.log)).filter((n) => !n.draining).sort((a, b) => a.cpuInUse / a.cpuBudget - b.cpuInUse / b.cpuBudget);
  }

  /** The room's recording, or undefined (also when its record fails its checks: it is logged and ignored). */
  async recordingOf(tenant: string, room: string): Promise<RoomRecording | undefined> {
    const entry = await this.roomRecordings.get(kvKeys.room(tenant, room));
    if (!isLiveEntry(entry)) return undefined;
    try {
      let json: unknown;
      try {
        json = entry.json();
      } catch (error) {
        throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'room recording record is not JSON', { cause: error });
      }
      return parseWith(roomRecordingSchema, json, 'room recording record', ErrorCode.MALFORMED_MESSAGE);
    } catch (error) {
      this.log.warn({ err: error, code: GatewayError.from(error).code }, 'ignoring a room recording record that fails its checks');
      return undefined;
    }
  }

  /** Writer: a recorder node's heartbeat (its record expires when the heartbeats stop). */
  async register(info: RecorderNodeInfo): Promise<void> {
    await this.nodes.put(info.nodeId, JSON.stringify(info));
  }

  /** Writer: a stopping recorder node leaves the registry at once. */
  async deregister(nodeId: string): Promise<void> {
    await this.nodes.delete(nodeId);
  }

  /** Writer: the room's recording, as the node running it announces it. */
  async setRoomRecording(tenant: string, room: string, recording: RoomRecording): Promise<void> {
    await this.roomRecordings.put(kvKeys.room(tenant, room), JSON.stringify(recording));
  }

  /**
   * Writer: the recording `recordingId` of the room ended. Its record goes, unless the room has
   * another recording by now (compare-and-set: a newer one written meanwhile stays).
   */
  async clearRoomRecording(tenant: string, room: string, recordingId: string): Promise<void> {
    const key = kvKeys.room(tenant, room);
    const entry = await this.roomRecordings.get(key);
    if (!isLiveEntry(entry)) return;
    let current: unknown;
    try {
      current = entry.json<RoomRecording>().recordingId;
    } catch {
      return;
    }
    if (current === recordingId) await this.roomRecordings.delete(key, { previousSeq: entry.revision });
  }

  clientFor(grpcAddress: string): RecorderClient {
    let client = this.clients.get(grpcAddress);
    if (!client) {
      const { credentials, options } = grpcClientCredentials(this.tls, 'recorder');
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
