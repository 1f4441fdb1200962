import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { DEMO_TENANT_KEK, StaticKeyring, buckets, kvKeys, sealParticipants, streams, subjects } from '@gateway/common';
import { RoomSessionRecord } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, PostgresServer, startCrmSyncProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { adminApi } from '../support/crmSync.js';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';

const CUSTOMER_PASSWORD = 'session-customer-password';

/**
 * The session record, end to end: the customer's app puts the end user's phone number and device
 * ids in the join token; when the room ends, signaling announces session.ended with them sealed;
 * crm-sync delivers it to the customer's database, and then the phone number is nowhere on the
 * platform any more.
 */
describe('session.ended', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let postgres: PostgresServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  const clients = new TestClients();

  beforeAll(async () => {
    [nats, postgres] = await Promise.all([NatsServer.start(), PostgresServer.start()]);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    sfu = await startSfuProcess({ natsUrl: nats.url });
    [signaling, crm] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url, env: { SIGNALING_SESSION_FINISH_STALE_SECONDS: '3' } }),
      startCrmSyncProcess({ natsUrl: nats.url, env: { CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '0.5' } }),
    ]);
    nc = await nats.connect();
  }, 60_000);

  afterAll(async () => {
    clients.closeAll();
    await nc?.close();
    await Promise.all([crm?.stop(), signaling?.stop()]);
    await sfu?.stop();
    await postgres?.stop();
    await nats?.stop();
  });

  /** The tenant's PostgreSQL connector, pointing at the customer's database (a PUT: set again, it stays the same). */
  const connectWarehouse = () =>
    adminApi(crm.url)('/v1/connectors/warehouse', {
      method: 'PUT',
      body: JSON.stringify({
        type: 'postgres',
        config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' },
        secrets: { password: CUSTOMER_PASSWORD },
      }),
    });

  it("carries the app's contact details sealed to the customer's database, then forgets them", async () => {
    const room = `session-${Date.now()}`;
    const user = await clients.join(
      signaling.wsUrl,
      await demoToken({ room, identity: 'ext-555', role: 'end_user', phoneNumber: '(415) 555-0132', deviceIds: ['install-7f3a'], crmContactId: 'crm-42' }),
    );
    const agent = await clients.join(signaling.wsUrl, await demoToken({ room, identity: 'agent-5', role: 'agent' }));
    // While the room lives, its record holds the participants sealed.
    const sessionsKv = await new Kvm(nc).open(buckets.roomSessions);
    const live = await sessionsKv.get(kvKeys.room('demo', room));
    expect(live?.length).toBeGreaterThan(0);
    expect(Buffer.from(live!.value).includes('5550132')).toBe(false);
    await user.client.request('leave');
    await agent.client.request('leave');

    // Announced (no destination yet, so it waits), sealed in the stream as well.
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => ((await jsm.streams.info(streams.sessions.name, { subjects_filter: subjects.sessionEnded('demo') })).state.messages > 0 ? true : undefined), 10_000, 'session.ended');
    const pending = await (await jetstream(nc).consumers.get(streams.sessions.name, { filter_subjects: subjects.sessionEnded('demo') })).next({ expires: 2_000 });
    expect(pending).toBeTruthy();
    expect(Buffer.from(pending!.data).includes('5550132')).toBe(false);
    expect(Buffer.from(pending!.data).includes('install-7f3a')).toBe(false);
    expect((await sessionsKv.get(kvKeys.room('demo', room)))?.operation ?? 'PURGE').not.toBe('PUT');

    // The tenant connects its database: the session arrives with the details, in E.164.
    const put = await connectWarehouse();
    expect(put.status).toBe(200);
    const customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await customerDb.connect();
    try {
      const row = await waitFor(
        async () => (await customerDb.query("select room, contacts from gateway_sessions where kind = 'session' and room = $1", [room]).catch(() => ({ rows: [] }))).rows[0],
        15_000,
        'the session row',
      );
      const endUser = row.contacts.find((c: { role: string }) => c.role === 'end_user');
      expect(endUser).toMatchObject({ externalId: 'ext-555', crmContactId: 'crm-42', phoneNumber: '+14155550132', deviceIds: ['install-7f3a'] });
      expect(row.contacts.find((c: { role: string }) => c.role === 'agent')).toMatchObject({ externalId: 'agent-5' });
    } finally {
      await customerDb.end();
    }
    // Delivered: the event is erased, so the phone number is gone from the platform.
    await waitFor(async () => ((await jsm.streams.info(streams.sessions.name)).state.messages === 0 ? true : undefined), 10_000, 'the event erased');
  });

  it('finishes a session whose finisher died after taking it, so its session.ended is not lost', async () => {
    // What a replica leaves when it dies right after claiming an ended room: the ending record.
    const room = `orphan-${Date.now()}`;
    const sessionId = `SE_orphan${Date.now()}`;
    const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });
    const participant = { participantId: 'PA_gone', role: 'end_user', externalId: 'ext-orphan', crmContactId: '', phoneNumber: '+14155550199', deviceIds: [], joinedAtMs: Date.now() - 60_000 };
    const record = RoomSessionRecord.encode({ sessionId, startedAtMs: Date.now() - 60_000, sealedParticipants: await sealParticipants(keyring, 'demo', sessionId, [participant]) }).finish();
    expect((await connectWarehouse()).status).toBe(200);
    const sessionsKv = await new Kvm(nc).open(buckets.roomSessions);
    await sessionsKv.create(kvKeys.endingRoomSession('demo', room, sessionId), record);

    // A sweep on a live replica finishes it once it is stale, then removes the ending record.
    const row = await waitFor(
      async () => {
        const customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
        await customerDb.connect();
        try {
          return (await customerDb.query("select contacts from gateway_sessions where kind = 'session' and room = $1", [room])).rows[0];
        } finally {
          await customerDb.end();
        }
      },
      20_000,
      'the orphaned session delivered',
    );
    expect(row.contacts[0]).toMatchObject({ externalId: 'ext-orphan', phoneNumber: '+14155550199' });
    // Announced again by a later sweep (the finisher died between announcing and clearing), a
    // session is dropped as a duplicate: the window outlasts the sweep's wait.
    expect((await (await jetstreamManager(nc)).streams.info(streams.sessions.name)).config.duplicate_window).toBe(60 * 60 * 1e9);
    await waitFor(async () => ((await sessionsKv.get(kvKeys.endingRoomSession('demo', room, sessionId)))?.operation ?? 'PURGE') !== 'PUT', 5_000, 'the ending record gone');
  });
});
