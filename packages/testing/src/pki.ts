import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestPki {
  dir: string;
  caFile: string;
  /** Certificate and key for a service, signed by the CA, with `serverName` as DNS SAN. */
  certFile: string;
  keyFile: string;
  /** A certificate and key signed by another CA: what a foreign peer would present. */
  foreignCertFile: string;
  foreignKeyFile: string;
  foreignCaFile: string;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function issue(dir: string, ca: string, name: string, serverName: string): void {
  openssl(dir, 'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=DNS:${serverName}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`);
}

function authority(dir: string, name: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`);
}

/** A throw-away internal CA with one service certificate, and a foreign CA with its own, made with openssl. */
export function createTestPki(serverName = 'sfu.gateway.internal'): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'gateway-pki-'));
  authority(dir, 'ca');
  issue(dir, 'ca', 'service', serverName);
  authority(dir, 'foreign-ca');
  issue(dir, 'foreign-ca', 'foreign', serverName);
  const at = (file: string) => path.join(dir, file);
  return {
    dir,
    caFile: at('ca.crt'),
    certFile: at('service.crt'),
    keyFile: at('service.key'),
    foreignCertFile: at('foreign.crt'),
    foreignKeyFile: at('foreign.key'),
    foreignCaFile: at('foreign-ca.crt'),
  };
}
