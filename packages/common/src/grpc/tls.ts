import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import { z } from 'zod';
import * as grpc from '@grpc/grpc-js';
import { experimental } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ErrorCode, GatewayError } from '../errors.js';
import { WatchedFiles } from '../runtime/watchedFiles.js';

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

/** Fixed certificate contents: what a test's own client or server presents. */
export interface GrpcTlsContents {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Where a service's certificate, key and CA bundle are (GRPC_TLS_*), and what they held at start-up. */
export interface GrpcTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  initial: GrpcTlsContents;
}

/** What gRPC credentials are made from: fixed contents, or files taken up again when they change. */
export type GrpcTls = GrpcTlsContents | GrpcTlsSource;

type GrpcTlsValues = z.infer<z.ZodObject<typeof grpcTlsShape>>;

/**
 * Whether a CA bundle, a certificate chain and a key make a usable TLS identity (the key is the
 * certificate's, each parses). The error names what is wrong, never the contents.
 */
function checkGrpcTls(contents: GrpcTlsContents): void {
  try {
    createSecureContext({ ca: contents.ca, cert: contents.cert, key: contents.key });
  } catch (error) {
    const reason = /mismatch/i.test(String((error as Error).message)) ? "the key is not the certificate's" : 'a certificate or the key does not parse';
    throw new GatewayError(ErrorCode.CONFIG_INVALID, `GRPC_TLS_* files: ${reason}`, { cause: error });
  }
}

/** All three files or none (plaintext, for one machine only); read and checked at start-up so a bad file fails fast. */
export function readGrpcTls(values: GrpcTlsValues): GrpcTlsFiles | undefined {
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
  const initial = { ca: read('GRPC_TLS_CA_FILE'), cert: read('GRPC_TLS_CERT_FILE'), key: read('GRPC_TLS_KEY_FILE') };
  try {
    checkGrpcTls(initial);
  } catch (error) {
    throw new GatewayError(ErrorCode.CONFIG_INVALID, `invalid configuration:\n  ${(error as GatewayError).message}`, { cause: error });
  }
  return { caFile: files.GRPC_TLS_CA_FILE!, certFile: files.GRPC_TLS_CERT_FILE!, keyFile: files.GRPC_TLS_KEY_FILE!, initial };
}

/**
 * A service's gRPC certificate, key and CA bundle, taken up again when their files change
 * (cert-manager renews every certificate at about the same time; a process that read them once
 * would fail its handshakes when they expire). gRPC asks it for them at each new handshake:
 * connections already up carry on, new ones use the new files. New contents are checked first
 * (the key must be the certificate's): anything unusable is logged and counted, and the
 * contents in use stay. A rotation to a new CA goes as cert-manager's trust bundles do: the
 * bundle with both CAs first, everywhere, then the new leaf certificates.
 */
export class GrpcTlsSource implements experimental.CertificateProvider {
  #contents: GrpcTlsContents;
  readonly #caListeners = new Set<experimental.CaCertificateUpdateListener>();
  readonly #identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();
  readonly #files: WatchedFiles;

  constructor(files: GrpcTlsFiles, log: Logger, options: { intervalMs?: number } = {}) {
    this.#contents = files.initial;
    this.#files = new WatchedFiles({
      source: 'grpc-tls',
      files: [files.caFile, files.certFile, files.keyFile],
      initial: [files.initial.ca, files.initial.cert, files.initial.key],
      apply: ([ca, cert, key]) => {
        const contents = { ca: ca!, cert: cert!, key: key! };
        checkGrpcTls(contents);
        this.#contents = contents;
        for (const listener of this.#caListeners) listener({ caCertificate: contents.ca });
        for (const listener of this.#identityListeners) listener({ certificate: contents.cert, privateKey: contents.key });
      },
      log,
      ...(options.intervalMs ? { intervalMs: options.intervalMs } : {}),
    });
  }

  /** Reads the files now (tests, and a caller that knows they changed); resolves once taken up or refused. */
  check(): Promise<void> {
    return this.#files.check();
  }

  close(): void {
    this.#files.close();
  }

  // gRPC's side. The first update goes on the next tick, as gRPC's own providers do: a server
  // adds its watcher only after subscribing, and would miss an update given at once.
  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#caListeners.add(listener);
    process.nextTick(() => this.#caListeners.has(listener) && listener({ caCertificate: this.#contents.ca }));
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.#caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identityListeners.add(listener);
    process.nextTick(() => this.#identityListeners.has(listener) && listener({ certificate: this.#contents.cert, privateKey: this.#contents.key }));
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.#identityListeners.delete(listener);
  }
}

/** A service's TLS source from its configuration, or undefined (plaintext). */
export function watchGrpcTls(files: GrpcTlsFiles | undefined, log: Logger): GrpcTlsSource | undefined {
  return files ? new GrpcTlsSource(files, log) : undefined;
}

export function grpcServerCredentials(tls: GrpcTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  // Both providers are the source: gRPC takes the identity from one and the CA from the other.
  if (tls instanceof GrpcTlsSource) return experimental.createCertificateProviderServerCredentials(tls, tls, true);
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
    credentials: tls instanceof GrpcTlsSource ? experimental.createCertificateProviderChannelCredentials(tls, tls) : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert),
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
