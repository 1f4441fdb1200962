import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { natsIdentities, renderAuthorization, type NatsIdentity } from './access.js';

/**
 * nats-server as we run it on one machine (`make up`) and in tests: TLS for every client
 * (clients must present a certificate of our CA too), one nkey user per identity with the
 * permissions of access.ts, JetStream on disk. Kubernetes runs the official chart with the same
 * authorization (deploy/nats/values.yaml).
 */

export interface NatsCredential {
  identity: NatsIdentity;
  /** File holding the nkey seed (the secret), readable by its owner only. */
  seedFile: string;
  publicKey: string;
}

/**
 * One nkey per identity in `dir` (`<identity>.nk`), made when missing and kept otherwise, so a
 * running system keeps its credentials across restarts.
 */
export function ensureNatsCredentials(dir: string): Record<NatsIdentity, NatsCredential> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const entries = natsIdentities.map((identity): [NatsIdentity, NatsCredential] => {
    const seedFile = path.join(dir, `${identity}.nk`);
    if (!existsSync(seedFile)) writeFileSync(seedFile, `${new TextDecoder().decode(nkeys.createUser().getSeed())}\n`, { mode: 0o600 });
    return [identity, { identity, seedFile, publicKey: publicKeyOfSeedFile(seedFile) }];
  });
  return Object.fromEntries(entries) as Record<NatsIdentity, NatsCredential>;
}

export function publicKeyOfSeedFile(seedFile: string): string {
  return nkeys.fromSeed(new TextEncoder().encode(readFileSync(seedFile, 'utf8').trim())).getPublicKey();
}

export interface NatsServerOptions {
  host: string;
  port: number;
  storeDir: string;
  /** The server's certificate and key, and the CA clients' certificates must come from. */
  tls: { certFile: string; keyFile: string; caFile: string };
  publicKeys: Record<NatsIdentity, string>;
  serverName?: string;
  /** The monitoring port (health, /jsz); none when unset. */
  monitorPort?: number;
  cluster?: { name: string; host: string; port: number; routes: string[] };
}

/** nats-server's configuration (its config format reads JSON). */
export function natsServerConfig(options: NatsServerOptions): Record<string, unknown> {
  return {
    ...(options.serverName ? { server_name: options.serverName } : {}),
    host: options.host,
    port: options.port,
    ...(options.monitorPort ? { http_port: options.monitorPort } : {}),
    jetstream: { store_dir: options.storeDir },
    tls: { cert_file: options.tls.certFile, key_file: options.tls.keyFile, ca_file: options.tls.caFile, verify: true, timeout: 5 },
    authorization: renderAuthorization((identity) => options.publicKeys[identity]),
    ...(options.cluster ? { cluster: { name: options.cluster.name, host: options.cluster.host, port: options.cluster.port, routes: options.cluster.routes } } : {}),
  };
}

export function writeNatsServerConfig(file: string, options: NatsServerOptions): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(natsServerConfig(options), null, 2)}\n`, { mode: 0o600 });
}

/** The Secret (namespace gateway) whose keys are the identities' public nkeys, which the NATS pods read into their environment. */
export const natsUserKeysSecret = 'nats-user-keys';

/** The environment variable of the NATS pods that holds an identity's public nkey. */
export const natsNkeyVariable = (identity: NatsIdentity) => `NATS_NKEY_${identity.toUpperCase().replace(/-/g, '_')}`;

/**
 * The chart's side of the same authorization (deploy/nats/values.yaml, config.merge): the
 * public keys come from the pods' environment (`<< $VAR >>` is written unquoted into the
 * server's configuration, which resolves it), the permissions are the ones above.
 */
export function natsChartAuthorization(): ReturnType<typeof renderAuthorization> {
  return renderAuthorization((identity) => `<< $${natsNkeyVariable(identity)} >>`);
}

/** The NATS container's environment entries that feed natsChartAuthorization (values.yaml, container.env). */
export function natsChartEnv(): Record<string, { valueFrom: { secretKeyRef: { name: string; key: string } } }> {
  return Object.fromEntries(natsIdentities.map((identity) => [natsNkeyVariable(identity), { valueFrom: { secretKeyRef: { name: natsUserKeysSecret, key: identity } } }]));
}
