/**
 * crm-sync's delivery throughput, per destination and with one and four replicas:
 *  - deliveries per second of small recordings (one 1 KiB artifact each, sealed into the object
 *    store as the recorder seals them) out of a backlog, in steady state (between the 10th and the
 *    90th percentile of the deletions);
 *  - the time from publishing `recording.ready` to the local deletion (the artifact's data key
 *    purged: from then on no copy is readable), p50/p95, at half the measured rate;
 *  - where the time goes, from crm-sync's own `gateway_crm_sync_stage_seconds` and, for the
 *    decryption, the same AES-256-GCM segments and SHA-256 opened in this process;
 *  - the same at several artifact sizes for one destination.
 * One JSON line per figure; a table at the end. Figures are for this machine: compare runs as ratios.
 *
 * BENCH_CRM_ARTIFACTS (400), BENCH_CRM_PACED (100), BENCH_CRM_REPLICAS ("1,4"),
 * BENCH_CRM_DESTINATIONS ("salesforce,zendesk,postgres,s3"), BENCH_CRM_SIZES_KIB ("1,64,1024,8192"),
 * BENCH_CRM_SIZE_DESTINATION ("s3"), BENCH_CRM_CONCURRENCY (8: CRM_SYNC_CONCURRENCY and the
 * tenant's, so one tenant can use a whole replica), BENCH_CRM_PROFILE (a directory: crm-sync runs
 * with --cpu-prof there; read with bench/cpuprofile-top.ts), BENCH_CRM_RETRY_MAX_SECONDS (1: also
 * the longest an event handed back for a busy tenant waits before it comes again),
 * BENCH_CRM_REPLICA_CPU_SHARE (unset; when set, each replica runs in a slice of one core of that
 * size, a cgroup with a CFS quota of its own, bench/cpuSlice.ts, root: so that one replica and four
 * are compared each on CPU of its own, as on a cluster, on a machine with fewer cores than replicas).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude } from '@nats-io/kv';
import { ArtifactStore, buckets, dataKeyName, DEMO_TENANT_KEK, ensureStream, SEGMENT_BYTES, StaticKeyring, streams, subjects } from '@gateway/common';
import { NatsServer, PostgresServer, freePort, startCrmSyncProcess } from '@gateway/testing';
import { S3ContractServer } from '../test/contracts/s3/server.js';
import { SalesforceContractServer } from '../test/contracts/salesforce/server.js';
import { ZendeskContractServer } from '../test/contracts/zendesk/server.js';
import { adminApi, recordingReadyEvent } from '../test/support/crmSync.js';
import { scrapeMetrics } from '../test/support/metrics.js';
import { twoTenantEnv } from '../test/support/tokens.js';
import { CpuSlice, cpuShareFromEnv } from './cpuSlice.js';
import { childPids, cpuTimes, percentile } from './stack.js';

const list = (value: string | undefined, fallback: string) =>
  (value ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const ARTIFACTS = Number(process.env.BENCH_CRM_ARTIFACTS ?? 400);
const PACED = Number(process.env.BENCH_CRM_PACED ?? 100);
const REPLICAS = list(process.env.BENCH_CRM_REPLICAS, '1,4').map(Number);
const DESTINATIONS = list(process.env.BENCH_CRM_DESTINATIONS, 'salesforce,zendesk,postgres,s3') as Destination[];
const SIZES_KIB = list(process.env.BENCH_CRM_SIZES_KIB, '1,64,1024,8192').map(Number);
const SIZE_DESTINATION = (process.env.BENCH_CRM_SIZE_DESTINATION ?? 's3') as Destination;
const CONCURRENCY = process.env.BENCH_CRM_CONCURRENCY ?? '8';
const RETRY_MAX_SECONDS = process.env.BENCH_CRM_RETRY_MAX_SECONDS ?? '1';
const PROFILE_DIR = process.env.BENCH_CRM_PROFILE;
const REPLICA_CPU_SHARE = cpuShareFromEnv('BENCH_CRM_REPLICA_CPU_SHARE');
const SMALL_BYTES = 1024;
const STAGES = ['contacts', 'read', 'destinations', 'delete', 'settle'] as const;
type Destination = 'salesforce' | 'zendesk' | 'postgres' | 's3';

const BUCKET = 'bench-recordings';
const PASSWORD = 'bench-customer-password';
const SF = { clientId: 'bench-client', clientSecret: 'bench-secret' };
const ZD = { email: 'bench@example.com', apiToken: 'bench-token' };

/** What the benchmark is doing, on stderr (stdout holds the figures). */
const progress = (what: string) => process.stderr.write(`[crm-sync-throughput] ${what}\n`);

const natsMonitorPort = await freePort();
const nats = await NatsServer.start({ monitorPort: natsMonitorPort });
/** Messages nats-server received from every client so far (/varz in_msgs): requests, publishes, acks. */
async function natsInMsgs(): Promise<number> {
  const varz = (await (await fetch(`http://127.0.0.1:${natsMonitorPort}/varz`)).json()) as { in_msgs: number };
  return varz.in_msgs;
}
const [postgres, s3, salesforce, zendesk] = await Promise.all([
  PostgresServer.start(),
  S3ContractServer.start({ buckets: [BUCKET], keepBodiesUpTo: 64 * 1024 }),
  SalesforceContractServer.start({ ...SF, dailyApiLimit: 100_000_000 }),
  ZendeskContractServer.start({ ...ZD, requestsPerMinute: 100_000_000 }),
]);
const natsPid = (await childPids(process.pid)).find((pid) => readComm(pid) === 'nats-server');
const nc = await nats.connect();
const store = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
await ensureStream(nc, streams.recordings);
const js = jetstream(nc);
const replicas: Array<Awaited<ReturnType<typeof startCrmSyncProcess>>> = [];

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

const connectors: Record<Destination, () => unknown> = {
  salesforce: () => ({
    type: 'salesforce',
    config: { loginUrl: salesforce.url, authFlow: 'client_credentials', clientId: SF.clientId, requestTimeoutMs: 30_000 },
    secrets: { clientSecret: SF.clientSecret },
  }),
  zendesk: () => ({ type: 'zendesk', config: { subdomainUrl: zendesk.url, email: ZD.email }, secrets: { apiToken: ZD.apiToken } }),
  postgres: () => ({ type: 'postgres', config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: PASSWORD } }),
  s3: () => ({ type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url }, secrets: S3ContractServer.defaultCredential }),
};

/** Each replica's slice of a core, when they run in slices (BENCH_CRM_REPLICA_CPU_SHARE). */
const slices: CpuSlice[] = [];

/** Runs `count` crm-sync replicas (starting or stopping the difference). */
async function scaleTo(count: number): Promise<void> {
  while (replicas.length > count) {
    await replicas.pop()!.stop();
    slices.pop()?.close();
  }
  while (replicas.length < count) {
    const index = replicas.length;
    replicas.push(
      await startCrmSyncProcess({
        natsUrl: nats.url,
        nodeId: `crm-bench-${index}`,
        env: {
          ...twoTenantEnv,
          LOG_LEVEL: 'info',
          CRM_SYNC_CONCURRENCY: CONCURRENCY,
          CRM_SYNC_TENANT_CONCURRENCY: CONCURRENCY,
          CRM_SYNC_RETRY_BASE_SECONDS: '0.2',
          CRM_SYNC_RETRY_MAX_SECONDS: RETRY_MAX_SECONDS,
        },
        nodeArgs: PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] : [],
      }),
    );
    if (REPLICA_CPU_SHARE) {
      const slice = CpuSlice.create(`crm-bench-${process.pid}-${index}`, REPLICA_CPU_SHARE);
      slices.push(slice);
      const pid = replicas[index]!.pid;
      for (const member of [pid, ...(await childPids(pid))]) slice.add(member);
    }
  }
}

async function connect(destination: Destination): Promise<void> {
  const admin = adminApi(replicas[0]!.url);
  for (const name of ['bench-salesforce', 'bench-zendesk', 'bench-postgres', 'bench-s3']) await admin(`/v1/connectors/${name}`, { method: 'DELETE' });
  const response = await admin(`/v1/connectors/bench-${destination}`, { method: 'PUT', body: JSON.stringify(connectors[destination]()) });
  if (response.status !== 200) throw new Error(`connector ${destination}: ${response.status} ${await response.text()}`);
  // Every replica reads a tenant's connectors from KV at most every 2 s: give them time to see the change.
  await new Promise((r) => setTimeout(r, 2_500));
}

/**
 * When each artifact's data key was purged (server time, ms): a KV watch says which are gone as
 * it happens; the times are read from the purge markers themselves, so a watch that restarted
 * under load (and skipped some) changes nothing.
 */
const dataKeys = await new Kvm(nc).open(buckets.dataKeys);
const seenPurged = new Set<string>();
const keyOf = (artifactId: string) => dataKeyName('demo', 'recordings', artifactId);
const watcher = await dataKeys.watch({ key: 'demo.recordings.>', include: KvWatchInclude.UpdatesOnly });
void (async () => {
  for await (const entry of watcher) if (entry.operation !== 'PUT') seenPurged.add(entry.key);
})();
async function purgedAtMs(artifactId: string): Promise<number | undefined> {
  const entry = await dataKeys.get(keyOf(artifactId));
  return entry && entry.operation !== 'PUT' ? entry.created.getTime() : undefined;
}

/** Artifacts of `size` bytes stored (sealed, as the recorder stores them), 16 at a time. */
async function storeArtifacts(prefix: string, count: number, size: number): Promise<string[]> {
  const body = randomBytes(size);
  const ids = Array.from({ length: count }, (_, i) => `REC_${prefix}${i}-voice`);
  for (let at = 0; at < ids.length; at += 16) await Promise.all(ids.slice(at, at + 16).map((id) => store.put('demo', id, Readable.from([body]), 'audio/mpeg')));
  return ids;
}

const publishedAt = new Map<string, number>();
async function announce(artifactId: string, size: number, index: number): Promise<void> {
  const recordingId = artifactId.replace(/-voice$/, '');
  // A different customer on each call: every delivery looks its contact up.
  const event = recordingReadyEvent({ recordingId, externalId: `ext-${recordingId}-${index}`, artifacts: [{ artifactId, kind: 'voice', contentType: 'audio/mpeg', sizeBytes: size }] });
  publishedAt.set(artifactId, Date.now());
  await js.publish(subjects.recordingReady('demo'), event);
}

/** Waits until every artifact's key is purged; returns the purge times (ms, server clock) in the order of `ids`. */
async function waitPurged(ids: string[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let checked = Date.now();
  const unseen = () => ids.filter((id) => !seenPurged.has(keyOf(id)));
  while (unseen().length > 0) {
    if (Date.now() > deadline) throw new Error(`${unseen().length} of ${ids.length} artifacts not deleted after ${timeoutMs / 1000} s; crm-sync said:\n${replicas[0]?.logs.slice(-3000)}`);
    if (Date.now() - checked > 2_000) {
      // The watch may have missed some: ask for those directly.
      for (const id of unseen()) if ((await purgedAtMs(id)) !== undefined) seenPurged.add(keyOf(id));
      checked = Date.now();
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const times: number[] = [];
  for (const id of ids) times.push((await purgedAtMs(id))!);
  return times;
}

type Count = { sum: number; count: number };
type Totals = Record<string, Count> & { delivered: Count; failed: Count; deferred: Count };
async function scrapeTotals(): Promise<Totals> {
  const totals = Object.fromEntries([...STAGES, 'delivered', 'failed', 'deferred'].map((k) => [k, { sum: 0, count: 0 }])) as Totals;
  for (const replica of replicas) {
    for (const sample of (await scrapeMetrics(replica.opsPort)).samples) {
      const stage = sample.labels.stage;
      if (sample.name === 'gateway_crm_sync_stage_seconds_sum' && stage) totals[stage]!.sum += sample.value;
      if (sample.name === 'gateway_crm_sync_stage_seconds_count' && stage) totals[stage]!.count += sample.value;
      if (sample.name === 'gateway_crm_sync_deferred_total') totals.deferred.count += sample.value;
      if (sample.name === 'gateway_crm_sync_deliveries_total') totals[sample.labels.result === 'delivered' ? 'delivered' : 'failed'].count += sample.value;
    }
  }
  return totals;
}

async function cpuSeconds(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const { user, system } = await cpuTimes(pid);
    total += user + system;
  }
  return total;
}

/** Mean milliseconds per delivery in each stage between two scrapes; `destination` is the destinations' own (reads taken out). */
function stageMs(before: Totals, after: Totals): Record<string, number> {
  const mean = (stage: string) => {
    const count = after[stage]!.count - before[stage]!.count;
    return count > 0 ? (1000 * (after[stage]!.sum - before[stage]!.sum)) / count : 0;
  };
  const ms = Object.fromEntries(STAGES.map((s) => [s, mean(s)]));
  return { ...ms, destination: Math.max(0, ms.destinations! - ms.read!) };
}

/** AES-256-GCM opening and SHA-256 of `size` bytes in SEGMENT_BYTES segments, as the artifact store does: ms per artifact. */
function decryptMs(size: number): number {
  const key = randomBytes(32);
  const plaintext = randomBytes(size);
  const segments: Array<{ iv: Buffer; data: Buffer; tag: Buffer }> = [];
  for (let at = 0; at < Math.max(1, size); at += SEGMENT_BYTES) {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    const data = Buffer.concat([cipher.update(plaintext.subarray(at, at + SEGMENT_BYTES)), cipher.final()]);
    segments.push({ iv, data, tag: cipher.getAuthTag() });
  }
  const rounds = Math.max(5, Math.min(2_000, Math.floor((64 * 1024 * 1024) / Math.max(size, 1))));
  const began = performance.now();
  for (let r = 0; r < rounds; r++) {
    const hash = createHash('sha256');
    for (const s of segments) {
      const decipher = createDecipheriv('aes-256-gcm', key, s.iv);
      decipher.setAuthTag(s.tag);
      hash.update(decipher.update(s.data));
      decipher.final();
    }
    hash.digest();
  }
  return (performance.now() - began) / rounds;
}

interface Row {
  destination: Destination;
  replicas: number;
  artifact_kib: number;
  per_second: number;
  per_second_per_replica: number;
  cpu_share_per_replica?: number;
  p50_ms: number;
  p95_ms: number;
  crm_cpu_ms_per_delivery: number;
  nats_cpu_ms_per_delivery: number;
  /**
   * Messages into nats-server per delivery while the backlog drained (/varz in_msgs): crm-sync's
   * requests, publishes and acks, and the benchmark's own two (the event, the purge's check).
   */
  nats_msgs_per_delivery: number;
  /** HTTP requests the destination's contract server received per delivery while the backlog drained (Zendesk only). */
  http_requests_per_delivery: number | undefined;
  /** Without a backlog (nothing handed back): the cost of a delivery itself. */
  crm_cpu_ms_per_delivery_paced: number;
  /** Events handed back because the tenant's slots and short queue were full, while the backlog drained. */
  deferred: number;
  /** Mean ms per delivery in each stage while the backlog drained (8 at once: CPU shared)... */
  stages_ms: Record<string, number>;
  /** ...and one at a time, at half the rate (what a delivery itself costs). */
  stages_ms_paced: Record<string, number>;
  decrypt_ms: number;
  failed: number;
}
const rows: Row[] = [];

/** Requests the destination's contract server has received so far, where it records them. */
const httpRequests = (destination: Destination): number | undefined => (destination === 'zendesk' ? zendesk.requests.length : undefined);
let runNumber = 0;

async function measure(destination: Destination, size: number): Promise<Row> {
  const run = `${destination}${replicas.length}x${size}r${runNumber++}t${Date.now()}`;
  const count = size >= 1024 * 1024 ? Math.max(20, Math.floor(ARTIFACTS / 10)) : ARTIFACTS;
  // Throughput: a backlog published at once, drained by the replicas.
  progress(`${destination}, ${replicas.length} replica(s), ${size} B: storing ${count}`);
  const backlog = await storeArtifacts(`${run}b`, count, size);
  progress('publishing the backlog');
  const before = await scrapeTotals();
  const crmPids = replicas.map((r) => r.pid);
  const cpuBefore = await cpuSeconds(crmPids);
  const natsBefore = natsPid ? await cpuSeconds([natsPid]) : 0;
  const msgsBefore = await natsInMsgs();
  const httpBefore = httpRequests(destination);
  await Promise.all(backlog.map((id, i) => announce(id, size, i)));
  const times = (await waitPurged(backlog, 600_000)).sort((a, b) => a - b);
  const cpuAfter = await cpuSeconds(crmPids);
  const natsAfter = natsPid ? await cpuSeconds([natsPid]) : 0;
  const msgsAfter = await natsInMsgs();
  const httpAfter = httpRequests(destination);
  const after = await scrapeTotals();
  const low = times[Math.floor(0.1 * (times.length - 1))]!;
  const high = times[Math.floor(0.9 * (times.length - 1))]!;
  const perSecond = (Math.floor(0.9 * (times.length - 1)) - Math.floor(0.1 * (times.length - 1))) / ((high - low) / 1000);

  progress('paced');
  // Latency: events published one by one at half that rate (no backlog), publish to deletion.
  const paced = await storeArtifacts(`${run}p`, Math.max(10, Math.floor(PACED / (count < ARTIFACTS ? 5 : 1))), size);
  const gapMs = 1000 / Math.max(1, perSecond / 2);
  const pacedBefore = await scrapeTotals();
  const pacedCpuBefore = await cpuSeconds(crmPids);
  const start = performance.now();
  for (const [i, id] of paced.entries()) {
    const due = start + i * gapMs;
    if (due > performance.now()) await new Promise((r) => setTimeout(r, due - performance.now()));
    await announce(id, size, i);
  }
  const pacedTimes = await waitPurged(paced, 600_000);
  const pacedCpu = (await cpuSeconds(crmPids)) - pacedCpuBefore;
  const pacedAfter = await scrapeTotals();
  const latencies = paced.map((id, i) => pacedTimes[i]! - publishedAt.get(id)!);
  const row: Row = {
    destination,
    replicas: replicas.length,
    artifact_kib: size / 1024,
    per_second: +perSecond.toFixed(1),
    per_second_per_replica: +(perSecond / replicas.length).toFixed(1),
    ...(REPLICA_CPU_SHARE ? { cpu_share_per_replica: REPLICA_CPU_SHARE } : {}),
    p50_ms: Math.round(percentile(latencies, 50)),
    p95_ms: Math.round(percentile(latencies, 95)),
    crm_cpu_ms_per_delivery: +((1000 * (cpuAfter - cpuBefore)) / count).toFixed(2),
    nats_cpu_ms_per_delivery: +((1000 * (natsAfter - natsBefore)) / count).toFixed(2),
    nats_msgs_per_delivery: +((msgsAfter - msgsBefore) / count).toFixed(1),
    http_requests_per_delivery: httpBefore === undefined || httpAfter === undefined ? undefined : +((httpAfter - httpBefore) / count).toFixed(2),
    crm_cpu_ms_per_delivery_paced: +((1000 * pacedCpu) / paced.length).toFixed(2),
    deferred: after.deferred.count - before.deferred.count,
    stages_ms: Object.fromEntries(Object.entries(stageMs(before, after)).map(([k, v]) => [k, +v.toFixed(2)])),
    stages_ms_paced: Object.fromEntries(Object.entries(stageMs(pacedBefore, pacedAfter)).map(([k, v]) => [k, +v.toFixed(2)])),
    decrypt_ms: +decryptMs(size).toFixed(3),
    failed: after.failed.count - before.failed.count,
  };
  console.log(JSON.stringify({ benchmark: 'crm_sync_throughput', artifacts: count, paced: paced.length, ...row }));
  return row;
}

try {
  postgres.createDatabase('customer_crm', 'customer', PASSWORD);
  for (const count of REPLICAS) {
    progress(`starting ${count} replica(s)`);
    await scaleTo(count);
    for (const destination of DESTINATIONS) {
      progress(`connecting ${destination}`);
      await connect(destination);
      // A short warm-up (connections, JIT, the contact cache) is not measured.
      const warm = await storeArtifacts(`warm${destination}${count}t${Date.now()}`, 20, SMALL_BYTES);
      await Promise.all(warm.map((id, i) => announce(id, SMALL_BYTES, i)));
      progress('warming up');
      await waitPurged(warm, 60_000);
      rows.push(await measure(destination, SMALL_BYTES));
    }
    if (count === REPLICAS[0]) {
      await connect(SIZE_DESTINATION);
      for (const kib of SIZES_KIB.filter((k) => k * 1024 !== SMALL_BYTES || !DESTINATIONS.includes(SIZE_DESTINATION))) rows.push(await measure(SIZE_DESTINATION, kib * 1024));
    }
  }
  const table = rows.map((r) => ({
    destination: r.destination,
    replicas: r.replicas,
    KiB: r.artifact_kib,
    'per s': r.per_second,
    'per s per replica': r.per_second_per_replica,
    'p50 ms': r.p50_ms,
    'p95 ms': r.p95_ms,
    'crm CPU ms': r.crm_cpu_ms_per_delivery,
    'nats CPU ms': r.nats_cpu_ms_per_delivery,
    'nats msgs': r.nats_msgs_per_delivery,
    'http reqs': r.http_requests_per_delivery ?? '',
    'crm CPU ms paced': r.crm_cpu_ms_per_delivery_paced,
    deferred: r.deferred,
    ...Object.fromEntries(Object.entries(r.stages_ms_paced).map(([k, v]) => [`${k} ms paced`, v])),
    'decrypt ms': r.decrypt_ms,
    failed: r.failed,
  }));
  console.table(table);
} finally {
  watcher.stop();
  for (const replica of replicas.splice(0).reverse()) await replica.stop();
  for (const slice of slices.splice(0)) slice.close();
  await nc.close();
  await Promise.all([postgres.stop(), s3.close(), salesforce.stop(), zendesk.close()]);
  await nats.stop();
  if (PROFILE_DIR) console.log(`profiles in ${PROFILE_DIR}: node --import tsx bench/cpuprofile-top.ts <file>`);
}
