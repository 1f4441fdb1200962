// `make up`'s closed NATS on this machine: development certificates (<data>/pki, the `nats`
// pair is the server's), an nkey per identity (<data>/nats-auth/<identity>.nk) and nats-server's
// configuration (<data>/nats-auth/nats-server.conf, and nats-server.compose.conf with the paths
// of deploy/compose.yaml) with the permissions of packages/common/src/jetstream/access.ts. Made
// once and kept; the certificates are made again when they are about to expire. Prints the
// configuration file's path.
//
//   node --import tsx scripts/nats-dev.ts <data dir> <client port>
//   node --import tsx scripts/nats-dev.ts nkey      (a new nkey pair: the seed, then the public key)
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { ensureNatsCredentials, natsIdentities, writeNatsServerConfig, type NatsIdentity } from '@gateway/common';
import { createTestPki } from '@gateway/testing';

if (process.argv[2] === 'nkey') {
  const pair = nkeys.createUser();
  process.stdout.write(`${new TextDecoder().decode(pair.getSeed())}\n${pair.getPublicKey()}\n`);
  process.exit(0);
}

const [dataArg, portArg] = process.argv.slice(2);
if (!dataArg || !portArg) {
  process.stderr.write('usage: nats-dev.ts <data dir> <client port>\n');
  process.exit(2);
}
const data = path.resolve(dataArg);
const pkiDir = path.join(data, 'pki');
const authDir = path.join(data, 'nats-auth');

/** Whether a certificate is still valid a day from now. */
const lastsADay = (file: string) => {
  try {
    execFileSync('openssl', ['x509', '-checkend', '86400', '-noout', '-in', file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
if (existsSync(path.join(pkiDir, 'ca.crt')) && !['ca', 'nats', 'admin', 'signaling'].every((name) => lastsADay(path.join(pkiDir, `${name}.crt`)))) {
  rmSync(pkiDir, { recursive: true, force: true });
}
const pki = createTestPki({ dir: pkiDir, days: 365 });
const credentials = ensureNatsCredentials(authDir);
const publicKeys = Object.fromEntries(natsIdentities.map((identity) => [identity, credentials[identity].publicKey])) as Record<NatsIdentity, string>;
const configFile = path.join(authDir, 'nats-server.conf');
writeNatsServerConfig(configFile, {
  host: '127.0.0.1',
  port: Number(portArg),
  storeDir: path.join(data, 'nats'),
  tls: { certFile: pki.nats.certFile, keyFile: pki.nats.keyFile, caFile: pki.caFile },
  publicKeys,
});
// The same server in a container (deploy/compose.yaml mounts the files there).
writeNatsServerConfig(path.join(authDir, 'nats-server.compose.conf'), {
  host: '0.0.0.0',
  port: 4222,
  monitorPort: 8222,
  storeDir: '/data',
  tls: { certFile: '/etc/nats/tls.crt', keyFile: '/etc/nats/tls.key', caFile: '/etc/nats/ca.crt' },
  publicKeys,
});
process.stdout.write(`${configFile}\n`);
