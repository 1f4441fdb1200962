/**
 * `make fuzz`: the long seeded fuzzer run against a running `make up` (two signaling replicas).
 * Prints one JSON line of figures: frames and HTTP requests sent, processes lost, liveness
 * failures, forged credentials and foreign ids accepted, signaling RSS before and after.
 * Exits 1 when anything was lost, failed or accepted.
 *
 *   FUZZ_SEED, FUZZ_FRAMES (1,000,000), FUZZ_HTTP_REQUESTS (100,000),
 *   FUZZ_SIGNALING (http://127.0.0.1:8080,http://127.0.0.1:8081),
 *   FUZZ_OPS (every service's ops port: 9100,9104,9101,9102,9103)
 */
import { DEMO_TENANT } from '@gateway/common';
import { mintJoinToken } from '../../services/signaling/src/auth/tokens.js';
import { GLOBEX_TENANT } from '../support/tokens.js';
import { metricValue } from '../support/metrics.js';
import { fuzzSignaling } from './signalingFuzzer.js';

const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000_007);
const frames = Number(process.env.FUZZ_FRAMES ?? 1_000_000);
const httpRequests = Number(process.env.FUZZ_HTTP_REQUESTS ?? 100_000);
const signaling = (process.env.FUZZ_SIGNALING ?? 'http://127.0.0.1:8080,http://127.0.0.1:8081').split(',');
const signalingOps = (process.env.FUZZ_SIGNALING_OPS ?? '9100,9104').split(',').map(Number);
const allOps = (process.env.FUZZ_OPS ?? '9100,9104,9101,9102,9103').split(',').map(Number);

/** One metric's value from a service's /metrics (prom-client's process figures); undefined when the service does not answer. */
const metric = (port: number, name: string) => metricValue(port, name).catch(() => undefined);

const startTimes = async () => Promise.all(allOps.map((port) => metric(port, 'gateway_process_start_time_seconds')));
const rssMiB = async () => Promise.all(signalingOps.map(async (port) => Math.round(((await metric(port, 'gateway_process_resident_memory_bytes')) ?? 0) / 1048576)));

const startedBefore = await startTimes();
if (startedBefore.some((t) => t === undefined)) {
  console.error(`not every service answers on its ops port (${allOps.join(', ')}); start the system with: SIGNALING_REPLICAS=2 make up`);
  process.exit(2);
}
const rssBefore = await rssMiB();
const began = Date.now();
const stats = await fuzzSignaling(
  {
    wsUrls: signaling.map((u) => `${u.replace(/^http/, 'ws')}/ws`),
    httpUrls: signaling,
    tenant: DEMO_TENANT,
    other: GLOBEX_TENANT,
    mint: async (request) => (await mintJoinToken(DEMO_TENANT, request)).token,
    maxFrameBytes: Number(process.env.SIGNALING_MAX_FRAME_BYTES ?? 64 * 1024),
  },
  {
    seed,
    frames,
    httpRequests,
    batchFrames: 10_000,
    concurrency: 24,
    // Each batch line carries the running failure counts and whether every process is the one
    // that started, so a run stopped early (or watched) still says what it found.
    onBatch: async (s) => {
      const lost = (await startTimes()).filter((t, i) => t === undefined || t !== startedBefore[i]).length;
      process.stderr.write(
        `batch ${s.batches}: ${s.frames} frames, ${s.httpRequests} HTTP requests, ${Math.round((Date.now() - began) / 1000)} s, ` +
          `processes lost ${lost}, liveness failures ${s.livenessFailures.length}, forged accepted ${s.forgedAccepted.length}, foreign ids accepted ${s.foreignIdsAccepted.length}, ` +
          `signaling RSS ${(await rssMiB()).join(' / ')} MiB\n`,
      );
    },
  },
);
const startedAfter = await startTimes();
const processesLost = startedAfter.filter((t, i) => t === undefined || t !== startedBefore[i]).length;
const figures = {
  benchmark: 'fuzz',
  seed,
  frames: stats.frames,
  httpRequests: stats.httpRequests,
  connections: stats.connections,
  seconds: Math.round((Date.now() - began) / 1000),
  processesLost,
  livenessFailures: stats.livenessFailures.length,
  forgedCredentialsAccepted: stats.forgedAccepted.length,
  foreignIdsAccepted: stats.foreignIdsAccepted.length,
  signalingRssMiB: { before: rssBefore, after: await rssMiB() },
  responses: stats.responses,
  closes: stats.closes,
  http: stats.http,
  ...(stats.forgedAccepted.length ? { forged: stats.forgedAccepted.slice(0, 20) } : {}),
  ...(stats.foreignIdsAccepted.length ? { foreign: stats.foreignIdsAccepted.slice(0, 20) } : {}),
  ...(stats.livenessFailures.length ? { liveness: stats.livenessFailures.slice(0, 20) } : {}),
};
console.log(JSON.stringify(figures));
process.exit(processesLost || stats.livenessFailures.length || stats.forgedAccepted.length || stats.foreignIdsAccepted.length ? 1 : 0);
