import os from 'node:os';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { z } from 'zod';
import { ErrorCode, GatewayError, env, grpcTlsShape, loadConfig, natsShape, opsDrainShape, readNatsSettings, readGrpcTls } from '@gateway/common';
import type { AnnouncedAddressSettings } from './announcedAddress/discover.js';
import type { StunServer } from './announcedAddress/stun.js';

const shape = {
  ...natsShape,
  LOG_LEVEL: env.logLevel(),
  SFU_NODE_ID: env.string(`sfu-${os.hostname()}-${randomBytes(3).toString('hex')}`),
  SFU_GRPC_HOST: env.string('0.0.0.0'),
  SFU_GRPC_PORT: env.port(50051),
  /** host:port signaling dials; defaults to loopback with the gRPC port. */
  SFU_GRPC_ADVERTISED_ADDRESS: z.string().min(1).optional(),
  /** Address of /healthz, /readyz, /metrics and /drain: the node's internal address on a host network. */
  SFU_OPS_HOST: env.string('0.0.0.0'),
  SFU_OPS_PORT: env.port(9101),
  SFU_WORKERS: env.positiveInt(Math.max(1, os.availableParallelism())),
  /** Worker i listens for media (UDP and TCP) on SFU_RTC_PORT_MIN + i. */
  SFU_RTC_PORT_MIN: env.port(40000),
  SFU_LISTEN_IP: env.string('0.0.0.0'),
  /**
   * Where the address put in ICE candidates comes from: `explicit` (SFU_ANNOUNCED_ADDRESS), the
   * cloud's instance metadata (`aws`, `gcp`, `azure`) or `stun` (SFU_STUN_SERVERS), found once at
   * start-up (docs/kubernetes.md, "Announced address per cloud").
   */
  SFU_ANNOUNCED_ADDRESS_SOURCE: z.enum(['explicit', 'aws', 'gcp', 'azure', 'stun']).default('explicit'),
  /** With the explicit source: the address put in ICE candidates (127.0.0.1 when unset). */
  SFU_ANNOUNCED_ADDRESS: z.string().min(1).optional(),
  /** With the stun source: the servers asked, `host:port` (an IPv6 address in brackets), comma-separated. */
  SFU_STUN_SERVERS: z.string().transform(parseStunServers).optional(),
  /** The instance metadata services, overridable for tests and for clouds that move them. */
  SFU_AWS_METADATA_URL: metadataUrl('http://169.254.169.254'),
  SFU_GCP_METADATA_URL: metadataUrl('http://169.254.169.254'),
  SFU_AZURE_METADATA_URL: metadataUrl('http://169.254.169.254'),
  /** Accepts a private, loopback or link-local address found by a source: for tests and networks without a public side. */
  SFU_ANNOUNCED_ADDRESS_ALLOW_PRIVATE: env.boolean(false),
  /** Address recording taps send plain RTP from (inside the cluster). */
  SFU_TAP_LISTEN_IP: env.string('127.0.0.1'),
  SFU_HEARTBEAT_SECONDS: env.seconds(2),
  SFU_DRAIN_GRACE_SECONDS: env.seconds(1800),
  SFU_ROOM_IDLE_SECONDS: env.seconds(30),
  SFU_TRANSPORT_ABANDON_SECONDS: env.seconds(90),
  /** ICE consent (RFC 7675): a transport without STUN requests for this long is disconnected; 0 disables it. */
  SFU_ICE_CONSENT_TIMEOUT_SECONDS: env.seconds(30),
  /**
   * Consumers this node takes before signaling places new participants of its rooms on other
   * nodes, with media piped between them. Default: 500 per worker.
   */
  SFU_MAX_CONSUMERS: z.coerce.number().int().positive().optional(),
  /** Address pipes between SFU nodes listen on (inside the cluster: the node's internal address). */
  SFU_PIPE_LISTEN_IP: env.string('127.0.0.1'),
  /** Address put in a pipe's endpoint when the listen address is not reachable as such. */
  SFU_PIPE_ANNOUNCED_ADDRESS: z.string().min(1).optional(),
  /** UDP ports pipes between SFU nodes use. */
  SFU_PIPE_PORT_MIN: env.port(42000),
  SFU_PIPE_PORT_MAX: env.port(42999),
  /**
   * What one participant may hold on this node (signaling enforces its own limits first). A
   * contact-center call has a send and a receive transport per participant (a reconnect may
   * overlap them briefly), up to four producers (camera, microphone, screen and its audio), and
   * a consumer per producer of the others.
   */
  SFU_MAX_TRANSPORTS_PER_PARTICIPANT: env.positiveInt(4),
  SFU_MAX_PRODUCERS_PER_PARTICIPANT: env.positiveInt(8),
  SFU_MAX_CONSUMERS_PER_PARTICIPANT: env.positiveInt(64),
  ...grpcTlsShape,
  ...opsDrainShape,
  SFU_WORKER_LOG_LEVEL: z.enum(['debug', 'warn', 'error', 'none']).default('warn'),
  /**
   * The Pod this node runs in, from the downward API: with both set, the node keeps the Pod's
   * deletion cost equal to its load, so that a scale-down removes the emptiest SFU first.
   */
  POD_NAME: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'must be a Pod name')
    .optional(),
  POD_NAMESPACE: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'must be a namespace name')
    .optional(),
  /** The API server, as the kubelet gives it to every container. */
  KUBERNETES_SERVICE_HOST: z.string().min(1).optional(),
  KUBERNETES_SERVICE_PORT: env.port(443),
  /** The mounted service account: its token and the API server's CA. */
  SFU_KUBERNETES_SERVICE_ACCOUNT_DIR: env.string('/var/run/secrets/kubernetes.io/serviceaccount'),
  /** The least time between two writes of the deletion cost; a write goes only when the cost changed. */
  SFU_DELETION_COST_INTERVAL_SECONDS: z.coerce.number().positive().max(3600).default(15),
};

/** At most this many STUN servers: two or three that agree are what the check needs. */
const MAX_STUN_SERVERS = 8;
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** `host:port,[v6]:port,...`; a problem is reported without quoting the value. */
function parseStunServers(text: string, context: z.RefinementCtx): StunServer[] {
  const entries = text.split(',').map((entry) => entry.trim());
  if (entries.length > MAX_STUN_SERVERS) {
    context.addIssue({ code: 'custom', message: `at most ${MAX_STUN_SERVERS} servers` });
    return z.NEVER;
  }
  const servers: StunServer[] = [];
  for (const [index, entry] of entries.entries()) {
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(entry);
    const host = match?.[1] ?? match?.[2];
    const port = Number(match?.[3]);
    const hostOk = host !== undefined && (match?.[1] !== undefined ? net.isIPv6(host) : net.isIPv4(host) || DNS_NAME.test(host));
    if (!hostOk || !(port >= 1 && port <= 65535)) {
      context.addIssue({ code: 'custom', message: `entry ${index + 1} is not host:port (an IPv6 address in brackets)` });
      return z.NEVER;
    }
    servers.push({ host, port });
  }
  return servers;
}

/** A metadata service's base URL: http or https, no credentials, query or fragment. */
function metadataUrl(fallback: string) {
  return z
    .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
    .refine((text) => {
      const url = new URL(text);
      return url.username === '' && url.password === '' && url.search === '' && url.hash === '';
    }, 'must have no credentials, query or fragment')
    .default(fallback);
}

export type SfuConfig = ReturnType<typeof readSfuConfig>;

function announcedAddressSettings(c: z.infer<z.ZodObject<typeof shape>>): AnnouncedAddressSettings {
  const allowPrivate = c.SFU_ANNOUNCED_ADDRESS_ALLOW_PRIVATE;
  const problem = (message: string) => new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${message}`);
  if (c.SFU_ANNOUNCED_ADDRESS_SOURCE !== 'explicit' && c.SFU_ANNOUNCED_ADDRESS !== undefined)
    throw problem(`SFU_ANNOUNCED_ADDRESS is for SFU_ANNOUNCED_ADDRESS_SOURCE=explicit only (the source is ${c.SFU_ANNOUNCED_ADDRESS_SOURCE}): unset one of them`);
  switch (c.SFU_ANNOUNCED_ADDRESS_SOURCE) {
    case 'explicit':
      return { source: 'explicit', address: c.SFU_ANNOUNCED_ADDRESS ?? '127.0.0.1' };
    case 'stun':
      if (!c.SFU_STUN_SERVERS?.length) throw problem('SFU_STUN_SERVERS is required with SFU_ANNOUNCED_ADDRESS_SOURCE=stun');
      return { source: 'stun', servers: c.SFU_STUN_SERVERS, allowPrivate };
    case 'aws':
      return { source: 'aws', metadataUrl: c.SFU_AWS_METADATA_URL, allowPrivate };
    case 'gcp':
      return { source: 'gcp', metadataUrl: c.SFU_GCP_METADATA_URL, allowPrivate };
    case 'azure':
      return { source: 'azure', metadataUrl: c.SFU_AZURE_METADATA_URL, allowPrivate };
  }
}

export function readSfuConfig(source: Record<string, string | undefined> = process.env) {
  const c = loadConfig(shape, source);
  if (c.SFU_PIPE_PORT_MIN > c.SFU_PIPE_PORT_MAX) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, 'invalid configuration:\n  SFU_PIPE_PORT_MIN must not be above SFU_PIPE_PORT_MAX');
  }
  if ((c.POD_NAME === undefined) !== (c.POD_NAMESPACE === undefined)) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, 'invalid configuration:\n  POD_NAME and POD_NAMESPACE go together (the deletion cost needs both)');
  }
  if (c.POD_NAME !== undefined && c.KUBERNETES_SERVICE_HOST === undefined) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, 'invalid configuration:\n  KUBERNETES_SERVICE_HOST is needed with POD_NAME (the API server that keeps the Pod)');
  }
  const announcedAddress = announcedAddressSettings(c);
  return {
    nats: readNatsSettings(c, 'sfu'),
    logLevel: c.LOG_LEVEL,
    nodeId: c.SFU_NODE_ID,
    grpcHost: c.SFU_GRPC_HOST,
    grpcPort: c.SFU_GRPC_PORT,
    grpcAdvertisedAddress: c.SFU_GRPC_ADVERTISED_ADDRESS,
    grpcTls: readGrpcTls(c),
    opsHost: c.SFU_OPS_HOST,
    opsPort: c.SFU_OPS_PORT,
    workers: c.SFU_WORKERS,
    rtcPortMin: c.SFU_RTC_PORT_MIN,
    listenIp: c.SFU_LISTEN_IP,
    announcedAddress,
    tapListenIp: c.SFU_TAP_LISTEN_IP,
    heartbeatMs: c.SFU_HEARTBEAT_SECONDS * 1000,
    drainGraceMs: c.SFU_DRAIN_GRACE_SECONDS * 1000,
    roomTimeouts: { idleMs: c.SFU_ROOM_IDLE_SECONDS * 1000, abandonedTransportMs: c.SFU_TRANSPORT_ABANDON_SECONDS * 1000, iceConsentTimeoutSeconds: Math.round(c.SFU_ICE_CONSENT_TIMEOUT_SECONDS) },
    workerLogLevel: c.SFU_WORKER_LOG_LEVEL,
    maxConsumers: c.SFU_MAX_CONSUMERS ?? 500 * c.SFU_WORKERS,
    participantLimits: {
      transports: c.SFU_MAX_TRANSPORTS_PER_PARTICIPANT,
      producers: c.SFU_MAX_PRODUCERS_PER_PARTICIPANT,
      consumers: c.SFU_MAX_CONSUMERS_PER_PARTICIPANT,
    },
    drainTokenFile: c.OPS_DRAIN_TOKEN_FILE,
    deletionCost:
      c.POD_NAME !== undefined && c.POD_NAMESPACE !== undefined && c.KUBERNETES_SERVICE_HOST !== undefined
        ? {
            pod: { name: c.POD_NAME, namespace: c.POD_NAMESPACE },
            apiServer: { host: c.KUBERNETES_SERVICE_HOST, port: c.KUBERNETES_SERVICE_PORT },
            serviceAccountDir: c.SFU_KUBERNETES_SERVICE_ACCOUNT_DIR,
            intervalMs: c.SFU_DELETION_COST_INTERVAL_SECONDS * 1000,
          }
        : undefined,
    pipe: { listenIp: c.SFU_PIPE_LISTEN_IP, announcedAddress: c.SFU_PIPE_ANNOUNCED_ADDRESS, portMin: c.SFU_PIPE_PORT_MIN, portMax: c.SFU_PIPE_PORT_MAX },
  };
}
