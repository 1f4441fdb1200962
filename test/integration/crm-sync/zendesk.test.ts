import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ArtifactStore } from '@gateway/common';
import { waitFor, type startCrmSyncProcess } from '@gateway/testing';
import { ZendeskContractServer } from '../../contracts/zendesk/server.js';
import { adminApi, startCrmSyncStack, type CrmSyncStack, publishTranscript as publishShared } from '../../support/crmSync.js';

const EMAIL = 'agent@acme.example';
const API_TOKEN = 'zendesk-api-token-0451';

/**
 * crm-sync against nats-server and the Zendesk contract server: a transcript becomes one
 * Zendesk ticket with its files on a private comment, then our copies are deleted.
 */
describe('crm-sync to Zendesk', () => {
  let stack: CrmSyncStack;
  let nc: NatsConnection;
  let zendesk: ZendeskContractServer;
  let crm: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  let artifacts: ArtifactStore;

  beforeAll(async () => {
    [stack, zendesk] = await Promise.all([startCrmSyncStack(), ZendeskContractServer.start({ email: EMAIL, apiToken: API_TOKEN })]);
    ({ nc, crm, artifacts } = stack);
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await zendesk?.close();
  });

  const admin = (path: string, init: Parameters<ReturnType<typeof adminApi>>[1] = {}) => adminApi(crm.url)(path, init);
  const connector = (apiToken: string) => ({ type: 'zendesk', config: { subdomainUrl: zendesk.url, email: EMAIL }, secrets: { apiToken } });

  const publishTranscript = (conversationId: string, files: Array<{ contentType: string; bytes: Buffer }>) =>
    publishShared(nc, artifacts, { conversationId, files, contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: 'crm-contact-42', crmContactId: '' }] });

  const ticketWithFiles = (conversationId: string, files: number, timeoutMs = 15_000) =>
    waitFor(
      () => {
        const [ticket] = zendesk.ticketsByExternalId(conversationId);
        return ticket && zendesk.ticketAttachments(ticket.id).length === files ? ticket : undefined;
      },
      timeoutMs,
      'a Zendesk ticket with the files',
    );

  it('connects a zendesk connector, tests it, and refuses a wrong token or a plain-http remote address', async () => {
    expect((await admin('/v1/connectors/zendesk', { method: 'PUT', body: JSON.stringify(connector('wrong-token')) })).status).toBe(200);
    const failing = await (await admin('/v1/connectors/zendesk/test', { method: 'POST' })).json();
    expect(failing.error).toMatchObject({ code: 'DESTINATION_FAILED' });
    // What Zendesk said is in the log line the reference leads to, not in the answer.
    expect(failing.error.message).not.toMatch(/anonymous/);
    const reference = /reference ([0-9a-f]{12})/.exec(failing.error.message)![1]!;
    await waitFor(() => crm.logs.split('\n').find((line) => line.includes(reference) && line.includes('anonymous')), 5_000, 'the failure in the log');
    expect(JSON.stringify(failing)).not.toContain('wrong-token');
    expect(crm.logs).not.toContain('wrong-token');

    const remote = await admin('/v1/connectors/zendesk', { method: 'PUT', body: JSON.stringify({ ...connector(API_TOKEN), config: { subdomainUrl: 'http://acme.zendesk.com', email: EMAIL } }) });
    expect(remote.status).toBe(400);

    expect((await admin('/v1/connectors/zendesk', { method: 'PUT', body: JSON.stringify(connector(API_TOKEN)) })).status).toBe(200);
    const shown = await (await admin('/v1/connectors/zendesk')).json();
    expect(shown).toMatchObject({ type: 'zendesk', config: { subdomainUrl: zendesk.url, email: EMAIL } });
    expect(JSON.stringify(shown)).not.toContain(API_TOKEN);
    expect(await (await admin('/v1/connectors/zendesk/test', { method: 'POST' })).json()).toEqual({ ok: true });
  });

  it('delivers a transcript as one ticket with its files, then deletes our copies', async () => {
    const conversationId = `CV_zd${Date.now()}`;
    const files = [
      { contentType: 'application/json', bytes: Buffer.from('{"messages":[{"text":"[CARD]"}]}') },
      { contentType: 'text/plain', bytes: randomBytes(64 * 1024) },
    ];
    const ids = await publishTranscript(conversationId, files);
    const ticket = await ticketWithFiles(conversationId, 2);
    const attached = zendesk.ticketAttachments(ticket.id);
    expect(attached.map((a) => a.content_type)).toEqual(['application/json', 'text/plain']);
    expect(attached.map((a) => a.bytes.equals(files[attached.indexOf(a)]!.bytes))).toEqual([true, true]);
    expect(zendesk.comments.get(ticket.id)![0]!.public).toBe(false);
    expect(zendesk.users.get(ticket.requester_id)?.external_id).toBe('crm-contact-42');

    for (const id of ids) await waitFor(async () => (await artifacts.get('demo', id).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');
    expect(zendesk.ticketsByExternalId(conversationId)).toHaveLength(1);
  });

  it('ends with exactly one ticket after a 429 and 503s on the first attempts', async () => {
    const before = zendesk.requests.length;
    zendesk.inject({ rateLimited: 1 }, { path: '/api/v2/uploads' });
    zendesk.inject({ status: 503 }, { path: '/api/v2/tickets', method: 'POST', times: 2 });
    const conversationId = `CV_zdretry${Date.now()}`;
    const files = [{ contentType: 'application/json', bytes: Buffer.from('{"messages":[]}') }];
    const ids = await publishTranscript(conversationId, files);
    const ticket = await ticketWithFiles(conversationId, 1);
    expect(zendesk.ticketAttachments(ticket.id)[0]!.bytes.equals(files[0]!.bytes)).toBe(true);
    await waitFor(async () => (await artifacts.get('demo', ids[0]!).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'artifact purged');
    // Two refused creations and one that worked; a 429 waited out inside the adapter.
    const requests = zendesk.requests.slice(before);
    expect(requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/tickets').map((r) => r.status)).toEqual([503, 503, 201]);
    expect(requests.some((r) => r.path === '/api/v2/uploads' && r.status === 429)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(zendesk.ticketsByExternalId(conversationId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(ticket.id)).toHaveLength(1);
    expect(crm.logs).not.toContain(API_TOKEN);
  });

  it('asks again no sooner than Retry-After says: a short wait in place, a long one as the redelivery delay', async () => {
    const ticketPosts = (since: number) => zendesk.requests.slice(since).filter((r) => r.method === 'POST' && r.path === '/api/v2/tickets');
    // Short (up to 10 s): waited out inside the attempt.
    let before = zendesk.requests.length;
    zendesk.inject({ status: 429, retryAfterSeconds: 2 }, { path: '/api/v2/tickets', method: 'POST' });
    const short = `CV_zdshort${Date.now()}`;
    await publishTranscript(short, [{ contentType: 'text/plain', bytes: Buffer.from('short wait') }]);
    await ticketWithFiles(short, 1);
    const [limited, next] = ticketPosts(before);
    expect(limited!.status).toBe(429);
    expect(next!.atMs - limited!.atMs, 'the wait after a 2 s Retry-After').toBeGreaterThanOrEqual(2_000);

    // Long: the attempt ends and the event is handed back for that long (retries here are at most 1 s apart otherwise).
    before = zendesk.requests.length;
    zendesk.inject({ status: 429, retryAfterSeconds: 11 }, { path: '/api/v2/tickets', method: 'POST' });
    const long = `CV_zdlong${Date.now()}`;
    await publishTranscript(long, [{ contentType: 'text/plain', bytes: Buffer.from('long wait') }]);
    await ticketWithFiles(long, 1, 30_000);
    const requests = zendesk.requests.slice(before);
    const refused = requests.find((r) => r.status === 429)!;
    const after = requests.filter((r) => r.atMs > refused.atMs);
    expect(after.length).toBeGreaterThan(0);
    // Nothing at all was asked of Zendesk for it until Retry-After had passed.
    expect(after[0]!.atMs - refused.atMs, 'the next attempt after an 11 s Retry-After').toBeGreaterThanOrEqual(11_000);
    expect(zendesk.ticketsByExternalId(long)).toHaveLength(1);
  }, 40_000);
});
