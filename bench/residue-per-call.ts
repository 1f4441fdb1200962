/**
 * What the platform still holds after calls are delivered, per call (target: 0). Runs
 * BENCH_CALLS calls (1,000 by default, BENCH_CALL_CONCURRENCY at a time) through real processes
 * (nats-server, an SFU, signaling, crm-sync) to a PostgreSQL destination: an end user with a
 * phone number and a CRM contact id and an agent join, chat (a card number included) and leave.
 * Once every session and transcript is in the database, it counts what NATS holds beyond what it
 * held before: live KV entries and stream messages per store, and stored bytes (of which KV and
 * object-store delete markers), then runs the residue scan, sweeps the delete markers as the
 * residue scanner does (here without their 15-minute grace) and counts the bytes again.
 * One JSON line.
 */
import pg from 'pg';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { Residue, catalog, findDeleteMarkers, sweepDeleteMarkers } from '@gateway/common';
import { jetstream } from '@nats-io/jetstream';
import { NatsServer, PostgresServer, startCrmSyncProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { adminApi } from '../test/support/crmSync.js';
import { demoToken } from '../test/support/tokens.js';
import { TestClients } from '../test/support/wsClient.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 1_000);
const CONCURRENCY = Number(process.env.BENCH_CALL_CONCURRENCY ?? 4);
const PASSWORD = 'bench-customer-password';
/** Kept by design, not by a call: the tenant's connector, the CRM contact mapping (by hashed external id), node registries. */
const KEPT = new Set(['gateway_connectors', 'gateway_crm_contacts', 'gateway_sfu_nodes', 'gateway_recorder_nodes', 'gateway_device_keys']);

/** Live KV entries and objects per store, stream messages per stream, and the bytes of every JetStream stream. */
async function census(nc: NatsConnection): Promise<{ entries: Record<string, number>; bytes: number; bytesByStream: Record<string, number> }> {
  const jsm = await jetstreamManager(nc);
  const entries: Record<string, number> = {};
  for (const entry of catalog) {
    if (entry.kind === 'kv') {
      const kv = await new Kvm(nc).open(entry.bucket);
      let live = 0;
      for await (const key of await kv.keys()) {
        const value = await kv.get(key);
        if (value && value.operation === 'PUT' && value.length > 0) live++;
      }
      entries[entry.bucket] = live;
    } else if (entry.kind === 'objects') {
      entries[entry.bucket] = (await (await new Objm(nc).open(entry.bucket)).list()).filter((o) => !o.deleted).length;
    } else {
      entries[entry.name] = (await jsm.streams.info(entry.name)).state.messages;
    }
  }
  let bytes = 0;
  const bytesByStream: Record<string, number> = {};
  for await (const info of jsm.streams.list()) {
    bytes += info.state.bytes;
    bytesByStream[info.config.name] = info.state.bytes;
  }
  return { entries, bytes, bytesByStream };
}

const [nats, postgres] = await Promise.all([NatsServer.start(), PostgresServer.start()]);
postgres.createDatabase('customer_crm', 'customer', PASSWORD);
const sfu = await startSfuProcess({ natsUrl: nats.url });
const [signaling, crm] = await Promise.all([
  startSignalingProcess({ natsUrl: nats.url, env: { LOG_LEVEL: 'warn' } }),
  startCrmSyncProcess({ natsUrl: nats.url, env: { LOG_LEVEL: 'warn', CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1' } }),
]);
const nc = await nats.connect('admin');
const db = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: PASSWORD, database: 'customer_crm' });
try {
  const put = await adminApi(crm.url)('/v1/connectors/warehouse', {
    method: 'PUT',
    body: JSON.stringify({ type: 'postgres', config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: PASSWORD } }),
  });
  if (put.status !== 200) throw new Error(`the connector was refused: ${put.status}`);
  await db.connect();
  const before = await census(nc);

  const began = Date.now();
  let next = 0;
  const prefix = `calls-${Date.now()}`;
  const call = async (n: number) => {
    const clients = new TestClients();
    const room = `${prefix}-${n}`;
    try {
      const user = await clients.join(signaling.wsUrl, await demoToken({ room, identity: `customer-${n}`, role: 'end_user', phoneNumber: '(415) 555-0100', crmContactId: `crm-${n}` }));
      const agent = await clients.join(signaling.wsUrl, await demoToken({ room, identity: `agent-${n % 10}`, role: 'agent' }));
      await user.client.request('sendMessage', { text: 'my card is 4111 1111 1111 1111', clientMessageId: `u${n}` });
      await agent.client.request('sendMessage', { text: 'thank you', clientMessageId: `a${n}` });
      await user.client.request('leave');
      await agent.client.request('leave');
    } finally {
      clients.closeAll();
    }
  };
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < CALLS) await call(next++);
    }),
  );
  const callsDoneMs = Date.now() - began;

  const count = async () =>
    Number(
      (await db.query<{ n: string }>("select count(*) as n from gateway_sessions where room like $1 and kind in ('session', 'transcript')", [`${prefix}-%`]).catch(() => ({ rows: [{ n: '0' }] })))
        .rows[0]!.n,
    );
  await waitFor(async () => ((await count()) >= 2 * CALLS ? true : undefined), 30 * 60_000, 'every call delivered');
  const deliveredMs = Date.now() - began;
  // Deletion follows each delivery; give the last ones a moment, then count.
  const pending = new Set([
    'GATEWAY_SESSIONS',
    'GATEWAY_TRANSCRIPTS',
    'GATEWAY_RECORDINGS',
    'GATEWAY_CHAT',
    'gateway_room_sessions',
    'gateway_room_placement',
    'gateway_chat_keys',
    'gateway_participants',
  ]);
  await waitFor(
    async () => {
      const now = await census(nc);
      return [...pending].every((store) => (now.entries[store] ?? 0) <= (before.entries[store] ?? 0)) ? true : undefined;
    },
    120_000,
    'the platform emptied',
  ).catch(() => undefined);
  const after = await census(nc);

  const residueNc = await nats.connect('residue');
  const report = await (await Residue.open(residueNc)).scan({ graceMs: 0 });
  const residueJsm = await jetstreamManager(residueNc);
  const markers = await findDeleteMarkers(jetstream(residueNc), residueJsm);
  const markersPurged = await sweepDeleteMarkers(residueJsm, markers, 0);
  const swept = await census(nc);
  await residueNc.close();

  const leftPerCall: Record<string, number> = {};
  const keptByDesign: Record<string, number> = {};
  for (const [store, n] of Object.entries(after.entries)) {
    const added = n - (before.entries[store] ?? 0);
    if (added === 0) continue;
    if (KEPT.has(store)) keptByDesign[store] = +(added / CALLS).toFixed(3);
    else leftPerCall[store] = +(added / CALLS).toFixed(3);
  }
  console.log(
    JSON.stringify({
      bench: 'residue-per-call',
      calls: CALLS,
      concurrency: CONCURRENCY,
      callsSeconds: +(callsDoneMs / 1000).toFixed(1),
      allDeliveredSeconds: +(deliveredMs / 1000).toFixed(1),
      liveEntriesLeftPerCall: leftPerCall,
      keptByDesignPerCall: keptByDesign,
      storedBytesPerCall: Math.round((after.bytes - before.bytes) / CALLS),
      // Where those bytes are: delete markers of KV keys and objects, until the residue scanner sweeps them.
      storedBytesPerCallByStream: Object.fromEntries(
        Object.entries(after.bytesByStream)
          .map(([name, b]) => [name, Math.round((b - (before.bytesByStream[name] ?? 0)) / CALLS)] as const)
          .filter(([, b]) => b !== 0),
      ),
      deleteMarkersPerCall: +(markers.length / CALLS).toFixed(3),
      deleteMarkersPurged: markersPurged,
      storedBytesPerCallAfterMarkerSweep: Math.round((swept.bytes - before.bytes) / CALLS),
      residueItems: report.summary.reduce((sum, s) => sum + s.count, 0),
      residueScanMs: report.durationMs,
    }),
  );
} finally {
  await db.end().catch(() => undefined);
  await nc.close();
  await Promise.all([crm.stop(), signaling.stop()]);
  await sfu.stop();
  await postgres.stop();
  await nats.stop();
}
