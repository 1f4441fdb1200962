import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:tls';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TurnServer, createServerPki, turnserverInstalled, waitFor, type ServerPki } from '@gateway/testing';
import { repoRoot } from '../k8s/services.js';

/** The certificate coturn presents to a new TLS connection on its turns: port. */
function presented(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fingerprint = socket.getPeerX509Certificate()?.fingerprint256 ?? '';
      socket.end();
      resolve(fingerprint);
    });
    socket.on('error', reject);
  });
}

/**
 * coturn's certificate renewed without a restart (deploy/coturn/reload.sh, the
 * sidecar of k8s/base/turn.yaml): a real turnserver with TLS, the files replaced as cert-manager
 * would, the script signals it, and new TLS connections get the new certificate from the same
 * process.
 */
describe.skipIf(!turnserverInstalled())('coturn takes up a renewed certificate', () => {
  let first: ServerPki;
  let second: ServerPki;
  let live: ServerPki;
  let turn: TurnServer;
  let watcher: ChildProcess | undefined;
  let watcherLog = '';

  beforeAll(async () => {
    first = createServerPki('turn-a', ['IP:127.0.0.1']);
    second = createServerPki('turn-b', ['IP:127.0.0.1']);
    // The files coturn reads, as the Secret's mount holds them.
    live = createServerPki('turn-live', ['IP:127.0.0.1']);
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    turn = await TurnServer.start({ tls: { certFile: live.certFile, keyFile: live.keyFile } });
  });

  afterAll(async () => {
    watcher?.kill('SIGTERM');
    await turn?.stop();
    for (const pki of [first, second, live]) if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('presents the new certificate to new connections once the files change, without a restart', async () => {
    const before = await presented(turn.tlsPort!);
    const { X509Certificate } = await import('node:crypto');
    const fingerprint = (pki: ServerPki) => new X509Certificate(readFileSync(pki.certFile)).fingerprint256;
    expect(before).toBe(fingerprint(first));
    const pid = Number(readFileSync(turn.pidFile, 'utf8').trim());
    expect(pid).toBeGreaterThan(0);

    // The watcher as the sidecar runs it, pointed at this server's files.
    watcher = spawn('sh', [path.join(repoRoot, 'deploy/coturn/reload.sh')], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TURN_RUN_DIR: turn.dir, TURN_CHECK_SECONDS: '0.2' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    watcher.stderr?.on('data', (chunk: Buffer) => (watcherLog += chunk.toString()));
    // Nothing changed yet: nothing is signalled, the same certificate is presented.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(watcherLog).toBe('');
    expect(await presented(turn.tlsPort!)).toBe(before);

    // Renewal: the new pair replaces the old one.
    copyFileSync(second.keyFile, live.keyFile);
    copyFileSync(second.certFile, live.certFile);
    await waitFor(() => watcherLog.includes(`turnserver ${pid} told to reload it`), 10_000, 'the watcher signalling turnserver');
    await waitFor(async () => (await presented(turn.tlsPort!)) !== before, 10_000, 'the renewed certificate presented');
    const after = await presented(turn.tlsPort!);
    expect(after).toBe(fingerprint(second));
    // The same process: its pid is unchanged and it still answers on its TURN port.
    expect(Number(readFileSync(turn.pidFile, 'utf8').trim())).toBe(pid);
    expect(watcherLog.match(/told to reload/g)).toHaveLength(1);
  });
});
