import { NatsServer, freePort, startSfuProcess, startSignalingProcess } from '@gateway/testing';

/**
 * nats-server, one SFU (one worker unless told) and one signaling process, as in `make up`.
 * `signalingNodeArgs` go to signaling's node (`--cpu-prof`). `natsMonitor` opens nats-server's monitoring endpoint (`monitorUrl`, /varz).
 */
export async function startStack(
  options: { workers?: number; sfuEnv?: Record<string, string>; signalingEnv?: Record<string, string>; signalingNodeArgs?: readonly string[]; natsMonitor?: boolean } = {},
) {
  const monitorPort = options.natsMonitor ? await freePort() : undefined;
  const nats = await NatsServer.start(monitorPort ? { monitorPort } : {});
  const sfu = await startSfuProcess({ natsUrl: nats.url, workers: options.workers ?? 1, env: { LOG_LEVEL: 'warn', ...options.sfuEnv } });
  const signaling = await startSignalingProcess({
    natsUrl: nats.url,
    nodeArgs: options.signalingNodeArgs,
    env: { LOG_LEVEL: 'warn', SIGNALING_RATE_LIMIT_PER_SECOND: '1000', SIGNALING_RATE_LIMIT_BURST: '1000', ...options.signalingEnv },
  });
  return {
    nats,
    monitorUrl: monitorPort ? `http://127.0.0.1:${monitorPort}` : undefined,
    sfu,
    signaling,
    async stop() {
      await signaling.stop();
      await sfu.stop();
      await nats.stop();
    },
  };
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
/** User and kernel CPU seconds of a process so far. */
export async function cpuTimes(pid: number): Promise<{ user: number; system: number }> {
  const { readFile } = await import('node:fs/promises');
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  // USER_HZ is 100 on Linux.
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** Children of a process (the SFU's mediasoup workers). */
export async function childPids(pid: number): Promise<number[]> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.trim().split(/\s+/).filter(Boolean).map(Number);
}

export async function rssBytes(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const match = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}
