import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { endProcess, freePort, waitForPort } from './NatsServer.js';
import { SecretVolume } from './SecretVolume.js';

/** The image's entrypoint, which writes the configuration and the secrets' database (deploy/coturn). */
const entrypoint = fileURLToPath(new URL('../../../deploy/coturn/entrypoint.sh', import.meta.url));

export interface TurnServerOptions {
  /** Also TURN over TLS (turns:) with this certificate and key, read again on SIGUSR2. */
  tls?: { certFile: string; keyFile: string };
  /**
   * The shared secrets as a deployment keeps them: the files of a mounted Secret (`secrets`:
   * "secret", and "previous" during a rotation), put into coturn's user database by the image's entrypoint
   * (deploy/coturn/entrypoint.sh), which deploy/coturn/reload.sh rewrites when they change.
   * Without it: one `static-auth-secret`, fixed for the server's life.
   */
  secretDatabase?: boolean;
}

/** Whether coturn's `turnserver` is on this machine (scripts/setup.sh installs it). */
export function turnserverInstalled(): boolean {
  return spawnSync('turnserver', ['--help'], { stdio: 'ignore' }).error === undefined;
}

/**
 * A real coturn on 127.0.0.1 as signaling's TURN settings expect it: the REST-API scheme
 * (`use-auth-secret`) with a fresh secret, UDP and TCP on one free port, no TLS, no CLI, in a
 * throw-away folder. Peers on the loopback are allowed (the test's SFU listens there); a
 * deployment denies them and every private range but its media nodes' (docs/turn.md).
 */
export class TurnServer {
  private constructor(
    readonly port: number,
    readonly secret: string,
    readonly dir: string,
    private readonly process: ChildProcess,
    /** TURN over TLS, when started with a certificate. */
    readonly tlsPort: number | undefined,
    /** With `secretDatabase`: the shared secrets as the pod mounts the Secret ("secret", "previous"), updated as the kubelet updates it. */
    readonly secrets: SecretVolume | undefined,
  ) {}

  /** Its process id, as turnserver wrote it. */
  pid(): number {
    return Number(readFileSync(this.pidFile, 'utf8').trim());
  }

  /** Where turnserver writes its process id (what deploy/coturn/reload.sh signals). */
  get pidFile(): string {
    return join(this.dir, 'turnserver.pid');
  }

  /** The file signaling reads the secret from (SIGNALING_TURN_SECRET_FILE): with `secretDatabase`, the one coturn's secrets come from too. */
  get secretFile(): string {
    return this.secrets ? this.secrets.file('secret') : join(this.dir, 'secret');
  }

  /** Its URLs, as SIGNALING_TURN_URLS lists them. */
  get urls(): string[] {
    return [`turn:127.0.0.1:${this.port}?transport=udp`, `turn:127.0.0.1:${this.port}?transport=tcp`];
  }

  /** Signaling's environment for handing this server out. */
  signalingEnv(ttlSeconds = 3600): Record<string, string> {
    return { SIGNALING_TURN_SECRET_FILE: this.secretFile, SIGNALING_TURN_URLS: this.urls.join(','), SIGNALING_TURN_CREDENTIAL_TTL_SECONDS: String(ttlSeconds) };
  }

  /** coturn's log so far (verbose: each allocation, permission and refusal). */
  log(): string {
    const file = join(this.dir, 'turn.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  static async start(options: TurnServerOptions = {}): Promise<TurnServer> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await TurnServer.startOnce(options);
      } catch (error) {
        // Another process took the port between choosing and binding it.
        if (attempt >= 3) throw error;
      }
    }
  }

  private static async startOnce(options: TurnServerOptions): Promise<TurnServer> {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-turn-'));
    const port = await freePort();
    const tlsPort = options.tls ? await freePort() : undefined;
    const secret = randomBytes(32).toString('hex');
    const secretDatabase = options.secretDatabase ?? false;
    // The secret goes in a file of ours rather than on the command line, where `ps` shows it.
    let secrets: SecretVolume | undefined;
    if (secretDatabase) {
      mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
      secrets = SecretVolume.create({ secret }, join(dir, 'secrets'));
    } else {
      writeFileSync(join(dir, 'secret'), secret, { mode: 0o600 });
    }
    const config = [
      // With the secrets' database, the entrypoint adds the addresses, the pid file and the database.
      ...(secretDatabase ? [] : ['listening-ip=127.0.0.1', 'relay-ip=127.0.0.1', `static-auth-secret=${secret}`, `pidfile=${join(dir, 'turnserver.pid')}`]),
      `listening-port=${port}`,
      'use-auth-secret',
      'realm=gateway.test',
      'fingerprint',
      'no-cli',
      ...(options.tls ? [`tls-listening-port=${tlsPort}`, `cert=${options.tls.certFile}`, `pkey=${options.tls.keyFile}`] : ['no-tls']),
      'no-dtls',
      'no-multicast-peers',
      'allow-loopback-peers',
      'verbose',
      `log-file=${join(dir, 'turn.log')}`,
      'simple-log',
      'no-stdout-log',
    ];
    if (secrets) {
      writeFileSync(join(dir, 'base.conf'), `${config.join('\n')}\n`, { mode: 0o600 });
      const env = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        TURN_CONFIG_FILE: join(dir, 'base.conf'),
        TURN_SECRET_DIR: secrets.dir,
        TURN_RUN_DIR: dir,
        TURN_PRIVATE_IP: '127.0.0.1',
        TURN_ALLOWED_PEER_RANGE: 'none',
      };
      const configured = spawnSync('sh', [entrypoint], { env, encoding: 'utf8' });
      if (configured.status !== 0) {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`deploy/coturn/entrypoint.sh failed (${configured.status}): ${configured.stderr}`);
      }
    } else {
      writeFileSync(join(dir, 'turnserver.conf'), `${config.join('\n')}\n`, { mode: 0o600 });
    }
    const child = spawn('turnserver', ['-c', join(dir, 'turnserver.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < 20_000) stderr += chunk.toString();
    });
    const server = new TurnServer(port, secret, dir, child, tlsPort, secrets);
    try {
      await waitForPort(port, 10_000);
      if (tlsPort) await waitForPort(tlsPort, 10_000);
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
    } catch (error) {
      await server.stop();
      throw new Error(`turnserver did not start: ${String(error)}\n${stderr}\n${server.log().slice(-4000)}`);
    }
    return server;
  }

  async stop(): Promise<void> {
    await endProcess(this.process, 'SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
