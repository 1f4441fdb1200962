import { Rng, nextFrame, validParams, type KnownIds } from './generators.js';
import { FuzzConnection } from './FuzzConnection.js';
import { tryForeignId, tryForgeries } from './forgeries.js';
import { emptyStats, type FuzzStats, type FuzzTarget } from './fuzzTypes.js';
import { fuzzHttp } from './httpFuzzer.js';

/**
 * A seeded protocol fuzzer for signaling, run against live replicas: many connections, each
 * sending valid, mutated and broken frames of every method (before and after joining), floods,
 * forged join tokens, spliced resume tokens and ids from other rooms, plus HTTP requests to every
 * route. After each batch a fresh client must join and answer within 5 s and /sdk.js must
 * answer 200 on every replica. A forged credential or a foreign id that is accepted is counted
 * as a failure, with what it was.
 */

export type { FuzzStats } from './fuzzTypes.js';

export interface FuzzOptions {
  seed: number;
  frames: number;
  httpRequests: number;
  /** Frames per batch; liveness is checked after each. */
  batchFrames?: number;
  /** Connections sending at once. */
  concurrency?: number;
  onBatch?: (stats: FuzzStats) => void | Promise<void>;
}

export async function fuzzSignaling(target: FuzzTarget, options: FuzzOptions): Promise<FuzzStats> {
  const rng = new Rng(options.seed);
  const stats = emptyStats(options.seed);
  const batchFrames = options.batchFrames ?? 2_000;
  const concurrency = options.concurrency ?? 6;
  const batches = Math.max(1, Math.ceil(options.frames / batchFrames));
  const httpPerBatch = Math.ceil(options.httpRequests / batches);
  let idCounter = 1;
  const nextId = () => (idCounter = (idCounter % 4_000_000_000) + 1);
  /** Ids seen in sessions, with their room, to try from other rooms. */
  const harvested: Array<{ room: string; ids: KnownIds }> = [];

  for (let batch = 0; batch < batches; batch++) {
    const batchEnd = Math.min(options.frames, stats.frames + batchFrames);
    const liveResumeTokens: Array<{ room: string; token: string }> = [];
    const remainingFrames = () => batchEnd - stats.frames;
    const worker = async (workerRng: Rng) => {
      while (remainingFrames() > 0) {
        const room = `fz-${workerRng.int(8)}`;
        let connection: FuzzConnection;
        try {
          connection = await FuzzConnection.open(workerRng.pick(target.wsUrls), stats);
        } catch {
          stats.livenessFailures.push('a WebSocket could not be opened');
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        const joinToken = await target.mint({ room, identity: `fuzz-${workerRng.int(1e6)}`, role: workerRng.chance(0.5) ? 'agent' : 'end_user' });
        let resumeToken = `demo.${room}.PA_none.secret`;
        if (workerRng.chance(0.7)) {
          const joined = await connection.request(nextId(), 'join', { token: joinToken, protocolVersion: 1 });
          if (joined.join) {
            resumeToken = joined.join.resumeToken;
            liveResumeTokens.push({ room, token: resumeToken });
            // Some ids to work with: transports, a track, a message.
            await connection.request(nextId(), 'createTransport', { direction: 'send' });
            const sent = await connection.request(nextId(), 'produce', validParams(workerRng, 'produce', connection.ids, { join: joinToken, resume: resumeToken }));
            if (sent.produce) await connection.request(nextId(), 'sendMessage', { text: 'hi', clientMessageId: `m${workerRng.int(1e9)}` });
            harvested.push({ room, ids: { ...connection.ids } });
            if (harvested.length > 200) harvested.shift();
          }
        }
        const flood = workerRng.chance(0.05);
        const count = flood ? 300 : 20 + workerRng.int(120);
        let sent = 0;
        for (let i = 0; i < count && !connection.closed && remainingFrames() > 0; i++) {
          const id = nextId();
          // Now and then a request that names an id of another room.
          const foreign = harvested.length > 0 && workerRng.chance(0.08) ? harvested[workerRng.int(harvested.length)]! : undefined;
          if (foreign && foreign.room !== room && (await tryForeignId(workerRng, connection, id, room, { join: joinToken, resume: resumeToken }, foreign, stats))) {
            sent++;
            continue;
          }
          const frame = nextFrame(workerRng, id, connection.ids, { join: joinToken, resume: resumeToken }, target.maxFrameBytes);
          connection.send(frame.data);
          sent++;
          stats.frames++;
          // Keep a few frames in flight, except in a flood.
          if (!flood) await connection.drain(sent, 16);
        }
        await connection.drain(sent, 0, flood ? 2_000 : 5_000);
        connection.end(workerRng, nextId);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(new Rng(options.seed * 7919 + batch * 131 + i))));

    await tryForgeries(rng, target, stats, liveResumeTokens, nextId);
    await fuzzHttp(
      rng,
      target,
      stats,
      httpPerBatch,
      liveResumeTokens.map((t) => t.token),
    );
    await checkLiveness(target, stats, nextId);
    stats.batches++;
    await options.onBatch?.(stats);
  }
  return stats;
}

/** After each batch: every replica lets a fresh client join and answer within 5 s, and serves /sdk.js. */
async function checkLiveness(target: FuzzTarget, stats: FuzzStats, nextId: () => number): Promise<void> {
  for (const [i, url] of target.wsUrls.entries()) {
    try {
      const connection = await FuzzConnection.open(url, stats);
      const token = await target.mint({ room: `live-${Date.now()}`, identity: 'probe', role: 'end_user' });
      const joined = await connection.request(nextId(), 'join', { token, protocolVersion: 1 }, 5_000);
      const pong = joined.join ? await connection.request(nextId(), 'ping', { clientTimeMs: Date.now() }, 5_000) : joined;
      if (!pong.ping) stats.livenessFailures.push(`replica ${i}: ${pong.error?.code ?? 'no pong'}`);
      await connection.request(nextId(), 'leave', {}, 2_000);
      connection.ws.terminate();
    } catch (error) {
      stats.livenessFailures.push(`replica ${i}: ${String(error)}`);
    }
  }
  for (const [i, base] of target.httpUrls.entries()) {
    const status = await fetch(`${base}/sdk.js`, { signal: AbortSignal.timeout(5_000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (status !== 200) stats.livenessFailures.push(`replica ${i}: /sdk.js answered ${status}`);
  }
}
