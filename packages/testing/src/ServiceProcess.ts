import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { freePort, natsEnvFor } from './NatsServer.js';
import { testRunPki, type TestPki } from './pki.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * How every service is started (scripts/up.sh and the images do the same): TypeScript through
 * tsx, and the OpenTelemetry SDK before the service's own code.
 */
export const serviceNodeArgs = ['--import', 'tsx', '--import', '@gateway/common/telemetry/register'];

/**
 * A service started as its own process exactly as in production (`services/<name>/src/main.ts`
 * with environment configuration), waited on through its /readyz, stopped with a signal. Started
 * against a NatsServer or NatsCluster of the harness (by its `url`), it connects with its own
 * NATS identity: the server's certificate authority, its nkey and its client certificate.
 */
/**
 * The test runner's environment for a service, less what would make it act on the machine the
 * tests run on: a runner inside a Kubernetes pod may have its own POD_NAME, whose Pod an SFU
 * would then try to annotate (a test that wants it passes its own).
 */
function inheritedEnv(): NodeJS.ProcessEnv {
  const { POD_NAME: _podName, POD_NAMESPACE: _podNamespace, ...rest } = process.env;
  return rest;
}

/**
 * Waits for starts begun side by side, then throws the first failure, if any. Services need only
 * NATS to start (NatsServer.start provisions the streams) and their start-up is mostly CPU: one
 * after another leaves the second core idle. Every start settles before a failure is thrown, so
 * that a test's clean-up finds everything that did start.
 */
export async function allStarted(starts: ReadonlyArray<Promise<unknown>>): Promise<void> {
  const failed = (await Promise.allSettled(starts)).find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

export class ServiceProcess {
  /** Every service a test process has running now (what a failed test's report quotes). */
  static readonly running = new Set<ServiceProcess>();
  private output = '';
  /** How much output there was when the service became ready (where warnings() starts). */
  private readyAtOutput = 0;
  private exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly env: Record<string, string>,
  ) {
    child.stdout?.on('data', (chunk: Buffer) => this.append(chunk));
    child.stderr?.on('data', (chunk: Buffer) => this.append(chunk));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    ServiceProcess.running.add(this);
    child.once('exit', () => ServiceProcess.running.delete(this));
  }

  /**
   * The last warnings and errors the service logged once ready (its pino lines of level 40 and
   * up), each as `level msg (err.message or reason)`: what a failed test's report adds, so a
   * failure on CI says why. What it said while starting (a test set-up's usual warnings) is left
   * out.
   */
  warnings(limit = 5): string[] {
    const lines: string[] = [];
    for (const line of this.output.slice(this.readyAtOutput).split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const entry = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string }; reason?: unknown };
        if ((entry.level ?? 0) < 40) continue;
        // The error, or the reason a line gives instead (the recorder's failed captures).
        const cause = entry.err?.message ?? (typeof entry.reason === 'string' ? entry.reason : undefined);
        const why = cause ? ` (${cause})` : '';
        lines.push(`${entry.level! >= 50 ? 'error' : 'warn'} ${entry.msg ?? ''}${why}`.slice(0, 240));
      } catch {
        // a line that is not JSON (a stack printed by node itself)
      }
    }
    return lines.slice(-limit);
  }

  private append(chunk: Buffer): void {
    this.output += chunk.toString();
    // Keep the tail only: long tests log a lot.
    if (this.output.length > 200_000) {
      this.readyAtOutput = Math.max(0, this.readyAtOutput - (this.output.length - 100_000));
      this.output = this.output.slice(-100_000);
    }
  }

  get logs(): string {
    return this.output;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** `nodeArgs` go to node itself (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
  static async start(service: string, env: Record<string, string>, readyUrl: string, timeoutMs = 30_000, nodeArgs: readonly string[] = []): Promise<ServiceProcess> {
    const child = spawn(process.execPath, [...nodeArgs, ...serviceNodeArgs, `services/${service}/src/main.ts`], {
      cwd: repoRoot,
      env: { ...inheritedEnv(), LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc = new ServiceProcess(service, child, env);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${service} exited with ${child.exitCode} during start-up:\n${proc.logs.slice(-4000)}`);
      try {
        const res = await fetch(readyUrl);
        if (res.ok) {
          proc.readyAtOutput = proc.output.length;
          return proc;
        }
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${service} not ready after ${timeoutMs} ms:\n${proc.logs.slice(-4000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends `signal` and resolves with the exit code (null when killed; SIGKILL after `timeoutMs`). */
  async stop(signal: NodeJS.Signals = 'SIGINT', timeoutMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  /** Whether the process is still running. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

export interface SfuProcess extends ServiceProcess {}

/**
 * gRPC between the services a test starts is mutual TLS by default, as in production: each
 * service gets its own certificate (`<service>.gateway.internal`) of one CA made once per test
 * process. `grpcTls: false` starts a service in plaintext.
 */
let sharedPki: TestPki | undefined;

/** The certificates the service helpers use for gRPC: the test run's (`testRunPki`). */
export function sharedTestPki(): TestPki {
  if (!sharedPki) {
    const { pki, owned } = testRunPki('grpc');
    if (owned) process.once('exit', () => rmSync(pki.dir, { recursive: true, force: true }));
    sharedPki = pki;
  }
  return sharedPki;
}

export type GrpcTestIdentity = 'signaling' | 'sfu' | 'recorder' | 'stranger' | 'foreign';

function certificateOf(identity: GrpcTestIdentity, pki: TestPki): { certFile: string; keyFile: string } {
  if (identity === 'stranger') return pki.stranger;
  if (identity === 'foreign') return pki.foreign;
  return pki.services[identity];
}

/** A service's GRPC_TLS_* variables: the CA, and the certificate and key of `identity`. */
export function grpcTlsEnv(identity: GrpcTestIdentity, pki: TestPki = sharedTestPki()): Record<string, string> {
  const { certFile, keyFile } = certificateOf(identity, pki);
  return { GRPC_TLS_CA_FILE: pki.caFile, GRPC_TLS_CERT_FILE: certFile, GRPC_TLS_KEY_FILE: keyFile };
}

/**
 * What a test's own gRPC client presents to be `identity` (pass it to `grpcClientCredentials`
 * of @gateway/common with the service it dials): our CA, and that identity's certificate and key.
 */
export function grpcTlsOf(identity: GrpcTestIdentity, pki: TestPki = sharedTestPki()): { ca: Buffer; cert: Buffer; key: Buffer } {
  const { certFile, keyFile } = certificateOf(identity, pki);
  return { ca: readFileSync(pki.caFile), cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

const tlsUnless = (grpcTls: boolean | undefined, identity: GrpcTestIdentity) => (grpcTls === false ? {} : grpcTlsEnv(identity));

export async function startSfuProcess(options: { natsUrl: string; nodeId?: string; workers?: number; grpcTls?: boolean; env?: Record<string, string> }) {
  return retryOnPortClash(async () => {
    const grpcPort = await freePort();
    const opsPort = await freePort();
    const rtcPortMin = await freeMediaPorts(options.workers ?? 1);
    const env: Record<string, string> = {
      ...natsEnvFor(options.natsUrl, 'sfu'),
      SFU_NODE_ID: options.nodeId ?? `sfu-test-${grpcPort}`,
      SFU_GRPC_HOST: '127.0.0.1',
      SFU_GRPC_PORT: String(grpcPort),
      SFU_GRPC_ADVERTISED_ADDRESS: `127.0.0.1:${grpcPort}`,
      SFU_OPS_PORT: String(opsPort),
      SFU_WORKERS: String(options.workers ?? 1),
      SFU_RTC_PORT_MIN: String(rtcPortMin),
      SFU_LISTEN_IP: '127.0.0.1',
      SFU_ANNOUNCED_ADDRESS: '127.0.0.1',
      // Pipes to other nodes take ports just above the workers', apart from any other node's.
      SFU_PIPE_LISTEN_IP: '127.0.0.1',
      SFU_PIPE_PORT_MIN: String(rtcPortMin + 100),
      SFU_PIPE_PORT_MAX: String(rtcPortMin + 199),
      ...tlsUnless(options.grpcTls, 'sfu'),
      ...options.env,
    };
    const proc = await ServiceProcess.start('sfu', env, `http://127.0.0.1:${opsPort}/readyz`);
    return Object.assign(proc, { grpcPort, opsPort, nodeId: env.SFU_NODE_ID });
  });
}

/**
 * A base port whose next `count` ports are free for UDP and TCP, below the kernel's ephemeral
 * range (32768 and up), where outgoing connections would take them from under a starting SFU.
 * The 200 ports from the base on belong to that SFU: its workers, then its pipes (base + 100 on).
 */
export async function freeMediaPorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 60) * 200;
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free media ports for an SFU');
}

/** Whether a port can be bound on the loopback for both TCP and UDP right now. */
async function portFree(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
  if (!tcp) return false;
  return new Promise<boolean>((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
  });
}

/** `nodeArgs` go to node itself (a benchmark's `--cpu-prof`). */
export async function startSignalingProcess(options: { natsUrl: string; replicaId?: string; grpcTls?: boolean; env?: Record<string, string>; nodeArgs?: readonly string[] }) {
  return retryOnPortClash(async () => {
    const port = await freePort();
    const opsPort = await freePort();
    const env: Record<string, string> = {
      ...natsEnvFor(options.natsUrl, 'signaling'),
      SIGNALING_HOST: '127.0.0.1',
      SIGNALING_PORT: String(port),
      SIGNALING_OPS_PORT: String(opsPort),
      SIGNALING_REPLICA_ID: options.replicaId ?? `sig-test-${port}`,
      ...tlsUnless(options.grpcTls, 'signaling'),
      ...options.env,
    };
    const proc = await ServiceProcess.start('signaling', env, `http://127.0.0.1:${opsPort}/readyz`, undefined, options.nodeArgs);
    return Object.assign(proc, { port, opsPort, url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/ws` });
  });
}

export async function startRecorderProcess(options: { natsUrl: string; workDir: string; nodeId?: string; grpcTls?: boolean; env?: Record<string, string> }) {
  return retryOnPortClash(async () => {
    const grpcPort = await freePort();
    const opsPort = await freePort();
    const env: Record<string, string> = {
      ...natsEnvFor(options.natsUrl, 'recorder'),
      RECORDER_NODE_ID: options.nodeId ?? `rec-test-${grpcPort}`,
      RECORDER_GRPC_HOST: '127.0.0.1',
      RECORDER_GRPC_PORT: String(grpcPort),
      RECORDER_OPS_PORT: String(opsPort),
      RECORDER_WORK_DIR: options.workDir,
      ...tlsUnless(options.grpcTls, 'recorder'),
      ...options.env,
    };
    const proc = await ServiceProcess.start('recorder', env, `http://127.0.0.1:${opsPort}/readyz`);
    return Object.assign(proc, { grpcPort, opsPort, grpcAddress: `127.0.0.1:${grpcPort}` });
  });
}

/** `nodeArgs` go to node itself (a benchmark's `--cpu-prof`). */
export async function startCrmSyncProcess(options: { natsUrl: string; nodeId?: string; env?: Record<string, string>; nodeArgs?: readonly string[] }) {
  return retryOnPortClash(async () => {
    const port = await freePort();
    const opsPort = await freePort();
    const env: Record<string, string> = {
      ...natsEnvFor(options.natsUrl, 'crm-sync'),
      CRM_SYNC_NODE_ID: options.nodeId ?? `crm-test-${port}`,
      CRM_SYNC_HOST: '127.0.0.1',
      CRM_SYNC_PORT: String(port),
      CRM_SYNC_OPS_PORT: String(opsPort),
      // The contract servers and the customer's PostgreSQL run on this machine.
      CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS: 'true',
      ...options.env,
    };
    const proc = await ServiceProcess.start('crm-sync', env, `http://127.0.0.1:${opsPort}/readyz`, 30_000, options.nodeArgs);
    return Object.assign(proc, { port, opsPort, url: `http://127.0.0.1:${port}` });
  });
}

export async function startRoutingProcess(options: { natsUrl: string; replicaId?: string; env?: Record<string, string>; nodeArgs?: readonly string[] }) {
  return retryOnPortClash(async () => {
    const port = await freePort();
    const opsPort = await freePort();
    const env: Record<string, string> = {
      ...natsEnvFor(options.natsUrl, 'routing'),
      ROUTING_REPLICA_ID: options.replicaId ?? `routing-test-${opsPort}`,
      ROUTING_HOST: '127.0.0.1',
      ROUTING_PORT: String(port),
      ROUTING_OPS_PORT: String(opsPort),
      ...options.env,
    };
    const proc = await ServiceProcess.start('routing', env, `http://127.0.0.1:${opsPort}/readyz`, 30_000, options.nodeArgs);
    return Object.assign(proc, { port, opsPort, url: `http://127.0.0.1:${port}`, replicaId: env.ROUTING_REPLICA_ID });
  });
}

/**
 * Ports come from freePort(), which frees them before the service binds them: another process
 * can take one meanwhile. A start-up that failed on such a clash is tried again on new ports.
 */
async function retryOnPortClash<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      // Node says EADDRINUSE; the mediasoup worker says "address already in use".
      if (attempt >= 3 || !/EADDRINUSE|address already in use/i.test(String((error as Error)?.message ?? error))) throw error;
    }
  }
}
