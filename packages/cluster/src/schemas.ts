import net from 'node:net';
import { z } from 'zod';
import { schemas } from '@gateway/common';

/**
 * The shapes of the registries' records as they are read back from NATS KV (and of the node
 * ids and addresses they hold, which gRPC requests name too): anyone who could write to the
 * bucket could otherwise point signaling, the recorder or an SFU at an address of their choice.
 */

/** SFU and recorder node ids: `sfu-<host name>-<hex>`; host names may have dots. */
export const nodeIdSchema = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/, 'must be 1-128 letters, digits, ., _ or -');

/** An IPv4 or IPv6 address, as mediasoup takes it (no names: nothing is resolved). */
export const ipSchema = z
  .string()
  .max(45)
  .refine((value) => net.isIP(value) !== 0, 'must be an IP address');

/** host:port of a gRPC server: an IP address ([v6] in brackets) or a DNS name, and a port. */
export const grpcAddressSchema = z
  .string()
  .max(262)
  .regex(/^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})$/, 'must be host:port')
  .refine((value) => {
    const port = Number(value.slice(value.lastIndexOf(':') + 1));
    return port >= 1 && port <= 65535;
  }, 'the port must be 1-65535');

const count = () => z.number().int().min(0).max(0xffffffff);

/** An SFU node's heartbeat (gateway.sfu.v1.NodeInfo, decoded). */
export const sfuNodeInfoSchema = z.object({
  nodeId: nodeIdSchema,
  grpcAddress: grpcAddressSchema,
  load: z
    .object({
      workers: count(),
      rooms: count(),
      transports: count(),
      producers: count(),
      consumers: count(),
      maxConsumers: count(),
      importedProducers: count(),
      pipes: count(),
    })
    .optional(),
  draining: z.boolean(),
  updatedAtMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  version: z.string().max(32),
  // Empty from nodes older than pipe addresses in the registry: no pipe goes to them.
  pipeIp: z.union([z.literal(''), ipSchema]),
});

/** A recorder node's heartbeat (JSON). */
export const recorderNodeInfoSchema = z.object({
  nodeId: nodeIdSchema,
  grpcAddress: grpcAddressSchema,
  // Where the SFU nodes may send this node's taps; the only address they send taps to.
  rtpIp: ipSchema,
  jobs: count(),
  cpuInUse: z.number().finite().min(0).max(1_000_000),
  cpuBudget: z.number().finite().positive().max(1_000_000),
  draining: z.boolean().default(false),
  updatedAtMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

/** The recording a room has (JSON). */
export const roomRecordingSchema = z.object({
  recordingId: schemas.id(),
  nodeId: nodeIdSchema,
  grpcAddress: grpcAddressSchema,
  state: z.enum(['started', 'paused', 'resumed']),
});

export const subjectTokenSchema = schemas.subjectToken();
