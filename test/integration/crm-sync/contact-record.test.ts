import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { ensureStream, streams, subjects } from '@gateway/common';
import { Channel, ContactRecord } from '@gateway/proto/gateway/routing/v1/routing';
import { PostgresServer, waitFor, type startCrmSyncProcess } from '@gateway/testing';
import { S3ContractServer } from '../../contracts/s3/server.js';
import { adminApi, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';

const BUCKET = 'customer-contacts';
const CUSTOMER = { accessKeyId: 'AKIACUSTOMERCONTACTS', secretAccessKey: 'customer-s3-secret-contacts-0451' };
const CUSTOMER_PASSWORD = 'customer-db-password-contacts';

/**
 * A contact-center contact's record (routing's `contact.ended` on the sessions stream) through
 * crm-sync as in production: its own process and nats-server, a customer's S3 bucket (the
 * contract server) and PostgreSQL database. While no destination is connected the record waits,
 * and data-subject requests export, correct and erase it; once connected, records are delivered
 * to both destinations and deleted from the stream.
 */
describe('crm-sync: contact records', () => {
  let stack: CrmSyncStack;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let s3: S3ContractServer;
  let postgres: PostgresServer;
  let customerDb: pg.Client;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;

  beforeAll(async () => {
    // One after the other: a shared machine of two cores starts them no slower.
    postgres = await PostgresServer.start();
    s3 = await S3ContractServer.start({ buckets: [BUCKET], credentials: [CUSTOMER] });
    stack = await startCrmSyncStack();
    ({ nc, crm } = stack);
    jsm = await jetstream(nc).jetstreamManager();
    await ensureStream(nc, streams.sessions);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await customerDb.connect();
  }, 60_000);

  afterAll(async () => {
    await customerDb?.end();
    await stack?.stop();
    await s3?.close();
    await postgres?.stop();
  });

  const admin = (path: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(path, init);

  const record = (contactId: string, fields: Partial<ContactRecord> = {}) =>
    ContactRecord.fromPartial({
      tenant: 'demo',
      contactId,
      queueId: 'billing',
      channel: Channel.CHANNEL_VOICE,
      endUser: 'ext-1',
      crmContactId: '',
      requestedAtMs: Date.now() - 400_000,
      connectedAtMs: Date.now() - 370_000,
      endedAtMs: Date.now() - 10_000,
      waitSeconds: 30,
      handleSeconds: 360,
      agentId: 'AG_1',
      outcome: 'completed',
      transfers: [],
      disposition: 'Resolved',
      notes: 'Refund issued.',
      room: 'r-contact',
      overflowedFrom: [],
      callback: false,
      ...fields,
    });

  /** Publishes a record as routing does (message id `contact-<contactId>`); returns its sequence in the stream. */
  const publish = async (r: ContactRecord, subject = subjects.contactEnded('demo')) =>
    (await jetstream(nc).publish(subject, ContactRecord.encode(r).finish(), { msgID: `contact-${r.contactId}` })).seq;
  const stored = (seq: number) =>
    jsm.streams.getMessage(streams.sessions.name, { seq }).then(
      (m) => m !== null,
      () => false,
    );

  it('waiting for a destination, a record is exported, corrected and erased by the end user it names', async () => {
    const mine = await publish(record('CT_dsr1', { endUser: 'ext-dsr', crmContactId: 'CRM-DSR-1' }));
    const theirs = await publish(record('CT_dsr2', { endUser: 'ext-other' }));

    const bundle = await (await admin('/v1/data-subjects/export?externalId=ext-dsr')).json();
    expect(bundle.pendingDeliveries).toHaveLength(1);
    expect(bundle.pendingDeliveries[0]).toMatchObject({
      kind: 'contact',
      deliveryId: 'contact-CT_dsr1',
      contact: { role: 'end_user', externalId: 'ext-dsr', crmContactId: 'CRM-DSR-1' },
      metadata: { contactId: 'CT_dsr1', queueId: 'billing', channel: 'voice', outcome: 'completed', disposition: 'Resolved', notes: 'Refund issued.' },
      artifacts: [],
    });

    // A corrected CRM contact id: the record is published again with it, the earlier one removed.
    const rectified = await admin('/v1/data-subjects?crmContactId=CRM-DSR-1', { method: 'PATCH', body: JSON.stringify({ crmContactId: 'CRM-DSR-2' }) });
    expect(rectified.status).toBe(200);
    expect(await rectified.json()).toMatchObject({ deliveries: 1 });
    expect(await stored(mine)).toBe(false);
    expect((await (await admin('/v1/data-subjects/export?crmContactId=CRM-DSR-1')).json()).pendingDeliveries).toEqual([]);
    expect((await (await admin('/v1/data-subjects/export?crmContactId=CRM-DSR-2')).json()).pendingDeliveries).toEqual([
      expect.objectContaining({ deliveryId: 'contact-CT_dsr1', contact: expect.objectContaining({ externalId: 'ext-dsr', crmContactId: 'CRM-DSR-2' }) }),
    ]);

    const erased = await admin('/v1/data-subjects?crmContactId=CRM-DSR-2', { method: 'DELETE' });
    expect(erased.status).toBe(200);
    expect(await erased.json()).toMatchObject({ deliveries: 1, artifacts: 0 });
    expect((await (await admin('/v1/data-subjects/export?externalId=ext-dsr')).json()).pendingDeliveries).toEqual([]);
    // Someone else's record still waits.
    expect(await stored(theirs)).toBe(true);
  });

  it('delivers records to S3 and PostgreSQL, then deletes them from the stream; a malformed one is deleted undelivered', async () => {
    const s3Connector = { type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url, maxAttempts: 2 }, secrets: CUSTOMER };
    const pgConnector = { type: 'postgres', config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: CUSTOMER_PASSWORD } };
    expect((await admin('/v1/connectors/bucket', { method: 'PUT', body: JSON.stringify(s3Connector) })).status).toBe(200);
    expect((await admin('/v1/connectors/warehouse', { method: 'PUT', body: JSON.stringify(pgConnector) })).status).toBe(200);

    const seq = await publish(record('CT_del1', { transfers: [{ fromAgentId: 'AG_0', toQueueId: 'billing', toAgentId: 'AG_1', warm: false, atMs: Date.now() - 380_000 }] }));
    const abandoned = await publish(record('CT_del2', { outcome: 'abandoned', connectedAtMs: 0, handleSeconds: 0, agentId: '', disposition: '', notes: '', room: '' }));
    // Another tenant's record on this tenant's subject: never delivered, never kept.
    const foreign = await publish(record('CT_foreign', { tenant: 'globex' }));

    const manifest = await waitFor(() => s3.object(BUCKET, 'gateway/demo/contact/contact-CT_del1/manifest.json'), 20_000, 'the record in S3');
    expect(JSON.parse(manifest.body.toString())).toMatchObject({
      kind: 'contact',
      deliveryId: 'contact-CT_del1',
      contacts: [{ role: 'end_user', externalId: 'ext-1' }],
      metadata: { contactId: 'CT_del1', queueId: 'billing', waitSeconds: 30, handleSeconds: 360, agentId: 'AG_1', transfers: [{ fromAgentId: 'AG_0', toAgentId: 'AG_1', warm: false }] },
    });
    const row = await waitFor(
      async () => (await customerDb.query('select * from gateway_contacts where contact_id = $1', ['CT_del1']).catch(() => undefined))?.rows[0],
      20_000,
      'the record in PostgreSQL',
    );
    expect(row).toMatchObject({
      delivery_id: 'contact-CT_del1',
      queue_id: 'billing',
      channel: 'voice',
      agent_id: 'AG_1',
      outcome: 'completed',
      disposition: 'Resolved',
      notes: 'Refund issued.',
      wait_seconds: '30',
      handle_seconds: '360',
      transfers: [expect.objectContaining({ fromAgentId: 'AG_0', toQueueId: 'billing' })],
    });
    expect(row.connected_at).toBeInstanceOf(Date);
    const session = (await customerDb.query('select kind, contacts, metadata from gateway_sessions where delivery_id = $1', ['contact-CT_del1'])).rows[0];
    expect(session).toMatchObject({ kind: 'contact', contacts: [{ externalId: 'ext-1' }], metadata: { outcome: 'completed' } });

    const unanswered = await waitFor(
      async () => (await customerDb.query('select * from gateway_contacts where contact_id = $1', ['CT_del2']).catch(() => undefined))?.rows[0],
      20_000,
      'the abandoned record in PostgreSQL',
    );
    expect(unanswered).toMatchObject({ outcome: 'abandoned', connected_at: null, agent_id: null, disposition: null, notes: null, room: null });

    // Delivered (and the one left waiting by the first test with them), refused: none stays on the stream.
    for (const s of [seq, abandoned, foreign]) await waitFor(async () => !(await stored(s)), 10_000, 'the record deleted from the stream');
    await waitFor(async () => (await jsm.streams.info(streams.sessions.name, { subjects_filter: subjects.contactEnded('demo') })).state.messages === 0, 20_000, 'no record left on the stream');
    expect(s3.object(BUCKET, 'gateway/demo/contact/contact-CT_dsr2/manifest.json')).toBeDefined();
    expect(s3.object(BUCKET, 'gateway/demo/contact/contact-CT_foreign/manifest.json')).toBeUndefined();
    expect(crm.logs).not.toContain('Refund issued');
  });
});
