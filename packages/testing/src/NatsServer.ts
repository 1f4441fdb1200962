import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A real nats-server with JetStream on a free port and a throw-away store, for tests. */
export class NatsServer {
  private constructor(
    readonly port: number,
    private readonly process: ChildProcess,
    private readonly storeDir: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  static async start(options: { port?: number; storeDir?: string } = {}): Promise<NatsServer> {
    const port = options.port ?? (await freePort());
    const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'gateway-nats-'));
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const server = new NatsServer(port, child, storeDir);
    await waitForPort(port, 10_000).catch((error: unknown) => {
      child.kill('SIGKILL');
      throw new Error(`nats-server did not start: ${String(error)}\n${stderr}`);
    });
    return server;
  }

  /** Stops the server; `keepStore` lets a test restart it on the same data. */
  async stop(options: { keepStore?: boolean } = {}): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
      this.process.kill('SIGTERM');
      await exited;
    }
    if (!options.keepStore) rmSync(this.storeDir, { recursive: true, force: true });
  }

  /** Restarts on the same port and store (JetStream state survives). */
  async restart(): Promise<NatsServer> {
    await this.stop({ keepStore: true });
    return NatsServer.start({ port: this.port, storeDir: this.storeDir });
  }
}

/**
 * Three (or more) real nats-servers clustered with JetStream, as the Helm chart runs them, for
 * tests of replicated streams and of losing a server.
 */
export class NatsCluster {
  private constructor(
    readonly servers: Array<{ port: number; process: ChildProcess; storeDir: string }>,
  ) {}

  /** Every server's URL, comma-separated, as NATS_URL takes them. */
  get url(): string {
    return this.servers.map((s) => `nats://127.0.0.1:${s.port}`).join(',');
  }

  static async start(size = 3): Promise<NatsCluster> {
    const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), cluster: await freePort() })));
    const routes = ports.map((p) => `nats://127.0.0.1:${p.cluster}`).join(',');
    const servers = ports.map((p, i) => {
      const storeDir = mkdtempSync(join(tmpdir(), 'gateway-nats-cluster-'));
      const process = spawn(
        'nats-server',
        ['-a', '127.0.0.1', '-p', String(p.client), '-js', '-sd', storeDir, '-n', `n${i + 1}`, '--cluster_name', 'gateway', '--cluster', `nats://127.0.0.1:${p.cluster}`, '--routes', routes],
        { stdio: ['ignore', 'ignore', 'ignore'] },
      );
      return { port: p.client, process, storeDir };
    });
    const cluster = new NatsCluster(servers);
    await Promise.all(servers.map((s) => waitForPort(s.port, 10_000))).catch(async (error: unknown) => {
      await cluster.stop();
      throw new Error(`nats cluster did not start: ${String(error)}`);
    });
    return cluster;
  }

  /** Stops one server (as a node loss would), keeping the others. */
  async stopServer(index: number): Promise<void> {
    const server = this.servers[index]!;
    if (server.process.exitCode !== null || server.process.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => server.process.once('exit', () => resolve()));
    server.process.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    for (let i = 0; i < this.servers.length; i++) await this.stopServer(i);
    for (const s of this.servers) rmSync(s.storeDir, { recursive: true, force: true });
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, host);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not open after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls `check` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
