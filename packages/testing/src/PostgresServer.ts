import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { endProcess, freePort, waitForPort } from './NatsServer.js';

/** Debian's PostgreSQL binaries (the newest installed major version). */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error('PostgreSQL is not installed (apt-get install postgresql); `make setup` installs it');
  return join(root, versions[0]!, 'bin');
}

/**
 * A real PostgreSQL server in a throw-away data folder on a free port, for tests. PostgreSQL
 * refuses to run as root, so as root it runs as the `postgres` user.
 */
export class PostgresServer {
  private constructor(
    readonly port: number,
    private readonly process: ChildProcess,
    private readonly dataDir: string,
  ) {}

  /** Superuser password; every TCP connection authenticates with SCRAM, as a real server's would. */
  static readonly superuserPassword = 'gateway-test-superuser';

  /** Superuser connection string. */
  get url(): string {
    return `postgres://postgres:${PostgresServer.superuserPassword}@127.0.0.1:${this.port}/postgres`;
  }

  static async start(): Promise<PostgresServer> {
    const bin = binDir();
    const asRoot = userInfo().uid === 0;
    const base = mkdtempSync(join(tmpdir(), 'gateway-pg-'));
    const dataDir = join(base, 'data');
    // setpriv execs the server itself (runuser would stay in between and not pass signals on).
    const run = (command: string, args: string[]) => (asRoot ? (['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', command, ...args]] as const) : ([command, args] as const));
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(base, uid, gid);
      chmodSync(base, 0o700);
    }
    const passwordFile = join(base, 'superuser-password');
    writeFileSync(passwordFile, PostgresServer.superuserPassword, { mode: 0o600 });
    if (asRoot) chownSync(passwordFile, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
    const [initCommand, initArgs] = run(join(bin, 'initdb'), [
      '-D',
      dataDir,
      '-U',
      'postgres',
      `--pwfile=${passwordFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '--encoding=UTF8',
      '--no-sync',
    ]);
    execFileSync(initCommand, [...initArgs], { stdio: 'pipe' });
    const port = await freePort();
    const [command, args] = run(join(bin, 'postgres'), ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${base}`, '-c', 'fsync=off']);
    const child = spawn(command, [...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const server = new PostgresServer(port, child, base);
    await waitForPort(port, 20_000).catch((error: unknown) => {
      child.kill('SIGKILL');
      throw new Error(`postgres did not start: ${String(error)}\n${stderr}`);
    });
    return server;
  }

  /** A login role and a database it owns, as a customer's DBA would give crm-sync. */
  createDatabase(name: string, owner: string, password: string): void {
    const psql = (sql: string) =>
      execFileSync('psql', ['-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
        env: { ...process.env, PGPASSWORD: PostgresServer.superuserPassword },
        stdio: 'pipe',
      });
    psql(`create role "${owner}" login password '${password.replace(/'/g, "''")}'`);
    psql(`create database "${name}" owner "${owner}"`);
  }

  async stop(): Promise<void> {
    // Fast shutdown: disconnect clients, stop at once.
    await endProcess(this.process, 'SIGINT');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
