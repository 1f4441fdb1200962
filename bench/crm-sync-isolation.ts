/**
 * crm-sync under load that used to stop it:
 *  - peak resident memory of crm-sync delivering one large recording (2 GiB by default), to
 *    PostgreSQL (chunk rows) and to S3 (the contract server, multipart), the artifact generated
 *    into the object store first;
 *  - the delivery latency (p50/p95) of a healthy tenant, alone and while another tenant's
 *    destination hangs with a backlog.
 * One JSON line per figure.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import pg from 'pg';
import { ArtifactStore, StaticKeyring, ensureStream, streams } from '@gateway/common';
import { PostgresServer } from '@gateway/testing';
import { MIB, S3ContractServer } from '../test/contracts/s3/server.js';
import { adminApi, announceRecording, pseudoRandomBytes, publishTranscript, residentMemory, startCrmSyncStack } from '../test/support/crmSync.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../test/support/tokens.js';

const ARTIFACT_MIB = Number(process.env.BENCH_CRM_ARTIFACT_MB ?? 2048);
const HEALTHY_DELIVERIES = Number(process.env.BENCH_CRM_DELIVERIES ?? 40);
const BUCKET = 'bench-recordings';
const PASSWORD = 'bench-customer-password';

/** Polls until `check` holds, every `intervalMs` (finer than the tests' helper: latencies are measured with it). */
async function poll(check: () => unknown, timeoutMs: number, what: string, intervalMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const mib = (bytes: number) => +(bytes / MIB).toFixed(1);
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);
};

const [stack, postgres, s3] = await Promise.all([
  startCrmSyncStack({ LOG_LEVEL: 'warn', CRM_SYNC_ACK_WAIT_SECONDS: '60', CRM_SYNC_TENANT_CONCURRENCY: '2' }),
  PostgresServer.start(),
  // The bench checks sizes, not bytes: gigabytes are not kept in this process.
  S3ContractServer.start({ buckets: [BUCKET], keepBodiesUpTo: 64 * MIB }),
]);
const hanging = http.createServer(() => undefined);
const sockets = new Set<Socket>();
hanging.on('connection', (socket) => {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
});
await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
const admin = adminApi(stack.crm.url);
const put = async (name: string, body: unknown, as?: typeof GLOBEX_TENANT) => {
  const response = await admin(`/v1/connectors/${name}`, { method: 'PUT', body: JSON.stringify(body), ...(as ? { as } : {}) });
  if (response.status !== 200) throw new Error(`connector ${name}: ${response.status} ${await response.text()}`);
};
const remove = (name: string) => admin(`/v1/connectors/${name}`, { method: 'DELETE' });

try {
  postgres.createDatabase('customer_crm', 'customer', PASSWORD);
  const warehouse = { type: 'postgres', config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: PASSWORD } };
  const bucket = { type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url }, secrets: S3ContractServer.defaultCredential };

  for (const [destination, connector] of [
    ['postgres', warehouse],
    ['s3', bucket],
  ] as const) {
    await put('large', connector);
    const recordingId = `REC_bench${destination}${Date.now()}`;
    const artifactId = `${recordingId}-voice`;
    const generated = pseudoRandomBytes(ARTIFACT_MIB * MIB, 11);
    const storing = performance.now();
    await stack.artifacts.put('demo', artifactId, generated.stream, 'audio/mpeg');
    const storeSeconds = (performance.now() - storing) / 1000;
    await new Promise((r) => setTimeout(r, 2_000));
    const pid = stack.crm.pid;
    const before = residentMemory.bytes(pid);
    residentMemory.resetPeak(pid);
    const started = performance.now();
    await announceRecording(stack.nc, { recordingId, artifacts: [{ artifactId, kind: 'voice', contentType: 'audio/mpeg', sizeBytes: ARTIFACT_MIB * MIB }] });
    await poll(
      async () =>
        (await stack.artifacts.open('demo', artifactId).then(
          () => 'held',
          (e: { code?: string }) => e.code,
        )) === 'NOT_FOUND',
      3_600_000,
      'the large delivery',
      500,
    );
    const seconds = (performance.now() - started) / 1000;
    const peak = residentMemory.peak(pid);
    if (destination === 'postgres') {
      const client = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: PASSWORD, database: 'customer_crm' });
      await client.connect();
      const row = (await client.query('select size_bytes, chunk_count from gateway_artifacts where artifact_id = $1', [artifactId])).rows[0];
      await client.end();
      if (Number(row?.size_bytes) !== ARTIFACT_MIB * MIB) throw new Error('the recording did not arrive whole in PostgreSQL');
    } else if (s3.object(BUCKET, `gateway/demo/recording/${recordingId}/${artifactId}.mp3`)?.size !== ARTIFACT_MIB * MIB) {
      throw new Error('the recording did not arrive whole in S3');
    }
    console.log(
      JSON.stringify({
        benchmark: 'crm_sync_large_recording_memory',
        destination,
        artifact_mib: ARTIFACT_MIB,
        rss_before_mib: mib(before),
        rss_peak_mib: mib(peak),
        rss_growth_mib: mib(peak - before),
        store_seconds: +storeSeconds.toFixed(1),
        delivery_seconds: +seconds.toFixed(1),
        delivery_mib_per_second: +(ARTIFACT_MIB / seconds).toFixed(1),
      }),
    );
    await remove('large');
  }

  // A healthy tenant's latency, alone, then while the other tenant's destination hangs.
  await put('bucket', bucket, GLOBEX_TENANT);
  const store = await ArtifactStore.open(stack.nc, new StaticKeyring(JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>));
  await ensureStream(stack.nc, streams.transcripts);
  const healthyLatencies = async (label: string) => {
    const latencies: number[] = [];
    for (let i = 0; i < HEALTHY_DELIVERIES; i++) {
      const conversationId = `CV_${label}${i}x${Date.now()}`;
      const started = performance.now();
      await publishTranscript(stack.nc, store, { tenant: 'globex', conversationId, files: [{ contentType: 'text/plain', bytes: Buffer.from(`transcript ${i}`) }] });
      await poll(() => s3.object(BUCKET, `gateway/globex/transcript/${conversationId}/manifest.json`), 60_000, 'a healthy delivery', 5);
      latencies.push(performance.now() - started);
      await new Promise((r) => setTimeout(r, 100));
    }
    return latencies;
  };
  const alone = await healthyLatencies('alone');
  const hangingPort = (hanging.address() as { port: number }).port;
  await put('stuck', {
    type: 'salesforce',
    config: { loginUrl: `http://127.0.0.1:${hangingPort}`, authFlow: 'client_credentials', clientId: 'stuck', requestTimeoutMs: 600_000 },
    secrets: { clientSecret: 'stuck' },
  });
  const backlog = 200;
  for (let i = 0; i < backlog; i++)
    await publishTranscript(stack.nc, stack.artifacts, { conversationId: `CV_stuck${i}x${Date.now()}`, files: [{ contentType: 'text/plain', bytes: Buffer.from(`stuck ${i}`) }] });
  await new Promise((r) => setTimeout(r, 2_000));
  const beside = await healthyLatencies('beside');
  for (const [condition, latencies] of [
    ['alone', alone],
    ['beside_a_hanging_tenant', beside],
  ] as const) {
    console.log(
      JSON.stringify({
        benchmark: 'crm_sync_healthy_tenant_latency',
        condition,
        deliveries: latencies.length,
        ...(condition === 'alone' ? {} : { hanging_backlog: backlog }),
        p50_ms: percentile(latencies, 50),
        p95_ms: percentile(latencies, 95),
        max_ms: Math.round(Math.max(...latencies)),
      }),
    );
  }
} finally {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => hanging.close(() => resolve()));
  await stack.stop();
  await Promise.all([postgres.stop(), s3.close()]);
}
