import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** CFS period of a slice: short, so a throttled process waits at most a few milliseconds at a time. */
const PERIOD_US = 10_000;
const V1_CPU = '/sys/fs/cgroup/cpu';
const V2_ROOT = '/sys/fs/cgroup';

/** A share of a core from the environment variable `variable`: undefined when unset, else checked. */
export function cpuShareFromEnv(variable: string): number | undefined {
  const value = process.env[variable];
  if (!value) return undefined;
  const share = Number(value);
  if (!(share > 0 && share <= 1)) throw new Error(`${variable} must be above 0 and at most 1, not ${value}`);
  return share;
}

/**
 * A share of one core for the processes put in it: a cgroup of its own with a CFS quota (cgroup
 * v1's cpu controller, or v2's cpu.max). A benchmark whose load generators cannot drive a whole
 * core's worth of work finds a server's own limit on a slice of a core instead. Needs root.
 */
export class CpuSlice {
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly parentProcs: string,
  ) {}

  /** A slice of `share` of a core (0 < share ≤ 1), named `name` (unique per run). */
  static create(name: string, share: number): CpuSlice {
    if (!(share > 0 && share <= 1)) throw new Error(`a CPU share must be above 0 and at most 1, not ${share}`);
    if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`a slice name is lower-case letters, digits and dashes: ${name}`);
    const quota = Math.round(share * PERIOD_US);
    if (existsSync(path.join(V1_CPU, 'cpu.cfs_quota_us'))) {
      const dir = path.join(V1_CPU, name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
      writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quota));
      return new CpuSlice(dir, path.join(V1_CPU, 'cgroup.procs'));
    }
    if (existsSync(path.join(V2_ROOT, 'cgroup.controllers'))) {
      // Enabled controllers are listed by name ("cpuset" is not "cpu").
      const enabled = readFileSync(path.join(V2_ROOT, 'cgroup.subtree_control'), 'utf8').split(/\s+/);
      if (!enabled.includes('cpu')) writeFileSync(path.join(V2_ROOT, 'cgroup.subtree_control'), '+cpu');
      const dir = path.join(V2_ROOT, name);
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
      return new CpuSlice(dir, path.join(V2_ROOT, 'cgroup.procs'));
    }
    throw new Error('no cgroup cpu controller at /sys/fs/cgroup: a CPU slice needs cgroup v1 cpu or v2 cpu.max');
  }

  /** Puts the process `pid` (all its threads) in the slice. */
  add(pid: number): void {
    writeFileSync(path.join(this.dir, 'cgroup.procs'), String(pid));
  }

  /** Throttled periods and time so far: how often the quota held the processes back. */
  throttled(): { periods: number; throttledPeriods: number; throttledMs: number } {
    const stat = Object.fromEntries(
      readFileSync(path.join(this.dir, 'cpu.stat'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(' ') as [string, string]),
    );
    const throttledMs = stat.throttled_time !== undefined ? Number(stat.throttled_time) / 1e6 : Number(stat.throttled_usec ?? 0) / 1e3;
    return { periods: Number(stat.nr_periods ?? 0), throttledPeriods: Number(stat.nr_throttled ?? 0), throttledMs };
  }

  /** Moves what is left in the slice back to the root and removes it; closing twice does nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const left = readFileSync(path.join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    for (const pid of left) {
      try {
        writeFileSync(this.parentProcs, pid);
      } catch {
        // It ended meanwhile.
      }
    }
    rmdirSync(this.dir);
  }
}
