import { readFileSync } from 'node:fs';
import { z } from 'zod';
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, GatewayError } from './errors.js';

/**
 * Mutual TLS between our services over gRPC. Every service holds a certificate issued by the
 * internal CA and accepts only peers that present one too. Nodes are dialled by address (pod
 * IPs change), so clients check the server against one service name instead of the address.
 */
export const grpcTlsShape = {
  GRPC_TLS_CA_FILE: z.string().min(1).optional(),
  GRPC_TLS_CERT_FILE: z.string().min(1).optional(),
  GRPC_TLS_KEY_FILE: z.string().min(1).optional(),
  /** Name the servers' certificates carry (a DNS SAN); clients check it instead of the dialled address. */
  GRPC_TLS_SERVER_NAME: z.string().min(1).default('sfu.gateway.internal'),
};

export interface GrpcTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  serverName: string;
}

type GrpcTlsValues = z.infer<z.ZodObject<typeof grpcTlsShape>>;

/** All three files or none (plaintext, for one machine only); files are read at start-up so a bad path fails fast. */
export function readGrpcTls(values: GrpcTlsValues): GrpcTls | undefined {
  const files = { GRPC_TLS_CA_FILE: values.GRPC_TLS_CA_FILE, GRPC_TLS_CERT_FILE: values.GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE: values.GRPC_TLS_KEY_FILE };
  const missing = Object.entries(files).filter(([, v]) => !v).map(([k]) => k);
  if (missing.length === 3) return undefined;
  if (missing.length > 0) throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${missing.join(', ')} must be set with the other GRPC_TLS_* files`);
  const read = (variable: keyof typeof files) => {
    try {
      return readFileSync(files[variable]!);
    } catch (error) {
      throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${variable}=${JSON.stringify(files[variable])}: cannot read the file`, { cause: error });
    }
  };
  return { ca: read('GRPC_TLS_CA_FILE'), cert: read('GRPC_TLS_CERT_FILE'), key: read('GRPC_TLS_KEY_FILE'), serverName: values.GRPC_TLS_SERVER_NAME };
}

export function grpcServerCredentials(tls: GrpcTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** Credentials and channel options for a client of one of our gRPC servers. */
export function grpcClientCredentials(tls: GrpcTls | undefined): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (!tls) return { credentials: grpc.credentials.createInsecure(), options: {} };
  return {
    credentials: grpc.credentials.createSsl(tls.ca, tls.key, tls.cert),
    options: { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName },
  };
}
