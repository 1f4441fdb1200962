import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, nkeyAuthenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { ensureNatsCredentials, inboxPrefixOf, natsIdentities, provisionJetStream, writeNatsServerConfig, type CatalogSettings, type NatsCredential, type NatsIdentity } from '@gateway/common';
import { testRunPki, type CertificatePair, type TestPki } from './pki.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Real nats-servers as production runs them: TLS for every client (which must present a
 * certificate of our CA), one nkey user per identity with the permissions of
 * packages/common/src/jetstream/access.ts, JetStream provisioned from the catalog by the admin
 * identity. Tests get each service's environment (`envFor`) and connections as any identity.
 */

/** Storage a test server's catalog shares out (the production default would not fit a test machine's disk several times over). */
export const testStorageBudgetBytes = 2 * 1024 ** 3;

/** One set of certificates and nkeys per test run (`testRunPki`), apart from the gRPC set. */
let material: { pki: TestPki; credentials: Record<NatsIdentity, NatsCredential> } | undefined;
function testMaterial() {
  if (!material) {
    const { pki } = testRunPki('nats');
    material = { pki, credentials: ensureNatsCredentials(join(pki.dir, 'nats')) };
  }
  return material;
}

const certificateOf = (pki: TestPki, identity: NatsIdentity): CertificatePair => (identity === 'admin' ? pki.admin : pki.services[identity]);

/** What a test server or cluster offers its tests. */
export abstract class NatsEndpoint {
  protected readonly violationLines: string[] = [];

  protected constructor(protected readonly material: { pki: TestPki; credentials: Record<NatsIdentity, NatsCredential> }) {}

  /** Every server's URL, comma-separated, as NATS_URL takes them. */
  abstract get url(): string;

  get pki(): TestPki {
    return this.material.pki;
  }

  /** The environment a service connects with as `identity`: NATS_URL, the CA, its nkey seed and client certificate. */
  envFor(identity: NatsIdentity): Record<string, string> {
    const certificate = certificateOf(this.material.pki, identity);
    return {
      NATS_URL: this.url,
      NATS_CA_FILE: this.material.pki.caFile,
      NATS_NKEY_SEED_FILE: this.material.credentials[identity].seedFile,
      NATS_TLS_CERT_FILE: certificate.certFile,
      NATS_TLS_KEY_FILE: certificate.keyFile,
    };
  }

  /** A connection as `identity` (admin: no limits, for tests that inspect or prepare streams and buckets). */
  async connect(identity: NatsIdentity = 'admin', options: Partial<NodeConnectionOptions> = {}): Promise<NatsConnection> {
    const certificate = certificateOf(this.material.pki, identity);
    return connect({
      servers: this.url.split(','),
      name: `test-${identity}`,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(this.material.credentials[identity].seedFile, 'utf8').trim())),
      inboxPrefix: inboxPrefixOf(identity),
      tls: { caFile: this.material.pki.caFile, certFile: certificate.certFile, keyFile: certificate.keyFile },
      ...options,
    });
  }

  /** The server's log lines of refused publishes and subscriptions, with the identity named. */
  get violations(): string[] {
    const names = new Map(natsIdentities.map((identity) => [this.material.credentials[identity].publicKey, identity]));
    return this.violationLines.map((line) => line.replace(/Nkey "(U[A-Z0-9]+)"/, (_whole, key: string) => `identity ${names.get(key) ?? key}`));
  }

  /** Tests that do not expect refusals see them in their output: a missing permission shows up as a timeout or a failed request otherwise. */
  protected reportViolations(): void {
    const lines = this.violations;
    if (lines.length > 0 && !this.expectsViolations) process.stderr.write(`nats-server refused ${lines.length} operation(s):\n  ${lines.slice(-20).join('\n  ')}\n`);
  }

  /** Set by tests that provoke refusals on purpose. */
  expectsViolations = false;

  protected collectViolations(child: ChildProcess): void {
    let pending = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString()).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.includes('Violation')) this.violationLines.push(line);
      if (this.violationLines.length > 1000) this.violationLines.splice(0, this.violationLines.length - 1000);
    });
  }

  /** Creates or updates every stream, bucket and object store of the catalog, as the admin identity. */
  async provision(settings: Partial<CatalogSettings> = {}): Promise<void> {
    const nc = await this.connect('admin');
    try {
      const full: CatalogSettings = { replicas: 1, budgetBytes: testStorageBudgetBytes, limits: {}, ...settings };
      await waitFor(() => provisionJetStream(nc, full).then(() => true), 30_000, 'JetStream provisioned');
    } finally {
      await nc.close();
    }
  }

  /**
   * Runs the provisioning step as Kubernetes and `make up` do (its own process, the admin's
   * credentials from the environment); resolves with its output once it exits 0.
   */
  async runProvisioning(env: Record<string, string> = {}): Promise<string> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'packages/common/src/jetstream/main.ts'], {
      cwd: repoRoot,
      env: { ...process.env, NATS_STORAGE_BUDGET: String(testStorageBudgetBytes), ...this.envFor('admin'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`provisioning exited with ${code}:\n${output.slice(-4000)}`);
    return output;
  }
}

/** Endpoints by URL, so a service started with only a NATS URL gets its credentials too. */
const endpoints = new Map<string, NatsEndpoint>();

/** The environment `identity` connects with to the test server(s) at `url` (just NATS_URL for a server the harness did not start). */
export function natsEnvFor(url: string, identity: NatsIdentity): Record<string, string> {
  return endpoints.get(url)?.envFor(identity) ?? { NATS_URL: url };
}

/** A real nats-server with JetStream on a free port and a throw-away store, for tests. */
export class NatsServer extends NatsEndpoint {
  private constructor(
    readonly port: number,
    private readonly process: ChildProcess,
    private readonly storeDir: string,
    material: { pki: TestPki; credentials: Record<NatsIdentity, NatsCredential> },
  ) {
    super(material);
  }

  get url(): string {
    return `tls://127.0.0.1:${this.port}`;
  }

  /** The server's process id (benchmarks read its CPU time). */
  get pid(): number {
    return this.process.pid ?? -1;
  }

  /**
   * `provision: false` leaves JetStream empty (a test of provisioning itself); `monitorPort`
   * opens nats-server's monitoring endpoint (/varz) on 127.0.0.1.
   */
  static async start(options: { port?: number; storeDir?: string; provision?: boolean; monitorPort?: number } = {}): Promise<NatsServer> {
    const port = options.port ?? (await freePort());
    const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'gateway-nats-'));
    const shared = testMaterial();
    const configFile = join(storeDir, 'nats-server.conf');
    writeNatsServerConfig(configFile, {
      host: '127.0.0.1',
      port,
      storeDir: join(storeDir, 'js'),
      tls: { certFile: shared.pki.nats.certFile, keyFile: shared.pki.nats.keyFile, caFile: shared.pki.caFile },
      publicKeys: Object.fromEntries(natsIdentities.map((identity) => [identity, shared.credentials[identity].publicKey])) as Record<NatsIdentity, string>,
      ...(options.monitorPort ? { monitorPort: options.monitorPort } : {}),
    });
    const child = spawn('nats-server', ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const collect = (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.length > 20_000) child.stderr?.off('data', collect);
    };
    child.stderr?.on('data', collect);
    const server = new NatsServer(port, child, storeDir, shared);
    server.collectViolations(child);
    await waitForPort(port, 10_000).catch((error: unknown) => {
      child.kill('SIGKILL');
      throw new Error(`nats-server did not start: ${String(error)}\n${stderr}`);
    });
    endpoints.set(server.url, server);
    if (options.provision !== false) await server.provision();
    return server;
  }

  /** Stops the server; `keepStore` lets a test restart it on the same data. */
  async stop(options: { keepStore?: boolean } = {}): Promise<void> {
    this.reportViolations();
    await endProcess(this.process, 'SIGTERM');
    if (!options.keepStore) {
      rmSync(this.storeDir, { recursive: true, force: true });
      if (endpoints.get(this.url) === this) endpoints.delete(this.url);
    }
  }

  /** Restarts on the same port and store (JetStream state survives). */
  async restart(): Promise<NatsServer> {
    await this.stop({ keepStore: true });
    return NatsServer.start({ port: this.port, storeDir: this.storeDir, provision: false });
  }
}

/**
 * Three (or more) real nats-servers clustered with JetStream, as the Helm chart runs them, for
 * tests of replicated streams and of losing a server.
 */
export class NatsCluster extends NatsEndpoint {
  private constructor(
    readonly servers: Array<{ port: number; process: ChildProcess; storeDir: string }>,
    material: { pki: TestPki; credentials: Record<NatsIdentity, NatsCredential> },
  ) {
    super(material);
  }

  /** Every server's URL, comma-separated, as NATS_URL takes them. */
  get url(): string {
    return this.servers.map((s) => `tls://127.0.0.1:${s.port}`).join(',');
  }

  /** Provisioned with one copy of each unless `provision` says otherwise (`false`: not at all). */
  static async start(size = 3, options: { provision?: Partial<CatalogSettings> | false } = {}): Promise<NatsCluster> {
    const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), cluster: await freePort() })));
    const routes = ports.map((p) => `nats://127.0.0.1:${p.cluster}`);
    const shared = testMaterial();
    const servers = ports.map((p, i) => {
      const storeDir = mkdtempSync(join(tmpdir(), 'gateway-nats-cluster-'));
      const configFile = join(storeDir, 'nats-server.conf');
      writeNatsServerConfig(configFile, {
        serverName: `n${i + 1}`,
        host: '127.0.0.1',
        port: p.client,
        storeDir: join(storeDir, 'js'),
        tls: { certFile: shared.pki.nats.certFile, keyFile: shared.pki.nats.keyFile, caFile: shared.pki.caFile },
        publicKeys: Object.fromEntries(natsIdentities.map((identity) => [identity, shared.credentials[identity].publicKey])) as Record<NatsIdentity, string>,
        cluster: { name: 'gateway', host: '127.0.0.1', port: p.cluster, routes },
      });
      const process = spawn('nats-server', ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
      return { port: p.client, process, storeDir };
    });
    const cluster = new NatsCluster(servers, shared);
    for (const s of servers) cluster.collectViolations(s.process);
    await Promise.all(servers.map((s) => waitForPort(s.port, 10_000))).catch(async (error: unknown) => {
      await cluster.stop();
      throw new Error(`nats cluster did not start: ${String(error)}`);
    });
    endpoints.set(cluster.url, cluster);
    if (options.provision !== false) await cluster.provision(options.provision ?? {});
    return cluster;
  }

  /** Stops one server (as a node loss would), keeping the others. */
  async stopServer(index: number): Promise<void> {
    await endProcess(this.servers[index]!.process, 'SIGKILL');
  }

  async stop(): Promise<void> {
    this.reportViolations();
    for (let i = 0; i < this.servers.length; i++) await this.stopServer(i);
    for (const s of this.servers) rmSync(s.storeDir, { recursive: true, force: true });
    if (endpoints.get(this.url) === this) endpoints.delete(this.url);
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

/** Signals a child process and waits until it has exited; nothing when it already has (safe to repeat). */
export async function endProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
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
