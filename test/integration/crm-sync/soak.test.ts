import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { ArtifactStore, DEMO_TENANT, StaticKeyring, ensureStream, streams, subjects } from '@gateway/common';
import { TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, PostgresServer, startCrmSyncProcess, waitFor } from '@gateway/testing';
import { ZendeskContractServer } from '../../contracts/zendesk/server.js';
import { scanResidue } from '../../support/residue.js';
import { seededRandom } from '../../support/seededRandom.js';
import { GLOBEX_TENANT, twoTenantEnv } from '../../support/tokens.js';
import { basicAuth } from '../../support/crmSync.js';

const TRANSCRIPTS_PER_TENANT = Number(process.env.SOAK_TRANSCRIPTS ?? 250);
const FILES_PER_TRANSCRIPT = 2;
const CUSTOMER_PASSWORD = 'soak-customer-password';
const ZENDESK = { email: 'agent@globex.example', apiToken: 'globex-zendesk-token' };

/**
 * A fault soak: 1,000 artifacts of two tenants, one delivering to a PostgreSQL database and one
 * to Zendesk, with random faults on both (503s, resets, lost answers, 429s, killed database
 * connections), crm-sync killed mid-delivery and nats-server restarted during the run. Every
 * artifact must arrive exactly once in effect, and nothing of them may remain with us.
 */
describe('crm-sync fault soak', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let postgres: PostgresServer;
  let zendesk: ZendeskContractServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let customerDb: pg.Client;
  const crmEnv = { ...twoTenantEnv, LOG_LEVEL: 'warn', CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1', CRM_SYNC_ACK_WAIT_SECONDS: '5' };
  const seed = Number(process.env.SOAK_SEED ?? Date.now() % 100_000);

  beforeAll(async () => {
    [nats, postgres, zendesk] = await Promise.all([NatsServer.start(), PostgresServer.start(), ZendeskContractServer.start({ ...ZENDESK, requestsPerMinute: 1_000_000 })]);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: crmEnv });
    nc = await nats.connect('admin', { maxReconnectAttempts: -1, reconnectTimeWait: 250 });
    customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await customerDb.connect();
    customerDb.on('error', () => undefined);
  }, 60_000);

  afterAll(async () => {
    await customerDb?.end().catch(() => undefined);
    await nc?.close();
    await crm?.stop();
    await zendesk?.close();
    await postgres?.stop();
    await nats?.stop();
  });

  it('delivers 1,000 artifacts exactly once through faults, a crash and a NATS restart, and leaves nothing behind', async () => {
    try {
      await soak();
    } catch (error) {
      // The faults are random: the seed replays the run (SOAK_SEED=<seed>).
      throw new Error(`soak failed with seed ${seed}: ${(error as Error).message}`, { cause: error });
    }
  }, 600_000);

  async function soak(): Promise<void> {
    const admin = (tenant: { apiKey: string; apiSecret: string }, name: string, body: unknown) =>
      fetch(`${crm.url}/v1/connectors/${name}`, { method: 'PUT', headers: { authorization: basicAuth(tenant), 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(
      (
        await admin(DEMO_TENANT, 'warehouse', {
          type: 'postgres',
          config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' },
          secrets: { password: CUSTOMER_PASSWORD },
        })
      ).status,
    ).toBe(200);
    expect((await admin(GLOBEX_TENANT, 'support', { type: 'zendesk', config: { subdomainUrl: zendesk.url, email: ZENDESK.email }, secrets: { apiToken: ZENDESK.apiToken } })).status).toBe(200);

    const store = await ArtifactStore.open(nc, new StaticKeyring(JSON.parse(twoTenantEnv.GATEWAY_TENANT_KEYS) as Record<string, string>));
    await ensureStream(nc, streams.transcripts);
    const expected = new Map<string, Map<string, Buffer>>([
      ['demo', new Map()],
      ['globex', new Map()],
    ]);
    const conversations: Record<string, string[]> = { demo: [], globex: [] };
    for (let i = 0; i < TRANSCRIPTS_PER_TENANT; i++) {
      for (const tenant of ['demo', 'globex'] as const) {
        const conversationId = `CV_soak${i}${tenant}`;
        conversations[tenant]!.push(conversationId);
        const artifacts = [];
        for (let f = 0; f < FILES_PER_TRANSCRIPT; f++) {
          const artifactId = `${conversationId}-${f}`;
          const bytes = randomBytes(512 + ((i * 7 + f * 13) % 2048));
          expected.get(tenant)!.set(artifactId, bytes);
          await store.put(tenant, artifactId, Readable.from([bytes]), 'text/plain');
          artifacts.push({ artifactId, kind: 'transcript', contentType: 'text/plain', participantId: '', sizeBytes: bytes.length, durationMs: 0, part: 0 });
        }
        const event = TranscriptReady.encode({
          tenant,
          room: `room-${i}`,
          conversationId,
          artifacts,
          messageCount: 3,
          startedAtMs: Date.now() - 60_000,
          endedAtMs: Date.now(),
          smartActions: [],
          contacts: [{ participantId: `PA_${i}`, role: 'end_user', externalId: `ext-${i % 40}`, crmContactId: '' }],
        }).finish();
        await jetstream(nc).publish(subjects.transcriptReady(tenant), event);
      }
    }

    // Random faults on both destinations for as long as the run lasts.
    const rand = seededRandom(seed);
    let faulting = true;
    const faults = (async () => {
      while (faulting) {
        const roll = rand();
        if (roll < 0.2) zendesk.inject({ status: 503 }, { times: 1 + Math.floor(rand() * 3) });
        else if (roll < 0.35) zendesk.inject({ resetConnection: true });
        else if (roll < 0.5) zendesk.inject({ loseResponse: true });
        else if (roll < 0.6) zendesk.inject({ rateLimited: 1 });
        else if (roll < 0.75) await customerDb.query("select pg_terminate_backend(pid) from pg_stat_activity where usename = 'customer' and pid <> pg_backend_pid()").catch(() => undefined);
        await new Promise((r) => setTimeout(r, 150 + rand() * 250));
      }
    })();

    const delivered = async () => {
      const rows = (await customerDb.query('select count(*)::int as n from gateway_artifacts').catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n as number;
      const attached = [...zendesk.tickets.values()].reduce((sum, t) => sum + zendesk.ticketAttachments(t.id).length, 0);
      return rows + attached;
    };
    const total = 2 * TRANSCRIPTS_PER_TENANT * FILES_PER_TRANSCRIPT;

    // Each stage waits generously: under a loaded suite the run takes twice as long as alone.
    // A stage that times out says how far delivery got and what crm-sync last logged.
    const stage = (share: number, what: string) =>
      waitFor(async () => (await delivered()) >= total * share, 150_000, what).catch(async (error: Error) => {
        throw new Error(`${error.message}: ${await delivered()} of ${total} delivered; crm-sync said:\n${crm.logs.slice(-3000)}`);
      });
    // crm-sync dies mid-delivery (no goodbye), and another one takes over.
    await stage(0.2, 'a fifth delivered');
    await crm.stop('SIGKILL');
    crm = await startCrmSyncProcess({ natsUrl: nats.url, env: crmEnv });
    // nats-server restarts under it (same port and store).
    await stage(0.5, 'half delivered');
    nats = await nats.restart();

    // Faults stop for the last fifth: each injected fault hits the next request, and with few
    // deliveries left they would all land on the same one.
    await stage(0.8, 'four fifths delivered');
    faulting = false;
    await stage(1, `all ${total} delivered`);
    await faults;

    // Exactly once in effect: one session row and one ticket per transcript, each file once, bytes equal.
    const rows = (await customerDb.query('select artifact_id, content from gateway_artifacts')).rows as Array<{ artifact_id: string; content: Buffer }>;
    expect(rows.length).toBe(TRANSCRIPTS_PER_TENANT * FILES_PER_TRANSCRIPT);
    for (const row of rows) expect(row.content.equals(expected.get('demo')!.get(row.artifact_id)!)).toBe(true);
    expect((await customerDb.query('select count(*)::int as n from gateway_sessions')).rows[0].n).toBe(TRANSCRIPTS_PER_TENANT);
    for (const conversationId of conversations.globex!) {
      const tickets = zendesk.ticketsByExternalId(conversationId);
      expect(tickets, conversationId).toHaveLength(1);
      const files = zendesk.ticketAttachments(tickets[0]!.id);
      expect(files.map((f) => f.file_name).sort()).toEqual([...new Set(files.map((f) => f.file_name))].sort());
      expect(files).toHaveLength(FILES_PER_TRANSCRIPT);
      for (const file of files) expect([...expected.get('globex')!.values()].some((b) => b.equals(file.bytes))).toBe(true);
    }

    // Nothing of the delivered sessions remains: no bytes, no keys, no events naming anyone.
    for (const tenant of ['demo', 'globex']) {
      let last: Awaited<ReturnType<typeof scanResidue>> | undefined;
      await waitFor(
        async () => {
          last = await scanResidue(nc, tenant, expected.get(tenant)!.keys());
          return last.objects.length === 0 && last.dataKeys.length === 0 && last.pendingEvents === 0 ? last : undefined;
        },
        20_000,
        `no residue for ${tenant}`,
      ).catch((error: Error) => {
        throw new Error(
          `${error.message}: ${JSON.stringify({ objects: last?.objects.slice(0, 5), objectCount: last?.objects.length, dataKeys: last?.dataKeys.length, pendingEvents: last?.pendingEvents })}`,
        );
      });
    }
  }
});
