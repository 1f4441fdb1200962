import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, GatewayError } from '@gateway/common';
import { ZendeskContractServer } from '../../../../test/contracts/zendesk/server.js';
import { contactDelivery, delivery, memoryArtifact } from '../testing/deliveries.js';
import type { ContactMap, DeliveryArtifact } from './types.js';
import { ZendeskDestination, idempotencyKeyOf, zendeskConfigSchema, type ZendeskOptions } from './zendesk.js';
import { partsOf } from './zendeskTickets.js';

const EMAIL = 'agent@acme.example';
const TOKEN = 'zd-api-token-0451';
const log = createLogger('zendesk-test', 'silent');

class MemoryContacts implements ContactMap {
  readonly map = new Map<string, string>();
  async get(externalId: string) {
    return this.map.get(externalId);
  }
  async set(externalId: string, id: string) {
    this.map.set(externalId, id);
  }
}

/** An end user whose external id must be escaped in a URL. */
const customer = { participantId: 'PA_1', role: 'end_user', externalId: 'ext/1 &x=y', crmContactId: '' };

const artifact = (artifactId: string, contentType: string, bytes: Buffer, kind = 'transcript'): DeliveryArtifact => memoryArtifact({ artifactId, contentType, kind }, bytes);

async function failure(promise: Promise<unknown>): Promise<GatewayError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatewayError);
  return error as GatewayError;
}

describe('Zendesk destination against the contract server', () => {
  let zendesk: ZendeskContractServer;
  let contacts: MemoryContacts;
  const destination = (options: Partial<ZendeskOptions> = {}, apiToken = TOKEN) =>
    new ZendeskDestination(zendeskConfigSchema.parse({ subdomainUrl: zendesk.url, email: EMAIL }), { apiToken }, { contacts, log, checkHost: async () => undefined }, options);

  beforeEach(async () => {
    zendesk = await ZendeskContractServer.start({ email: EMAIL, apiToken: TOKEN });
    contacts = new MemoryContacts();
  });
  afterEach(async () => {
    await zendesk.close();
  });

  it('accepts only https origins (http on this host only)', () => {
    expect(zendeskConfigSchema.parse({ subdomainUrl: 'https://acme.zendesk.com/', email: EMAIL }).subdomainUrl).toBe('https://acme.zendesk.com');
    expect(zendeskConfigSchema.safeParse({ subdomainUrl: 'http://acme.zendesk.com', email: EMAIL }).success).toBe(false);
    expect(zendeskConfigSchema.safeParse({ subdomainUrl: 'https://acme.zendesk.com/api', email: EMAIL }).success).toBe(false);
    expect(zendeskConfigSchema.safeParse({ subdomainUrl: 'https://acme.zendesk.com', email: 'nope' }).success).toBe(false);
  });

  it('test() wants an authenticated agent or admin, and sees through the anonymous user', async () => {
    await destination().test();
    const anonymous = await failure(destination({}, 'wrong-token').test());
    expect(anonymous.code).toBe('DESTINATION_FAILED');
    expect(anonymous.message).toMatch(/anonymous/);
    expect(anonymous.message).not.toContain('wrong-token');
    await zendesk.close();
    zendesk = await ZendeskContractServer.start({ email: EMAIL, apiToken: TOKEN, role: 'end-user' });
    expect((await failure(destination().test())).message).toMatch(/agent or an admin/);
  });

  it('finds or creates the end user once and caches the id in the ContactMap', async () => {
    const d = destination();
    await d.deliver(delivery({ contacts: [customer] }));
    expect(zendesk.count('GET', /^\/api\/v2\/users\/search$/)).toBe(1);
    expect(zendesk.count('POST', /^\/api\/v2\/users$/)).toBe(1);
    const search = zendesk.requests.find((r) => r.path === '/api/v2/users/search')!;
    expect(search.query).toEqual({ external_id: 'ext/1 &x=y' });
    const user = [...zendesk.users.values()].find((u) => u.external_id === 'ext/1 &x=y')!;
    expect(user).toMatchObject({ role: 'end-user', name: 'Gateway end user' });
    expect(contacts.map.get('ext/1 &x=y')).toBe(String(user.id));

    // The next delivery for the same end user asks Zendesk nothing about users.
    const second = delivery({ contacts: [customer] });
    await d.deliver(second);
    expect(zendesk.count('GET', /^\/api\/v2\/users\/search$/)).toBe(1);
    expect(zendesk.count('POST', /^\/api\/v2\/users$/)).toBe(1);
    expect(zendesk.ticketsByExternalId(second.deliveryId)[0]!.requester_id).toBe(user.id);

    // A user the customer already has is found, not created again; its name is left alone.
    const fresh = new MemoryContacts();
    const other = new ZendeskDestination(zendeskConfigSchema.parse({ subdomainUrl: zendesk.url, email: EMAIL }), { apiToken: TOKEN }, { contacts: fresh, log, checkHost: async () => undefined });
    user.name = 'Ada Customer';
    await other.deliver(delivery({ contacts: [customer] }));
    expect(zendesk.count('POST', /^\/api\/v2\/users$/)).toBe(1);
    expect(user.name).toBe('Ada Customer');
    expect(fresh.map.get('ext/1 &x=y')).toBe(String(user.id));
  });

  it('looks the user up again when the cached one was deleted in Zendesk', async () => {
    await contacts.set('ext/1 &x=y', '999999');
    const d = delivery({ contacts: [customer] });
    await destination().deliver(d);
    const ticket = zendesk.ticketsByExternalId(d.deliveryId)[0]!;
    expect(zendesk.users.get(ticket.requester_id)?.external_id).toBe('ext/1 &x=y');
    expect(contacts.map.get('ext/1 &x=y')).toBe(String(ticket.requester_id));
    // Zendesk kept the refusal under the key, so the creation with the right requester is another
    // payload under it (400); no ticket has the delivery's external_id, so it is created without the key.
    const creates = zendesk.requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/tickets');
    expect(creates.map((r) => [r.status, r.idempotencyKey])).toEqual([
      [422, idempotencyKeyOf(d.deliveryId)],
      [400, idempotencyKeyOf(d.deliveryId)],
      [201, undefined],
    ]);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
  });

  it('uploads the bytes with their content types and attaches them to one private comment, confirmed by the audit the creation answers with', async () => {
    const d = delivery();
    const before = zendesk.requests.length;
    await destination().deliver(d);
    // Looked for, its end user found or made, two uploads, created: the files are confirmed by the creation's audit, the comments not read back.
    expect(zendesk.requests.slice(before).map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /api/v2/tickets',
      'GET /api/v2/users/search',
      'POST /api/v2/users',
      'POST /api/v2/uploads',
      'POST /api/v2/uploads',
      'POST /api/v2/tickets',
    ]);
    const [ticket] = zendesk.ticketsByExternalId(d.deliveryId);
    expect(ticket).toMatchObject({ external_id: d.deliveryId, tags: expect.arrayContaining(['gateway']), subject: 'Gateway transcript: room r-1' });
    const comments = zendesk.comments.get(ticket!.id)!;
    expect(comments).toHaveLength(1);
    expect(comments[0]!.public).toBe(false);
    expect(comments[0]!.body).toContain(`${d.deliveryId}-json.json`);
    const files = zendesk.ticketAttachments(ticket!.id);
    expect(files.map((f) => [f.file_name, f.content_type, f.bytes.toString()])).toEqual([
      [`${d.deliveryId}-json.json`, 'application/json', '{"messages":[]}'],
      [`${d.deliveryId}-txt.txt`, 'text/plain', 'hello\n'],
    ]);
    // Two uploads under one token: the second passed the first one's token.
    const uploads = zendesk.requests.filter((r) => r.path === '/api/v2/uploads');
    expect(uploads[0]!.query.token).toBeUndefined();
    expect(uploads[1]!.query.token).toBeTruthy();
    // The content URL serves the same bytes (to an authenticated user: private attachments).
    const res = await fetch(files[0]!.content_url, { headers: { authorization: `Basic ${Buffer.from(`${EMAIL}/token:${TOKEN}`).toString('base64')}` } });
    expect(await res.text()).toBe('{"messages":[]}');
  });

  it("logs a contact-center contact's record as a ticket of the end user: facts and notes in a private comment, outcome and disposition as tags, once", async () => {
    const d = contactDelivery({ disposition: 'Refund issued / Billing' });
    await destination().deliver(d);
    await destination().deliver(d);
    const tickets = zendesk.ticketsByExternalId('contact-CT_1');
    expect(tickets).toHaveLength(1);
    const ticket = tickets[0]!;
    expect(ticket).toMatchObject({ subject: 'Gateway contact: queue billing', tags: ['gateway', 'gateway_contact', 'gateway_outcome_completed', 'gateway_disposition_refund_issued_billing'] });
    expect(ticket.requester_id).toBe(Number(contacts.map.get('ext-1')));
    const comments = zendesk.comments.get(ticket.id)!;
    expect(comments).toHaveLength(1);
    expect(comments[0]!.public).toBe(false);
    const body = comments[0]!.body;
    for (const fact of [
      'Queue: billing (overflowed from general)',
      'Outcome: completed',
      'Waited 30 s, handled 300 s by agent AG_1.',
      'Disposition: Refund issued / Billing',
      'from agent AG_0 to agent AG_1 (warm)',
    ]) {
      expect(body).toContain(fact);
    }
    expect(body.endsWith('Notes:\nCustomer asked for a refund.\nSent by email.')).toBe(true);
    expect(zendesk.ticketAttachments(ticket.id)).toEqual([]);
  });

  it('splits a file over the limit into parts that concatenate back to it', async () => {
    await zendesk.close();
    zendesk = await ZendeskContractServer.start({ email: EMAIL, apiToken: TOKEN, maxUploadBytes: 1000 });
    const big = randomBytes(2500);
    const d = delivery();
    d.artifacts = [artifact(`${d.deliveryId}-voice`, 'audio/ogg', big, 'voice')];
    await destination({ maxUploadBytes: 1000 }).deliver(d);
    const files = zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id);
    const name = `${d.deliveryId}-voice.ogg`;
    expect(files.map((f) => f.file_name)).toEqual([`${name}.part1of3`, `${name}.part2of3`, `${name}.part3of3`]);
    expect(files.map((f) => f.size)).toEqual([1000, 1000, 500]);
    expect(files.every((f) => f.content_type === 'application/octet-stream')).toBe(true);
    expect(Buffer.concat(files.map((f) => f.bytes)).equals(big)).toBe(true);
    expect(zendesk.comments.get(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)![0]!.body).toContain('concatenate them in that order');

    // The server's limit holds: a file over it is refused, and the adapter says so without values.
    const refused = await failure(destination({ maxUploadBytes: 5000 }).deliver(delivery({ artifacts: [artifact('A_big', 'audio/ogg', big)] })));
    expect(refused.message).toMatch(/HTTP 413/);
    expect(partsOf(0, 10)).toEqual([[0, 0]]);
    expect(partsOf(20, 10)).toEqual([
      [0, 10],
      [10, 20],
    ]);
  });

  it('delivers twice into one ticket with one set of attachments', async () => {
    const d = delivery();
    await destination().deliver(d);
    const uploadsBefore = zendesk.count('POST', /^\/api\/v2\/uploads$/);
    await destination().deliver(d);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(2);
    expect(zendesk.count('POST', /^\/api\/v2\/uploads$/)).toBe(uploadsBefore);
    expect(zendesk.count('POST', /^\/api\/v2\/tickets$/)).toBe(1);
  });

  it('adds only the files an existing ticket lacks, and reports a closed ticket by codes only', async () => {
    const d = delivery();
    const [json, txt] = d.artifacts;
    await destination().deliver({ ...d, artifacts: [json!] });
    await destination().deliver(d);
    const ticket = zendesk.ticketsByExternalId(d.deliveryId)[0]!;
    expect(zendesk.comments.get(ticket.id)!.map((c) => c.attachments.map((a) => a.file_name))).toEqual([[`${json!.artifactId}.json`], [`${txt!.artifactId}.txt`]]);

    ticket.status = 'closed';
    const extra = artifact(`${d.deliveryId}-png`, 'image/png', Buffer.from('png'));
    const error = await failure(destination().deliver({ ...d, artifacts: [...d.artifacts, extra] }));
    expect(error.message).toContain('HTTP 422 RecordInvalid; status: InvalidValue');
    expect(error.message).not.toContain('closed prevents');
  });

  it('waits out a 429 whose Retry-After is short, at least as long as asked', async () => {
    zendesk.inject({ rateLimited: 1 }, { path: '/api/v2/uploads' });
    const d = delivery();
    // Each wait it asks for, with the uploads Zendesk had seen by then.
    const uploads = () => zendesk.requests.filter((r) => r.path === '/api/v2/uploads').length;
    const waits: Array<{ ms: number; uploads: number }> = [];
    await destination({ sleep: async (ms) => void waits.push({ ms, uploads: uploads() }) }).deliver(d);
    // One wait, as long as Retry-After asked (1 s), between the refused upload and its second sending.
    expect(waits).toEqual([{ ms: 1000, uploads: 1 }]);
    expect(uploads()).toBe(3);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(2);
  });

  it('fails with a retry hint when the rate limit asks for a long wait, and succeeds once the window passes', async () => {
    zendesk.setRequestsPerMinute(2);
    const d = delivery();
    const error = await failure(destination().deliver(d));
    expect(error.code).toBe('DESTINATION_FAILED');
    expect(error.message).toMatch(/rate limit reached .*retry after \d+ s/);
    expect(error.details).toMatchObject({ status: 429 });
    expect(error.details.retryAfterMs).toBeGreaterThan(10_000);
    zendesk.advanceClock(60_000);
    zendesk.setRequestsPerMinute(700);
    await destination().deliver(d);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
  });

  it('reports bad credentials as DESTINATION_FAILED without the token', async () => {
    const error = await failure(destination({}, 'not-the-token').deliver(delivery()));
    expect(error.code).toBe('DESTINATION_FAILED');
    expect(error.message).toMatch(/credentials .*HTTP 401/);
    expect(error.message).not.toContain('not-the-token');
  });

  it('a 5xx on ticket creation fails the attempt; the retry makes one ticket with one set of files', async () => {
    zendesk.inject({ status: 503 }, { path: '/api/v2/tickets', method: 'POST' });
    const d = delivery();
    const error = await failure(destination().deliver(d));
    expect(error.message).toMatch(/HTTP 503.*will retry/);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(0);
    await destination().deliver(d);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(2);
  });

  it('a lost answer to the ticket creation is found again, not created twice', async () => {
    zendesk.inject({ loseResponse: true }, { path: '/api/v2/tickets', method: 'POST' });
    const d = delivery();
    expect((await failure(destination().deliver(d))).message).toMatch(/did not answer creating the ticket: connection failed/);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    await destination().deliver(d);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(2);
    expect(zendesk.comments.get(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(1);
  });

  it("a first attempt does not look for a ticket: it creates one under the delivery's idempotency key, the same for every attempt", async () => {
    const d = delivery({ attempt: 1 });
    await destination().deliver(d);
    expect(zendesk.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/v2/users/search', 'POST /api/v2/users', 'POST /api/v2/uploads', 'POST /api/v2/uploads', 'POST /api/v2/tickets']);
    const key = idempotencyKeyOf(d.deliveryId);
    expect(key).toMatch(/^gateway-delivery-[0-9a-f]{64}$/);
    expect(idempotencyKeyOf(`${d.deliveryId}x`)).not.toBe(key);
    const create = zendesk.requests.find((r) => r.method === 'POST' && r.path === '/api/v2/tickets')!;
    expect([create.idempotencyKey, create.idempotencyLookup]).toEqual([key, 'miss']);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(2);

    // A retry looks first, finds the ticket complete and sends nothing.
    const before = zendesk.requests.length;
    await destination().deliver({ ...d, attempt: 2 });
    const ticket = zendesk.ticketsByExternalId(d.deliveryId)[0]!;
    expect(zendesk.requests.slice(before).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/v2/tickets', `GET /api/v2/tickets/${ticket.id}/comments`]);
  });

  it('a creation whose answer was lost, sent again as a first attempt by another replica, gets the first answer (hit): one ticket', async () => {
    const d = contactDelivery();
    zendesk.inject({ loseResponse: true }, { path: '/api/v2/tickets', method: 'POST' });
    expect((await failure(destination().deliver({ ...d, attempt: 1 }))).message).toMatch(/did not answer creating the ticket: connection failed/);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    // JetStream's ack wait passed, the event went to another replica, still as a first attempt.
    await destination().deliver({ ...d, attempt: 1 });
    const creates = zendesk.requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/tickets');
    expect(creates.map((r) => [r.idempotencyKey, r.idempotencyLookup])).toEqual([
      [idempotencyKeyOf(d.deliveryId), 'miss'],
      [idempotencyKeyOf(d.deliveryId), 'hit'],
    ]);
    expect(zendesk.count('GET', /^\/api\/v2\/tickets$/)).toBe(0);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.comments.get(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(1);
  });

  it('a retry looks the ticket up and attaches only the files it lacks, without creating', async () => {
    const d = delivery();
    const [json, txt] = d.artifacts;
    await destination().deliver({ ...d, artifacts: [json!], attempt: 1 });
    const before = zendesk.requests.length;
    await destination().deliver({ ...d, attempt: 2 });
    const ticket = zendesk.ticketsByExternalId(d.deliveryId)[0]!;
    expect(zendesk.requests.slice(before).map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /api/v2/tickets',
      `GET /api/v2/tickets/${ticket.id}/comments`,
      'POST /api/v2/uploads',
      `PUT /api/v2/tickets/${ticket.id}`,
    ]);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.comments.get(ticket.id)!.map((c) => c.attachments.map((a) => a.file_name))).toEqual([[`${json!.artifactId}.json`], [`${txt!.artifactId}.txt`]]);
  });

  it('a creation refused because its key went with another payload finds the ticket and completes it: one ticket with every file', async () => {
    const d = delivery();
    const [json, txt] = d.artifacts;
    // The first attempt made the ticket with one file; its answer was lost.
    zendesk.inject({ loseResponse: true }, { path: '/api/v2/tickets', method: 'POST' });
    await failure(destination().deliver({ ...d, artifacts: [json!], attempt: 1 }));
    // Another replica, as a first attempt, uploads again: other tokens, another payload under the key.
    await destination().deliver({ ...d, attempt: 1 });
    const creates = zendesk.requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/tickets');
    expect(creates.map((r) => r.status)).toEqual([0, 400]);
    const tickets = zendesk.ticketsByExternalId(d.deliveryId);
    expect(tickets).toHaveLength(1);
    expect(zendesk.count('GET', /^\/api\/v2\/tickets$/)).toBe(1);
    expect(zendesk.count('PUT', /^\/api\/v2\/tickets\/\d+$/)).toBe(1);
    expect(zendesk.ticketAttachments(tickets[0]!.id).map((f) => [f.file_name, f.bytes.toString()])).toEqual([
      [`${json!.artifactId}.json`, '{"messages":[]}'],
      [`${txt!.artifactId}.txt`, 'hello\n'],
    ]);
  });

  it('times out a request that does not answer', async () => {
    zendesk.inject({ delayMs: 1_000 }, { path: '/api/v2/tickets', method: 'GET' });
    const error = await failure(destination({ requestTimeoutMs: 200 }).deliver(delivery()));
    expect(error.message).toMatch(/did not answer looking for the ticket: timed out/);
    // It gave up before the answer: Zendesk, a second late, has not sent it yet.
    expect(zendesk.requests.find((r) => r.method === 'GET' && r.path === '/api/v2/tickets')?.status).toBe(0);
  });

  it('a connection reset fails the attempt; the retry delivers', async () => {
    zendesk.inject({ resetConnection: true }, { path: '/api/v2/uploads' });
    const d = delivery();
    expect((await failure(destination().deliver(d))).message).toMatch(/did not answer uploading a file: connection failed/);
    await destination().deliver(d);
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(d.deliveryId)[0]!.id)).toHaveLength(2);
  });

  it('an upload failing on the second part, then retried, leaves no duplicate', async () => {
    const big = randomBytes(2500);
    const d = delivery();
    d.artifacts = [artifact(`${d.deliveryId}-camera`, 'video/webm', big, 'camera')];
    zendesk.inject({ resetConnection: true }, { path: '/api/v2/uploads', skip: 1 });
    expect((await failure(destination({ maxUploadBytes: 1000 }).deliver(d))).message).toMatch(/uploading a file/);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(0);
    await destination({ maxUploadBytes: 1000 }).deliver(d);
    const tickets = zendesk.ticketsByExternalId(d.deliveryId);
    expect(tickets).toHaveLength(1);
    const files = zendesk.ticketAttachments(tickets[0]!.id);
    expect(files.map((f) => f.file_name.replace(/.*\./, ''))).toEqual(['part1of3', 'part2of3', 'part3of3']);
    expect(Buffer.concat(files.map((f) => f.bytes)).equals(big)).toBe(true);
  });

  it('does not confirm a delivery whose files Zendesk dropped (expired upload token), and repairs it next time', async () => {
    // While the adapter waits out a 429 on the ticket creation, an hour passes on Zendesk's clock.
    zendesk.inject({ rateLimited: 1 }, { path: '/api/v2/tickets', method: 'POST' });
    const d = delivery();
    const slow = destination({ sleep: async () => zendesk.advanceClock(61 * 60_000) });
    expect((await failure(slow.deliver(d))).message).toMatch(/lacks 2 of 2 files/);
    const ticket = zendesk.ticketsByExternalId(d.deliveryId)[0]!;
    expect(zendesk.ticketAttachments(ticket.id)).toHaveLength(0);
    await destination().deliver(d);
    expect(zendesk.ticketsByExternalId(d.deliveryId)).toHaveLength(1);
    expect(zendesk.ticketAttachments(ticket.id).map((f) => f.bytes.toString())).toEqual(['{"messages":[]}', 'hello\n']);
  });

  it('creates a ticket without a requester when no end user has an external id', async () => {
    const d = delivery({ contacts: [] });
    await destination().deliver(d);
    expect(zendesk.count('GET', /^\/api\/v2\/users\/search$/)).toBe(0);
    const ticket = zendesk.ticketsByExternalId(d.deliveryId)[0]!;
    expect(zendesk.users.get(ticket.requester_id)?.email).toBe(EMAIL);
  });
});
