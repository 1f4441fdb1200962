import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import { z } from 'zod';
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, GatewayError } from '../errors.js';

/**
 * Mutual TLS between our services over gRPC. Every service holds a certificate of the internal
 * CA whose identity is its DNS name, `<service>.gateway.internal`. A client checks the server
 * it dials against the name of the service it means to reach (nodes are dialled by address, pod
 * addresses change), and a server checks each caller's name against the methods that service
 * may call (`unaryHandlers`' access table).
 */
export const grpcTlsShape = {
  GRPC_TLS_CA_FILE: z.string().min(1).optional(),
  GRPC_TLS_CERT_FILE: z.string().min(1).optional(),
  GRPC_TLS_KEY_FILE: z.string().min(1).optional(),
};

/** The services that speak gRPC to each other, by the name their certificates carry. */
export const grpcServices = ['signaling', 'sfu', 'recorder'] as const;
export type GrpcService = (typeof grpcServices)[number];

/** The DNS name (subject alternative name) a service's certificate carries, and its peers check. */
export const grpcIdentityName = (service: GrpcService) => `${service}.gateway.internal`;

export interface GrpcTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

type GrpcTlsValues = z.infer<z.ZodObject<typeof grpcTlsShape>>;

/** All three files or none (plaintext, for one machine only); files are read at start-up so a bad path fails fast. */
export function readGrpcTls(values: GrpcTlsValues): GrpcTls | undefined {
  const files = { GRPC_TLS_CA_FILE: values.GRPC_TLS_CA_FILE, GRPC_TLS_CERT_FILE: values.GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE: values.GRPC_TLS_KEY_FILE };
  const missing = Object.entries(files)
    .filter(([, v]) => !v)
    .map(([k]) => k);
  if (missing.length === 3) return undefined;
  if (missing.length > 0) throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${missing.join(', ')} must be set with the other GRPC_TLS_* files`);
  const read = (variable: keyof typeof files) => {
    try {
      return readFileSync(files[variable]!);
    } catch (error) {
      throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${variable}=${JSON.stringify(files[variable])}: cannot read the file`, { cause: error });
    }
  };
  return { ca: read('GRPC_TLS_CA_FILE'), cert: read('GRPC_TLS_CERT_FILE'), key: read('GRPC_TLS_KEY_FILE') };
}

export function grpcServerCredentials(tls: GrpcTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/**
 * Credentials and channel options for a client of one of our gRPC servers: the server must
 * present a certificate of our CA for `target`'s name, whatever address it is dialled at.
 */
export function grpcClientCredentials(tls: GrpcTls | undefined, target: GrpcService): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  const name = grpcIdentityName(target);
  return {
    credentials: grpc.credentials.createSsl(tls.ca, tls.key, tls.cert),
    options: { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name },
  };
}

/** Identities by certificate fingerprint: parsing a certificate on every call would be wasted work. */
const identityCache = new Map<string, GrpcService | undefined>();
const IDENTITY_CACHE_SIZE = 256;

/**
 * The service a peer's certificate (already verified against our CA by TLS) names in its DNS
 * subject alternative names, or undefined when it names none of them, or more than one: a
 * certificate is one service's, never two. The subject's common name is not looked at.
 */
export function grpcPeerIdentity(certificate: PeerCertificate | undefined): GrpcService | undefined {
  if (!certificate?.raw) return undefined;
  const key = certificate.fingerprint256;
  if (key && identityCache.has(key)) return identityCache.get(key);
  let identity: GrpcService | undefined;
  try {
    const parsed = new X509Certificate(certificate.raw);
    const named = grpcServices.filter((service) => parsed.checkHost(grpcIdentityName(service), { subject: 'never', wildcards: false }) !== undefined);
    identity = named.length === 1 ? named[0] : undefined;
  } catch {
    identity = undefined;
  }
  if (key) {
    if (identityCache.size >= IDENTITY_CACHE_SIZE) identityCache.delete(identityCache.keys().next().value!);
    identityCache.set(key, identity);
  }
  return identity;
}
