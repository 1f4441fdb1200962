import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { type ArtifactStore, ensureStream, streams, subjects } from '@gateway/common';
import { TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { waitFor, type startCrmSyncProcess } from '@gateway/testing';
import { SalesforceContractServer } from '../../contracts/salesforce/server.js';
import { adminApi, publishTranscript, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';

const CLIENT_ID = '3MVG9-integration-consumer-key';
const CLIENT_SECRET = 'consumer-secret-integration-0451';

/**
 * crm-sync as a process, against nats-server and the Salesforce contract server: a transcript
 * becomes a Task and Files on the end user's Contact, exactly once through injected faults,
 * and our copies are deleted afterwards.
 */
describe('crm-sync to Salesforce (contract server)', () => {
  let stack: CrmSyncStack;
  let nc: NatsConnection;
  let salesforce: SalesforceContractServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let artifacts: ArtifactStore;

  beforeAll(async () => {
    [stack, salesforce] = await Promise.all([startCrmSyncStack({ CRM_SYNC_RETRY_MAX_SECONDS: '0.5' }), SalesforceContractServer.start({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET })]);
    ({ nc, crm, artifacts } = stack);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await salesforce?.stop();
  });

  const admin = (path: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(path, init);

  it('connects a salesforce connector, tests it, and never shows its secret', async () => {
    const connector = {
      type: 'salesforce',
      config: { loginUrl: salesforce.url, authFlow: 'client_credentials', clientId: CLIENT_ID, requestTimeoutMs: 1_000 },
      secrets: { clientSecret: CLIENT_SECRET },
    };
    expect((await admin('/v1/connectors/crm', { method: 'PUT', body: JSON.stringify(connector) })).status).toBe(200);
    const shown = await (await admin('/v1/connectors/crm')).json();
    expect(shown).toMatchObject({ name: 'crm', type: 'salesforce', config: { apiVersion: 'v60.0', contactExternalIdField: 'Gateway_External_Id__c' } });
    expect(JSON.stringify(shown)).not.toContain(CLIENT_SECRET);
    expect(await (await admin('/v1/connectors/crm/test', { method: 'POST' })).json()).toEqual({ ok: true });
    // A jwt_bearer connector without a username is refused at once.
    const bad = await admin('/v1/connectors/bad', { method: 'PUT', body: JSON.stringify({ ...connector, config: { ...connector.config, authFlow: 'jwt_bearer' } }) });
    expect(bad.status).toBe(400);
  });

  it('delivers a transcript exactly once through faults, then deletes our copies', async () => {
    const conversationId = `CV_sf${Date.now()}`;
    const files = [
      { id: `${conversationId}-json`, data: Buffer.from('{"messages":[{"text":"[EMAIL]"}]}'), contentType: 'application/json' },
      { id: `${conversationId}-txt`, data: Buffer.from('agent: hello\nuser: [CARD]\n'), contentType: 'text/plain' },
    ];
    for (const f of files) await artifacts.put('demo', f.id, Readable.from([f.data]), f.contentType);

    // First attempts fail: the Task is created but its answer lost, then Salesforce is unavailable.
    salesforce.inject({ resetConnection: true }, { match: { method: 'POST', path: '/sobjects/Task' }, afterProcessing: true });
    salesforce.inject({ status: 503 }, { match: { method: 'POST', path: '/sobjects/ContentVersion' }, times: 2 });

    const event = TranscriptReady.encode({
      tenant: 'demo',
      room: 'r-1',
      conversationId,
      artifacts: files.map((f) => ({ artifactId: f.id, kind: 'transcript', contentType: f.contentType, participantId: '', sizeBytes: f.data.length, durationMs: 0, part: 0 })),
      messageCount: 2,
      startedAtMs: Date.now() - 60_000,
      endedAtMs: Date.now(),
      contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: 'customer-42', crmContactId: '' }],
      smartActions: [],
    }).finish();
    await ensureStream(nc, streams.transcripts);
    await jetstream(nc).publish(subjects.transcriptReady('demo'), event);

    const versions = await waitFor(
      () => {
        const found = salesforce.list('ContentVersion').filter((v) => String(v.Title).includes(conversationId));
        return found.length === 2 ? found : undefined;
      },
      15_000,
      'files in Salesforce',
    );
    const contact = salesforce.list('Contact').find((c) => c.Gateway_External_Id__c === 'customer-42')!;
    expect(contact).toBeDefined();
    for (const f of files) {
      const version = versions.find((v) => v.Title === `Chat transcript ${f.id}`)!;
      expect((version.VersionData as Buffer).equals(f.data)).toBe(true);
      expect(version.FirstPublishLocationId).toBe(contact.Id);
    }

    // Our copies are gone once Salesforce has them.
    for (const f of files) await waitFor(async () => (await artifacts.get('demo', f.id).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');

    // Exactly once, despite three failed attempts.
    const tasks = salesforce.list('Task').filter((t) => t.CallObject === conversationId);
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({ WhoId: contact.Id, Subject: 'Chat transcript', Status: 'Completed' });
    expect(salesforce.list('Contact')).toHaveLength(1);
    expect(salesforce.requests.filter((r) => r.method === 'POST' && r.path === '/sobjects/Task')).toHaveLength(1);
    expect(salesforce.requests.filter((r) => r.status === 503)).toHaveLength(2);
    // Tokens are cached across deliveries (the connector test and every attempt shared one).
    expect(salesforce.tokenRequests).toBe(1);
  });

  // Last in this file: the event it leaves is not due again for 15 minutes.
  it('backs off 15 minutes on REQUEST_LIMIT_EXCEEDED: the next attempt is scheduled that far, and nothing is asked meanwhile', async () => {
    const conversationId = `CV_sflimit${Date.now()}`;
    const before = salesforce.requests.length;
    salesforce.inject({ limitExceeded: true });
    const [artifactId] = await publishTranscript(nc, artifacts, { conversationId, files: [{ contentType: 'text/plain', bytes: Buffer.from('over the limit') }] });
    const line = await waitFor(() => crm.logs.split('\n').find((l) => l.includes(conversationId) && l.includes('retryInMs')), 10_000, 'the refused attempt');
    // The scheduled redelivery (the NAK delay) is the 15 minutes, not the 0.5 s retries of this stack.
    expect(Number(/"retryInMs":(\d+)/.exec(line)?.[1])).toBeGreaterThanOrEqual(15 * 60_000);
    const refused = salesforce.requests.slice(before).find((r) => r.status === 403);
    expect(refused).toBeDefined();
    // Retries here are otherwise at most 0.5 s apart: seconds without a request show the wait is real.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(salesforce.requests.slice(before).filter((r) => r.atMs > refused!.atMs)).toEqual([]);
    expect(
      await artifacts.open('demo', artifactId!).then(
        () => 'held',
        (e) => e.code,
      ),
    ).toBe('held');
  });
});
