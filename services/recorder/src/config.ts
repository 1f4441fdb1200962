import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { FINISHED_RECORDING_KEPT_MS, env, grpcTlsShape, loadConfig, natsShape, opsDrainShape, readNatsSettings, readGrpcTls, readKeyringSettings, tenantKeysShape } from '@gateway/common';

const shape = {
  ...natsShape,
  LOG_LEVEL: env.logLevel(),
  RECORDER_NODE_ID: env.string(`rec-${os.hostname()}-${randomBytes(3).toString('hex')}`),
  RECORDER_GRPC_HOST: env.string('0.0.0.0'),
  RECORDER_GRPC_PORT: env.port(50061),
  /** host:port signaling dials; defaults to loopback with the gRPC port. */
  RECORDER_GRPC_ADVERTISED_ADDRESS: z.string().min(1).optional(),
  RECORDER_OPS_PORT: env.port(9102),
  /**
   * Private working folder of the jobs (plaintext media while a job runs), emptied at start-up.
   * It must not be persistent storage: memory (tmpfs, /dev/shm; an emptyDir of medium Memory in
   * Kubernetes).
   */
  RECORDER_WORK_DIR: env.string(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `gateway-recorder-${process.getuid?.() ?? 0}`)),
  /** Address the SFU sends tapped RTP to: this node's address inside the cluster. */
  RECORDER_RTP_IP: env.string('127.0.0.1'),
  /**
   * Admission by CPU cost, in cores: a job is taken only while the estimated cost of the running
   * jobs plus its own fits the budget; otherwise NO_CAPACITY and another node takes it. The
   * costs come from bench/recorder-cost.ts: a capture costs well under 1 % of a core per stream,
   * assembly a few CPU-seconds per recorded minute at the end, an MP4 transcode about two-thirds
   * of a core-minute per recorded minute.
   */
  RECORDER_CPU_BUDGET: z.coerce
    .number()
    .positive()
    .default(os.availableParallelism() * 0.8),
  RECORDER_JOB_CPU_COST: z.coerce.number().positive().default(0.1),
  RECORDER_MP4_JOB_CPU_COST: z.coerce.number().positive().default(0.7),
  /** Length of the encrypted segments a job stores while it runs: at most this much is lost if the node dies. */
  /**
   * SIGTERM with a grace above 0 drains: the node takes no new recording, and the running ones
   * go on until their calls end or this passes; then what still runs is finished and stored.
   * 0: SIGTERM finishes and stores every running recording at once.
   */
  RECORDER_DRAIN_GRACE_SECONDS: env.seconds(0),
  RECORDER_SEGMENT_SECONDS: env.positiveInt(10),
  /** How long a finished recording's record stays so that any node answers GetRecording for it; then it is deleted. */
  RECORDER_FINISHED_RECORD_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(86_400)
    .default(FINISHED_RECORDING_KEPT_MS / 1000),
  /** Files above this are stored as ordered parts (CRM upload limits; Zendesk's is 50 MB). */
  RECORDER_MAX_PART_BYTES: env.positiveInt(50 * 1000 * 1000),
  RECORDER_FFMPEG: env.string('ffmpeg'),
  RECORDER_FFPROBE: env.string('ffprobe'),
  ...grpcTlsShape,
  ...opsDrainShape,
  ...tenantKeysShape,
};

export type RecorderConfig = ReturnType<typeof readRecorderConfig>;

export function readRecorderConfig(source: Record<string, string | undefined> = process.env) {
  const c = loadConfig(shape, source);
  return {
    nats: readNatsSettings(c, 'recorder'),
    logLevel: c.LOG_LEVEL,
    nodeId: c.RECORDER_NODE_ID,
    grpcHost: c.RECORDER_GRPC_HOST,
    grpcPort: c.RECORDER_GRPC_PORT,
    grpcAdvertisedAddress: c.RECORDER_GRPC_ADVERTISED_ADDRESS,
    opsPort: c.RECORDER_OPS_PORT,
    workDir: c.RECORDER_WORK_DIR,
    drainGraceMs: c.RECORDER_DRAIN_GRACE_SECONDS * 1000,
    rtpIp: c.RECORDER_RTP_IP,
    cpuBudget: c.RECORDER_CPU_BUDGET,
    jobCpuCost: c.RECORDER_JOB_CPU_COST,
    mp4JobCpuCost: c.RECORDER_MP4_JOB_CPU_COST,
    segmentSeconds: c.RECORDER_SEGMENT_SECONDS,
    finishedRecordMs: c.RECORDER_FINISHED_RECORD_SECONDS * 1000,
    maxPartBytes: c.RECORDER_MAX_PART_BYTES,
    ffmpeg: c.RECORDER_FFMPEG,
    ffprobe: c.RECORDER_FFPROBE,
    grpcTls: readGrpcTls(c),
    drainTokenFile: c.OPS_DRAIN_TOKEN_FILE,
    keyring: readKeyringSettings(c),
  };
}
