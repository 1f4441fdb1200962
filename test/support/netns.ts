import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { launchChromium } from './browser.js';
import { must, sh } from './shell.js';

/**
 * Network namespaces whose every packet to and from the host crosses a link we shape: a
 * bottleneck rate, random loss, delay and jitter, per direction, changed while a call runs. A
 * browser launched in one sees that network; the services stay on the host.
 *
 * The link is test/support/link-emulator.py between two TUN devices (one moved into the
 * namespace), not tc netem: kernels built without sch_netem have no delay or random loss, and
 * one implementation behaves the same on every machine. It needs root (CAP_NET_ADMIN), iproute2
 * and python3.
 *
 * Names are `gwt<pid>-<n>` (host device `…h`, namespace device `…n`: at most 15 characters):
 * whatever a test process that died left behind is recognised by its dead pid and removed by
 * the next one, without touching the namespaces of a run still going.
 */

/** What one direction of the link does to packets; every field left out is off. */
export interface LinkShaping {
  /** Bottleneck rate; packets queue behind it. */
  rateKbit?: number;
  /** Longest the bottleneck's queue holds a packet before dropping new ones (default 200 ms). */
  queueMs?: number;
  /** Share of packets dropped at random. */
  lossPercent?: number;
  /** Added one-way delay. */
  delayMs?: number;
  /** The delay varies by up to this much either way (without reordering packets). */
  jitterMs?: number;
}

/** `down`: what the namespace receives; `up`: what it sends. */
export type LinkDirection = 'down' | 'up' | 'both';

/** What a direction of the link did so far, in packets. */
export interface LinkCounters {
  passed: number;
  /** Dropped at random (lossPercent). */
  lost: number;
  /** Dropped because the bottleneck's queue was full. */
  overflowed: number;
}

const NAME_PREFIX = 'gwt';
const emulatorScript = fileURLToPath(new URL('./link-emulator.py', import.meta.url));
let created = 0;
/** Runs `ip` with these arguments; throws with what it printed when it fails. */
const ip = (...args: string[]) => must('ip', args, os.tmpdir());
const open = new Set<NetworkNamespace>();

/** Why shaped networks cannot be made on this machine, or undefined when they can. */
export async function shapedNetworkUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'root, to create network namespaces (CAP_NET_ADMIN)';
  if (!(await sh('ip', ['netns', 'list'], os.tmpdir())).ok) return 'iproute2 (`ip netns`)';
  if (!(await sh('python3', ['--version'], os.tmpdir())).ok) return 'python3, which runs the link emulator';
  return undefined;
}

export class NetworkNamespace {
  private closing: Promise<void> | undefined;
  private readonly browsers: Browser[] = [];
  private nextCommand = 1;
  private readonly replies = new Map<number, (reply: Record<string, unknown>) => void>();
  /** Settles when the emulator has made both devices (or exited before). */
  private readonly ready: Promise<void>;

  private constructor(
    /** The namespace's name (`ip netns exec <name> …`). */
    readonly name: string,
    /** The host's end of the link: an address of the host every namespace reaches. */
    readonly hostAddress: string,
    /** The namespace's own address. */
    readonly address: string,
    private readonly emulator: ChildProcess,
    private readonly scratch: string,
  ) {
    this.ready = new Promise((resolve, reject) => {
      emulator.once('error', (error) => reject(new Error('the link emulator did not start', { cause: error })));
      emulator.once('exit', (code) => reject(new Error(`the link emulator exited with ${code} before its devices were up`)));
      createInterface({ input: emulator.stdout! }).on('line', (line) => {
        if (line === 'ready') return resolve();
        const reply = JSON.parse(line) as { id: number };
        this.replies.get(reply.id)?.(reply);
        this.replies.delete(reply.id);
      });
    });
  }

  /**
   * A namespace linked to the host, unshaped, with loopback up and its default route through
   * the host's end. Remove leftovers of dead runs first (`removeLeftoverNamespaces`).
   */
  static async create(): Promise<NetworkNamespace> {
    const name = `${NAME_PREFIX}${process.pid}-${created++}`;
    const [hostDevice, namespaceDevice] = [`${name}h`, `${name}n`];
    const [hostAddress, address] = await freeSubnet();
    await ip('netns', 'add', name);
    const scratch = mkdtempSync(path.join(os.tmpdir(), `${name}-`));
    // The emulator outlives nothing: it exits when our end of its stdin closes.
    const emulator = spawn('python3', [emulatorScript, hostDevice, namespaceDevice], { stdio: ['pipe', 'pipe', 'inherit'] });
    const namespace = new NetworkNamespace(name, hostAddress, address, emulator, scratch);
    open.add(namespace);
    try {
      await namespace.ready;
      await ip('link', 'set', namespaceDevice, 'netns', name);
      await ip('addr', 'add', `${hostAddress}/30`, 'dev', hostDevice);
      await ip('link', 'set', hostDevice, 'up');
      await ip('-n', name, 'addr', 'add', `${address}/30`, 'dev', namespaceDevice);
      await ip('-n', name, 'link', 'set', namespaceDevice, 'up');
      await ip('-n', name, 'link', 'set', 'lo', 'up');
      await ip('-n', name, 'route', 'add', 'default', 'via', hostAddress);
    } catch (error) {
      await namespace.close();
      throw error;
    }
    return namespace;
  }

  /** Replaces the shaping of `direction` (both directions alike with 'both'); `{}` clears it. */
  async shape(direction: LinkDirection, shaping: LinkShaping): Promise<void> {
    await this.command({ shape: { direction, ...shaping } });
  }

  /** What each direction of the link passed and dropped so far. */
  async counters(): Promise<Record<'down' | 'up', LinkCounters>> {
    return (await this.command({ counters: true })).counters as Record<'down' | 'up', LinkCounters>;
  }

  /**
   * Headless Chromium (the flags of launchChromium) running inside the namespace. Its pages
   * load from the host's address over plain HTTP: `secureOrigins` (e.g. signaling's
   * `http://<hostAddress>:<port>`) are treated as secure, so that camera and microphone work.
   */
  async launchChromium(extraArgs: string[] = [], secureOrigins: string[] = []): Promise<Browser> {
    const executable = path.join(this.scratch, 'chromium-in-namespace');
    writeFileSync(executable, `#!/bin/sh\nexec ip netns exec ${this.name} ${process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'} "$@"\n`);
    chmodSync(executable, 0o755);
    const origins = secureOrigins.length ? [`--unsafely-treat-insecure-origin-as-secure=${secureOrigins.join(',')}`] : [];
    const browser = await launchChromium([...origins, ...extraArgs], { executablePath: executable });
    this.browsers.push(browser);
    return browser;
  }

  /**
   * Closes the browsers launched here, ends what still runs inside, stops the link and removes
   * the namespace. Idempotent; safe after a failed create.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const browser of this.browsers.splice(0)) await browser.close().catch(() => undefined);
      killProcessesIn(this.name);
      this.emulator.stdin?.end();
      if (this.emulator.exitCode === null && this.emulator.signalCode === null) {
        const exited = new Promise((resolve) => this.emulator.once('exit', resolve));
        const timer = setTimeout(() => this.emulator.kill('SIGKILL'), 2_000);
        await exited;
        clearTimeout(timer);
      }
      await sh('ip', ['netns', 'del', this.name], os.tmpdir());
      // The TUN devices go with the emulator; this is for one left by an emulator killed mid-way.
      await sh('ip', ['link', 'del', `${this.name}h`], os.tmpdir());
      rmSync(this.scratch, { recursive: true, force: true });
      open.delete(this);
    })();
    return this.closing;
  }

  private command(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.closing) return Promise.reject(new Error(`namespace ${this.name} is closed`));
    const id = this.nextCommand++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the link emulator of ${this.name} did not answer`)), 5_000);
      this.replies.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.error) reject(new Error(`the link emulator refused ${JSON.stringify(body)}: ${String(reply.error)}`));
        else resolve(reply);
      });
      this.emulator.stdin!.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }
}

/**
 * Removes the namespaces and devices of test processes that are gone (a crash, a kill): ours
 * by their name, theirs by the pid in it. Those of live processes are left alone.
 */
export async function removeLeftoverNamespaces(): Promise<void> {
  const namespaces = (await sh('ip', ['netns', 'list'], os.tmpdir())).stdout.split('\n').map((line) => line.split(' ')[0] ?? '');
  const devices = (await sh('ip', ['-o', 'link', 'show'], os.tmpdir())).stdout.split('\n').map((line) => (line.split(': ')[1] ?? '').split('@')[0] ?? '');
  for (const namespace of namespaces.filter(leftOver)) {
    killProcessesIn(namespace);
    await sh('ip', ['netns', 'del', namespace], os.tmpdir());
  }
  for (const device of devices.filter(leftOver)) await sh('ip', ['link', 'del', device], os.tmpdir());
}

function leftOver(name: string): boolean {
  const match = new RegExp(`^${NAME_PREFIX}(\\d+)-\\d+[hn]?$`).exec(name);
  return match !== null && !alive(Number(match[1]));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills, by pid, what runs inside the namespace (a browser whose close failed). */
function killProcessesIn(namespace: string): void {
  let pids: string[];
  try {
    pids = execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter(Boolean);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** A /30 of 10.231.0.0/16 that no address of the host is in: [host's end, namespace's end]. */
async function freeSubnet(): Promise<[string, string]> {
  const used = (await ip('-4', '-o', 'addr', 'show')).match(/inet 10\.231\.\d+\.\d+/g) ?? [];
  for (let attempt = 0; attempt < 100; attempt++) {
    const third = Math.floor(Math.random() * 256);
    const base = Math.floor(Math.random() * 64) * 4;
    const host = `10.231.${third}.${base + 1}`;
    const inside = `10.231.${third}.${base + 2}`;
    if (!used.some((entry) => entry.endsWith(` ${host}`) || entry.endsWith(` ${inside}`))) return [host, inside];
  }
  throw new Error('no free /30 in 10.231.0.0/16');
}

// A test process that ends without its afterAll (an uncaught error, a timeout's exit) still
// removes its namespaces; a killed one leaves them to removeLeftoverNamespaces.
process.once('exit', () => {
  for (const namespace of open) {
    killProcessesIn(namespace.name);
    try {
      execFileSync('ip', ['netns', 'del', namespace.name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});
