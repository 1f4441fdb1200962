import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Development and test certificates, made with openssl: an internal CA, a certificate per
 * service whose identity is its DNS name `<service>.gateway.internal` (what gRPC peers and NATS
 * check), a NATS server certificate, and a foreign CA with a certificate of its own (what an
 * outsider would present). `make up` keeps one set in `.data/pki`; tests make throw-away ones.
 */

/** The services that hold a certificate, by the name in it. */
export const serviceIdentities = ['signaling', 'sfu', 'recorder', 'crm-sync', 'routing', 'residue'] as const;
export type ServiceIdentity = (typeof serviceIdentities)[number];

/** The DNS name a service's certificate carries, and that its peers check. */
export const identityDnsName = (service: string) => `${service}.gateway.internal`;

export interface CertificatePair {
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  dir: string;
  caFile: string;
  /** Each service's certificate and key, signed by the CA. */
  services: Record<ServiceIdentity, CertificatePair>;
  /** nats-server's certificate: `nats.gateway.internal`, `localhost`, 127.0.0.1. */
  nats: CertificatePair;
  /** Signed by another CA: what a foreign peer would present. */
  foreign: CertificatePair & { caFile: string };
  /** A certificate of our CA for a name that is no service of ours. */
  stranger: CertificatePair;
  /** The NATS admin identity's client certificate (provisioning, operators, tests). */
  admin: CertificatePair;
  /** The SFU's certificate: kept for tests written before certificates were per service. */
  certFile: string;
  keyFile: string;
  foreignCertFile: string;
  foreignKeyFile: string;
  foreignCaFile: string;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function issue(dir: string, ca: string, name: string, altNames: string[], days: number): CertificatePair {
  openssl(dir, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/O=gateway/CN=${name}`);
  writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${altNames.join(',')}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n`);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', String(days), '-out', `${name}.crt`, '-extfile', `${name}.ext`);
  return { certFile: path.join(dir, `${name}.crt`), keyFile: path.join(dir, `${name}.key`) };
}

function authority(dir: string, name: string, days: number): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    String(days),
    '-subj',
    `/O=gateway/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
}

/**
 * Makes the whole set in `dir` (a fresh temporary folder when not given); `days` is how long
 * the certificates last. An existing set in `dir` is kept (`make up` makes it once).
 */
export function createTestPki(options: { dir?: string; days?: number } | string = {}): TestPki {
  // Older callers passed a server name; every name is fixed now.
  const { dir: wanted, days = 2 } = typeof options === 'string' ? {} : options;
  const dir = wanted ?? mkdtempSync(path.join(tmpdir(), 'gateway-pki-'));
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const at = (file: string) => path.join(dir, file);
  const pair = (name: string): CertificatePair => ({ certFile: at(`${name}.crt`), keyFile: at(`${name}.key`) });
  const complete = existsSync(at('ca.crt')) && existsSync(at('foreign.crt')) && existsSync(at('admin.crt')) && serviceIdentities.every((s) => existsSync(at(`${s}.crt`)));
  if (!complete) {
    authority(dir, 'ca', days);
    for (const service of serviceIdentities) issue(dir, 'ca', service, [`DNS:${identityDnsName(service)}`], days);
    issue(dir, 'ca', 'nats', ['DNS:nats.gateway.internal', 'DNS:localhost', 'IP:127.0.0.1'], days);
    issue(dir, 'ca', 'stranger', ['DNS:stranger.gateway.internal'], days);
    issue(dir, 'ca', 'admin', ['DNS:admin.gateway.internal'], days);
    authority(dir, 'foreign-ca', days);
    issue(dir, 'foreign-ca', 'foreign', [`DNS:${identityDnsName('sfu')}`, `DNS:${identityDnsName('signaling')}`], days);
  }
  const services = Object.fromEntries(serviceIdentities.map((s) => [s, pair(s)])) as Record<ServiceIdentity, CertificatePair>;
  const foreign = { ...pair('foreign'), caFile: at('foreign-ca.crt') };
  return {
    dir,
    caFile: at('ca.crt'),
    services,
    nats: pair('nats'),
    foreign,
    stranger: pair('stranger'),
    admin: pair('admin'),
    certFile: services.sfu.certFile,
    keyFile: services.sfu.keyFile,
    foreignCertFile: foreign.certFile,
    foreignKeyFile: foreign.keyFile,
    foreignCaFile: foreign.caFile,
  };
}

/** Names the folder where a test run keeps its certificates (set by test/support/testRun.ts). */
export const TEST_RUN_PKI_ENV = 'GATEWAY_TEST_RUN_PKI_DIR';

/**
 * The set of certificates named `name` of this test run: made by the first test file that asks
 * (two dozen openssl commands, a second or more of CPU), then read by the next files of the run,
 * which otherwise each made their own. Outside a run (a script, a benchmark) a fresh set of the
 * process's own. `owned` says whether the caller made the folder and removes it.
 */
export function testRunPki(name: string): { pki: TestPki; owned: boolean } {
  const runDir = process.env[TEST_RUN_PKI_ENV];
  if (!runDir) return { pki: createTestPki(), owned: true };
  const dir = path.join(runDir, name);
  if (!existsSync(dir)) {
    // Made aside and moved into place whole: a file of the run never finds half a set.
    const making = mkdtempSync(path.join(runDir, `${name}-`));
    createTestPki({ dir: making });
    try {
      renameSync(making, dir);
    } catch {
      rmSync(making, { recursive: true, force: true }); // another file of the run was first
    }
  }
  return { pki: createTestPki({ dir }), owned: false };
}

/** A server certificate and the CA of its own that signs it. */
export interface ServerPki extends CertificatePair {
  dir: string;
  caFile: string;
}

/**
 * A CA of its own and a server certificate it signs for `altNames` (`DNS:...`, `IP:...`): for a
 * test server that stands for someone else's service (the Kubernetes API server), whose CA a
 * client is given apart from ours. The caller removes `dir`.
 */
export function createServerPki(name: string, altNames: string[], days = 2): ServerPki {
  const dir = mkdtempSync(path.join(tmpdir(), `gateway-${name}-pki-`));
  authority(dir, `${name}-ca`, days);
  const pair = issue(dir, `${name}-ca`, name, altNames, days);
  return { dir, caFile: path.join(dir, `${name}-ca.crt`), ...pair };
}
