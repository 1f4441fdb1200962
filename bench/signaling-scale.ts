/**
 * Signaling and NATS at scale: N participants join one signaling process over WebSocket (raw
 * `ws` clients sending the JSON frames, spread over load-generator child processes), then stay.
 * For each size and room layout (two per room; rooms of 50), on a fresh stack:
 * - `fill`: the N joins as fast as the server takes them (BENCH_CONCURRENCY joins in flight);
 * - `idle`: the N participants held BENCH_IDLE_SECONDS doing nothing: signaling's and
 *   nats-server's CPU in % of a core, signaling's resident memory per participant;
 * - `steady`: BENCH_RATE joins/s for BENCH_STEADY_SECONDS more, on top of the N already there.
 * A join's time runs from opening the socket to the join's response. CPU per join is the
 * process's user+system time over the phase divided by its joins (background work of the phase
 * included). NATS operations per join are nats-server's /varz `in_msgs` over the phase divided
 * by its joins: every message a client published, JetStream and KV requests included (the SFU's
 * heartbeats too, a few per second).
 *
 * Sizes: BENCH_SIZES (default 1000,5000); BENCH_LARGE=1 adds 20000. BENCH_CPU_PROF=<dir> writes
 * signaling's CPU profile there when it stops (summarised by bench/cpuprofile-top.ts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import WebSocket from 'ws';
import { demoToken } from '../test/support/tokens.js';
import { cpuTimes, percentile, rssBytes, startStack } from './stack.js';

/** Clients one load-generator process holds at most (its file descriptors). */
const CLIENTS_PER_WORKER = 5_000;

interface Slot {
  room: string;
  identity: string;
  role: 'agent' | 'end_user';
}
type Command = { kind: 'prepare'; slots: Slot[] } | { kind: 'join'; from: number; to: number; url: string; concurrency: number; perSecond: number } | { kind: 'close' };
type JoinResult = { latencies: number[]; failures: string[] };

/** A load generator: mints its participants' tokens, then joins them when told and keeps the sockets. */
function runWorker(): void {
  let slots: Slot[] = [];
  let tokens: string[] = [];
  const sockets: WebSocket[] = [];
  process.on('message', async (command: Command) => {
    if (command.kind === 'prepare') {
      slots = command.slots;
      tokens = await Promise.all(slots.map((slot) => demoToken({ ...slot, ttlSeconds: 3_600 })));
      process.send!({ kind: 'prepared' });
    } else if (command.kind === 'join') {
      const result: JoinResult = { latencies: [], failures: [] };
      const started = performance.now();
      let next = command.from;
      const one = async (index: number) => {
        if (command.perSecond > 0) {
          const due = started + ((index - command.from) * 1000) / command.perSecond;
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        const t0 = performance.now();
        try {
          sockets.push(await joinOnce(command.url, tokens[index]!));
          result.latencies.push(performance.now() - t0);
        } catch (error) {
          result.failures.push(String((error as Error).message ?? error));
        }
      };
      const lanes = Array.from({ length: command.concurrency }, async () => {
        while (next < command.to) await one(next++);
      });
      await Promise.all(lanes);
      process.send!({ kind: 'joined', result });
    } else {
      for (const socket of sockets) socket.terminate();
      process.exit(0);
    }
  });
}

/** Opens a socket and joins; resolves with the socket once the join is answered. */
function joinOnce(url: string, token: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const fail = (why: string) => {
      ws.terminate();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail('no join response within 30 s'), 30_000);
    ws.once('error', (error) => fail(error.message));
    ws.once('open', () => ws.send(JSON.stringify({ id: 1, join: { token, protocolVersion: 1 } })));
    ws.on('message', (data) => {
      const text = data.toString();
      // Only the join's response matters here; notifications of the room are dropped unread.
      if (!text.startsWith('{"response"')) return;
      const response = JSON.parse(text).response;
      if (response.id !== 1) return;
      clearTimeout(timer);
      ws.removeAllListeners('message');
      ws.on('message', () => undefined);
      if (response.error) fail(`${response.error.code} ${response.error.message}`);
      else resolve(ws);
    });
  });
}

class Workers {
  private constructor(private readonly children: ChildProcess[]) {}

  static start(count: number): Workers {
    const file = new URL(import.meta.url).pathname;
    return new Workers(Array.from({ length: count }, () => fork(file, ['worker'], { execArgv: process.execArgv, stdio: 'inherit' })));
  }

  /** Hands each worker its share of the slots (worker w gets every slot i with i % count === w). */
  async prepare(slots: Slot[]): Promise<void> {
    await Promise.all(
      this.children.map((child, w) => {
        child.send({ kind: 'prepare', slots: slots.filter((_, i) => i % this.children.length === w) } satisfies Command);
        return this.reply(child, 'prepared');
      }),
    );
  }

  /** Joins the slots [from, to) of every worker's share; the concurrency and rate are the total's. */
  async join(url: string, from: number, to: number, concurrency: number, perSecond = 0): Promise<JoinResult> {
    const n = this.children.length;
    const results = await Promise.all(
      this.children.map((child, w) => {
        // This worker's slots among the global [from, to).
        const own = (i: number) => Math.floor((i - w + n - 1) / n);
        child.send({ kind: 'join', url, from: own(from), to: own(to), concurrency: Math.max(1, Math.round(concurrency / n)), perSecond: perSecond / n } satisfies Command);
        return this.reply<{ result: JoinResult }>(child, 'joined');
      }),
    );
    return { latencies: results.flatMap((r) => r.result.latencies), failures: results.flatMap((r) => r.result.failures) };
  }

  close(): void {
    for (const child of this.children) child.send({ kind: 'close' } satisfies Command);
  }

  private reply<T>(child: ChildProcess, kind: string): Promise<T> {
    return new Promise((resolve) => {
      const listener = (message: { kind: string }) => {
        if (message.kind !== kind) return;
        child.off('message', listener);
        resolve(message as T);
      };
      child.on('message', listener);
    });
  }
}

async function main(): Promise<void> {
  const sizes = (process.env.BENCH_SIZES ?? '1000,5000').split(',').map(Number);
  if (process.env.BENCH_LARGE === '1') sizes.push(20_000);
  const layouts = (process.env.BENCH_LAYOUTS ?? 'pairs,rooms50').split(',') as Array<'pairs' | 'rooms50'>;
  const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 64);
  const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
  const rate = Number(process.env.BENCH_RATE ?? 60);
  const steadySeconds = Number(process.env.BENCH_STEADY_SECONDS ?? 10);
  for (const layout of layouts) for (const size of sizes) await run(size, layout, { concurrency, idleSeconds, rate, steadySeconds });
}

async function run(size: number, layout: 'pairs' | 'rooms50', options: { concurrency: number; idleSeconds: number; rate: number; steadySeconds: number }): Promise<void> {
  const perRoom = layout === 'pairs' ? 2 : 50;
  const steady = options.rate * options.steadySeconds;
  const warm = 50;
  const total = warm + size + steady;
  const tag = `${layout}-${Date.now().toString(36)}`;
  // Warm-up rooms first, then the fill's, then the steady phase's (rooms of the same layout).
  const slots: Slot[] = Array.from({ length: total }, (_, i) => ({
    room: `bench-${tag}-${Math.floor(i / perRoom)}`,
    identity: `user-${i}`,
    role: i % perRoom === 0 ? 'agent' : 'end_user',
  }));
  const profileDir = process.env.BENCH_CPU_PROF;
  const stack = await startStack({ natsMonitor: true, signalingNodeArgs: profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [] });
  let workers: Workers | undefined;
  try {
    workers = Workers.start(Math.ceil(total / CLIENTS_PER_WORKER));
    await workers.prepare(slots);
    const signalingPid = stack.signaling.pid;
    const natsPid = stack.nats.pid;
    const inMsgs = async () => ((await (await fetch(`${stack.monitorUrl}/varz`)).json()) as { in_msgs: number }).in_msgs;
    const cpu = async (pid: number) => {
      const t = await cpuTimes(pid);
      return t.user + t.system;
    };
    const snapshot = async () => ({ at: performance.now(), signaling: await cpu(signalingPid), nats: await cpu(natsPid), msgs: await inMsgs() });
    const phase = (before: Awaited<ReturnType<typeof snapshot>>, after: Awaited<ReturnType<typeof snapshot>>, joins: number) => ({
      seconds: +((after.at - before.at) / 1000).toFixed(1),
      signaling_cpu_ms_per_join: +(((after.signaling - before.signaling) * 1000) / joins).toFixed(2),
      nats_cpu_ms_per_join: +(((after.nats - before.nats) * 1000) / joins).toFixed(2),
      nats_in_msgs_per_join: +((after.msgs - before.msgs) / joins).toFixed(1),
    });
    const latencies = (result: JoinResult) => ({
      p50_ms: Math.round(percentile(result.latencies, 50)),
      p99_ms: Math.round(percentile(result.latencies, 99)),
      failures: result.failures.length,
      ...(result.failures.length > 0 ? { first_failure: result.failures[0] } : {}),
    });

    await workers.join(stack.signaling.wsUrl, 0, warm, 8);
    await new Promise((r) => setTimeout(r, 2_000));
    const rssBefore = await rssBytes(signalingPid);

    const fillStart = await snapshot();
    const fill = await workers.join(stack.signaling.wsUrl, warm, warm + size, options.concurrency);
    const fillEnd = await snapshot();
    const fillPhase = phase(fillStart, fillEnd, size);
    console.log(JSON.stringify({ benchmark: 'signaling_scale_fill', layout, participants: size, joins_per_second: Math.round(size / fillPhase.seconds), ...latencies(fill), ...fillPhase }));

    // Idle: what holding them costs, after the joins' own work settled.
    await new Promise((r) => setTimeout(r, 5_000));
    const idleStart = await snapshot();
    await new Promise((r) => setTimeout(r, options.idleSeconds * 1000));
    const idleEnd = await snapshot();
    const idleSeconds = (idleEnd.at - idleStart.at) / 1000;
    const rssAfter = await rssBytes(signalingPid);
    console.log(
      JSON.stringify({
        benchmark: 'signaling_scale_idle',
        layout,
        participants: size + warm,
        seconds: Math.round(idleSeconds),
        signaling_cpu_percent_of_core: +((100 * (idleEnd.signaling - idleStart.signaling)) / idleSeconds).toFixed(1),
        nats_cpu_percent_of_core: +((100 * (idleEnd.nats - idleStart.nats)) / idleSeconds).toFixed(1),
        nats_in_msgs_per_second: Math.round((idleEnd.msgs - idleStart.msgs) / idleSeconds),
        signaling_rss_mib: +(rssAfter / 2 ** 20).toFixed(1),
        signaling_kib_per_participant: +((rssAfter - rssBefore) / size / 1024).toFixed(1),
      }),
    );

    const steadyStart = await snapshot();
    const steadyResult = await workers.join(stack.signaling.wsUrl, warm + size, total, Math.max(options.concurrency, options.rate * 2), options.rate);
    const steadyEnd = await snapshot();
    const steadyPhase = phase(steadyStart, steadyEnd, steady);
    console.log(
      JSON.stringify({ benchmark: 'signaling_scale_steady', layout, already_joined: size + warm, joins_per_second_offered: options.rate, joins: steady, ...latencies(steadyResult), ...steadyPhase }),
    );
    // Failed joins: what signaling logged about them, once per message.
    const errors = stack.signaling.logs.split('\n').flatMap((line) => {
      try {
        const entry = JSON.parse(line) as { level: number; msg: string; err?: { message?: string } };
        return entry.level >= 50 ? [`${entry.msg}: ${entry.err?.message ?? ''}`] : [];
      } catch {
        return [];
      }
    });
    if (errors.length > 0) console.error([...new Set(errors)].slice(0, 5).join('\n'));
  } finally {
    workers?.close();
    await stack.stop();
  }
}

// Last, so that the classes above are initialised before either role runs.
if (process.argv[2] === 'worker') runWorker();
else await main();
