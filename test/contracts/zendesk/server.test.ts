import http from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ZendeskContractServer, type ZendeskContractOptions } from './server.js';

const EMAIL = 'api@example.com';
const API_TOKEN = 'contract-token';

/**
 * The contract server's own answers, checked against Zendesk's documented API as the crm-sync
 * adapter uses it (developer.zendesk.com/api-reference/ticketing): what it accepts, refuses and
 * answers must be what Zendesk does, or the adapter's tests prove nothing. Each test has its own
 * server.
 */
describe('Zendesk contract server', () => {
  let server: ZendeskContractServer;
  const start = async (options: Partial<ZendeskContractOptions> = {}) => {
    await server?.close();
    server = await ZendeskContractServer.start({ email: EMAIL, apiToken: API_TOKEN, ...options });
  };
  /** "API token" authentication: Basic base64(`{email}/token:{api_token}`). */
  const basic = (credentials = `${EMAIL}/token:${API_TOKEN}`) => `Basic ${Buffer.from(credentials).toString('base64')}`;
  /** A call as the API user; `json` is sent as the JSON body, `authorization` replaces the user's. */
  const api = (path: string, init: { method?: string; json?: unknown; body?: BodyInit; headers?: Record<string, string>; authorization?: string } = {}) =>
    fetch(`${server.url}${path}`, {
      method: init.method,
      body: init.json === undefined ? init.body : JSON.stringify(init.json),
      headers: { authorization: init.authorization ?? basic(), ...(init.json === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    });
  const upload = (fileName: string, bytes: Buffer | string, token?: string) =>
    api(`/api/v2/uploads.json?filename=${encodeURIComponent(fileName)}${token ? `&token=${token}` : ''}`, {
      method: 'POST',
      body: typeof bytes === 'string' ? bytes : new Uint8Array(bytes),
      headers: { 'content-type': 'text/plain' },
    });
  const endUser = async (externalId: string) =>
    (await (await api('/api/v2/users.json', { method: 'POST', json: { user: { name: 'End user', external_id: externalId, role: 'end-user' } } })).json()).user as { id: number };

  beforeEach(() => start());
  afterEach(() => server?.close());

  it('authenticates API tokens: Show Self answers who calls, or an anonymous user; anything else is 401', async () => {
    const me = await api('/api/v2/users/me.json');
    expect(me.status).toBe(200);
    expect((await me.json()).user).toMatchObject({ id: expect.any(Number), email: EMAIL, role: 'admin' });
    // Show Self does not refuse bad credentials: it answers with an anonymous user (id null).
    for (const authorization of [basic(`${EMAIL}/token:wrong`), basic(`${EMAIL}:${API_TOKEN}`), `Bearer ${API_TOKEN}`, '']) {
      const anonymous = await api('/api/v2/users/me.json', { authorization });
      expect(anonymous.status).toBe(200);
      expect((await anonymous.json()).user).toMatchObject({ id: null, role: 'end-user' });
    }
    const refused = await api('/api/v2/tickets.json', { authorization: basic(`${EMAIL}/token:wrong`) });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toMatch(/^Basic /);
    expect(await refused.json()).toEqual({ error: "Couldn't authenticate you" });
  });

  it("answers an end user's token with 403 on the ticket API", async () => {
    await start({ role: 'end-user' });
    expect((await (await api('/api/v2/users/me.json')).json()).user).toMatchObject({ role: 'end-user' });
    const forbidden = await api('/api/v2/tickets.json');
    expect(forbidden.status).toBe(403);
    expect(await forbidden.json()).toMatchObject({ error: 'Forbidden', description: expect.any(String) });
  });

  it('creates end users with unique external ids and finds them by external id, exactly', async () => {
    const created = await api('/api/v2/users.json', { method: 'POST', json: { user: { name: 'Gateway end user', external_id: 'ext-1', role: 'end-user' } } });
    expect(created.status).toBe(201);
    const { user } = await created.json();
    expect(user).toMatchObject({ id: expect.any(Number), name: 'Gateway end user', external_id: 'ext-1', role: 'end-user', active: true });
    expect(created.headers.get('location')).toBe(user.url);

    const duplicate = await api('/api/v2/users.json', { method: 'POST', json: { user: { name: 'Again', external_id: 'ext-1' } } });
    expect(duplicate.status).toBe(422);
    expect(await duplicate.json()).toMatchObject({ error: 'RecordInvalid', details: { external_id: [{ error: 'DuplicateValue' }] } });
    const nameless = await api('/api/v2/users.json', { method: 'POST', json: { user: { external_id: 'ext-2' } } });
    expect(nameless.status).toBe(422);
    expect(await nameless.json()).toMatchObject({ error: 'RecordInvalid', details: { name: [{ error: 'BlankValue' }] } });

    const found = await (await api('/api/v2/users/search.json?external_id=ext-1')).json();
    expect(found).toMatchObject({ users: [{ id: user.id, external_id: 'ext-1' }], count: 1, next_page: null });
    // external_id matches exactly: neither another case nor a prefix finds the user.
    for (const other of ['EXT-1', 'ext-']) expect((await (await api(`/api/v2/users/search.json?external_id=${other}`)).json()).users).toEqual([]);
    expect((await api('/api/v2/users/search.json')).status).toBe(400);
  });

  it('creates a ticket with its comment in one request, and adds comments to it', async () => {
    const requester = await endUser('ext-ticket');
    const created = await api('/api/v2/tickets.json', {
      method: 'POST',
      json: { ticket: { subject: 'Call recording', external_id: 'DL_1', requester_id: requester.id, tags: ['gateway'], comment: { body: 'The recording.', public: false } } },
    });
    expect(created.status).toBe(201);
    const { ticket } = await created.json();
    expect(ticket).toMatchObject({
      id: expect.any(Number),
      external_id: 'DL_1',
      subject: 'Call recording',
      status: 'new',
      requester_id: requester.id,
      tags: ['gateway'],
      description: 'The recording.',
    });
    expect(created.headers.get('location')).toBe(ticket.url);
    expect((await (await api(`/api/v2/tickets/${ticket.id}.json`)).json()).ticket).toMatchObject({ id: ticket.id });

    // "Update Ticket" adds a comment; a new ticket becomes open.
    const updated = await api(`/api/v2/tickets/${ticket.id}.json`, { method: 'PUT', json: { ticket: { comment: { body: 'More files.', public: false } } } });
    expect(updated.status).toBe(200);
    expect((await updated.json()).ticket).toMatchObject({ id: ticket.id, status: 'open' });
    const comments = await (await api(`/api/v2/tickets/${ticket.id}/comments.json`)).json();
    expect(comments.comments.map((c: { body: string; public: boolean }) => [c.body, c.public])).toEqual([
      ['The recording.', false],
      ['More files.', false],
    ]);

    // A ticket needs a comment and an existing requester; a closed one takes no update.
    const blank = await api('/api/v2/tickets.json', { method: 'POST', json: { ticket: { subject: 'x', comment: { body: '  ' } } } });
    expect(blank.status).toBe(422);
    expect(await blank.json()).toMatchObject({ error: 'RecordInvalid', details: { description: [{ error: 'BlankValue' }] } });
    const unknownRequester = await api('/api/v2/tickets.json', { method: 'POST', json: { ticket: { requester_id: 1, comment: { body: 'x' } } } });
    expect(unknownRequester.status).toBe(422);
    expect(await unknownRequester.json()).toMatchObject({ details: { requester: [{ error: 'InvalidValue' }] } });
    server.tickets.get(ticket.id)!.status = 'closed';
    const closed = await api(`/api/v2/tickets/${ticket.id}.json`, { method: 'PUT', json: { ticket: { comment: { body: 'late' } } } });
    expect(closed.status).toBe(422);
    expect(await closed.json()).toMatchObject({ error: 'RecordInvalid', details: { status: [{ error: 'InvalidValue' }] } });
    expect((await api('/api/v2/tickets/999999.json')).status).toBe(404);
  });

  it('creates one ticket per idempotency key: a repeat gets the first answer (hit), another payload 400, until the key expires after two hours', async () => {
    const requester = await endUser('ext-idem');
    const payload = { ticket: { subject: 'Call recording', external_id: 'DL_idem', requester_id: requester.id, comment: { body: 'The recording.', public: false } } };
    const create = (json: unknown, key = 'key-DL_idem') => api('/api/v2/tickets.json', { method: 'POST', json, headers: { 'idempotency-key': key } });

    const first = await create(payload);
    expect(first.status).toBe(201);
    expect(first.headers.get('x-idempotency-lookup')).toBe('miss');
    const original = await first.json();
    // The ticket changes meanwhile: the repeat still gets the answer as it was.
    await api(`/api/v2/tickets/${original.ticket.id}.json`, { method: 'PUT', json: { ticket: { comment: { body: 'More.', public: false } } } });
    const again = await create(payload);
    expect(again.status).toBe(201);
    expect(again.headers.get('x-idempotency-lookup')).toBe('hit');
    expect(again.headers.get('location')).toBe(original.ticket.url);
    expect(await again.json()).toEqual(original);
    expect(server.ticketsByExternalId('DL_idem')).toHaveLength(1);

    // The same key with another payload is refused, and creates nothing.
    const other = await create({ ticket: { ...payload.ticket, comment: { body: 'Another recording.', public: false } } });
    expect(other.status).toBe(400);
    expect(other.headers.get('x-idempotency-lookup')).toBeNull();
    expect(await other.json()).toEqual({ error: 'IdempotentRequestError', description: "Request parameters don't match the given idempotency key" });
    expect(server.ticketsByExternalId('DL_idem')).toHaveLength(1);

    // Another key, or none, is another ticket; without a key there is no lookup header.
    expect((await create(payload, 'key-other')).headers.get('x-idempotency-lookup')).toBe('miss');
    const keyless = await api('/api/v2/tickets.json', { method: 'POST', json: payload });
    expect(keyless.status).toBe(201);
    expect(keyless.headers.get('x-idempotency-lookup')).toBeNull();
    expect(server.ticketsByExternalId('DL_idem')).toHaveLength(3);

    // A failed request's answer is kept too: resent as it was, it fails the same way and creates nothing.
    const invalid = { ticket: { external_id: 'DL_invalid', requester_id: 1, comment: { body: 'x' } } };
    expect((await create(invalid, 'key-invalid')).status).toBe(422);
    server.users.set(1, { ...server.users.get(requester.id)!, id: 1 });
    const replayed = await create(invalid, 'key-invalid');
    expect([replayed.status, replayed.headers.get('x-idempotency-lookup')]).toEqual([422, 'hit']);
    expect(server.ticketsByExternalId('DL_invalid')).toHaveLength(0);

    // Two hours on, the key is free again: a request with it is a first one.
    server.advanceClock(2 * 60 * 60_000 - 1000);
    expect((await create(payload)).headers.get('x-idempotency-lookup')).toBe('hit');
    server.advanceClock(1000);
    const expired = await create({ ticket: { ...payload.ticket, comment: { body: 'Another recording.', public: false } } });
    expect([expired.status, expired.headers.get('x-idempotency-lookup')]).toEqual([201, 'miss']);
    expect(server.ticketsByExternalId('DL_idem')).toHaveLength(4);
  });

  it('refuses a request whose key is held by one still being processed (409), and replays a creation whose answer was lost', async () => {
    const payload = JSON.stringify({ ticket: { external_id: 'DL_race', comment: { body: 'The recording.', public: false } } });
    // The first request's body arrives slowly: Zendesk is still on it when the second comes.
    const slow = http.request(`${server.url}/api/v2/tickets.json`, {
      method: 'POST',
      headers: { authorization: basic(), 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), 'idempotency-key': 'key-race' },
    });
    const answered = new Promise<{ status: number; lookup: unknown; body: string }>((resolve, reject) => {
      slow.on('response', (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, lookup: res.headers['x-idempotency-lookup'], body }));
      });
      slow.on('error', reject);
    });
    slow.write(payload.slice(0, 10));
    await expect.poll(() => server.requests.filter((r) => r.method === 'POST' && r.path === '/api/v2/tickets').length).toBe(1);
    const concurrent = await api('/api/v2/tickets.json', { method: 'POST', body: payload, headers: { 'content-type': 'application/json', 'idempotency-key': 'key-race' } });
    expect(concurrent.status).toBe(409);
    expect(concurrent.headers.get('x-idempotency-lookup')).toBeNull();
    expect(server.ticketsByExternalId('DL_race')).toHaveLength(0);
    slow.end(payload.slice(10));
    const first = await answered;
    expect([first.status, first.lookup]).toEqual([201, 'miss']);
    const repeat = await api('/api/v2/tickets.json', { method: 'POST', body: payload, headers: { 'content-type': 'application/json', 'idempotency-key': 'key-race' } });
    expect(repeat.headers.get('x-idempotency-lookup')).toBe('hit');
    expect(await repeat.text()).toBe(first.body);
    expect(server.ticketsByExternalId('DL_race')).toHaveLength(1);

    // The ticket is made, the answer lost: the same request again gets it, and makes no second ticket.
    server.inject({ loseResponse: true }, { path: '/api/v2/tickets', method: 'POST' });
    const lost = JSON.stringify({ ticket: { external_id: 'DL_lost', comment: { body: 'x' } } });
    await expect(api('/api/v2/tickets.json', { method: 'POST', body: lost, headers: { 'content-type': 'application/json', 'idempotency-key': 'key-lost' } })).rejects.toThrow();
    expect(server.ticketsByExternalId('DL_lost')).toHaveLength(1);
    const retried = await api('/api/v2/tickets.json', { method: 'POST', body: lost, headers: { 'content-type': 'application/json', 'idempotency-key': 'key-lost' } });
    expect([retried.status, retried.headers.get('x-idempotency-lookup')]).toEqual([201, 'hit']);
    expect((await retried.json()).ticket.id).toBe(server.ticketsByExternalId('DL_lost')[0]!.id);
    expect(server.ticketsByExternalId('DL_lost')).toHaveLength(1);
  });

  it('lists tickets by external id, which need not be unique, with offset pagination', async () => {
    for (const externalId of ['DL_same', 'DL_same', 'DL_other']) {
      expect((await api('/api/v2/tickets.json', { method: 'POST', json: { ticket: { external_id: externalId, comment: { body: 'x' } } } })).status).toBe(201);
    }
    const same = await (await api('/api/v2/tickets.json?external_id=DL_same')).json();
    expect(same.tickets.map((t: { external_id: string }) => t.external_id)).toEqual(['DL_same', 'DL_same']);
    expect(same).toMatchObject({ count: 2, next_page: null, previous_page: null });

    const first = await (await api('/api/v2/tickets.json?per_page=2')).json();
    expect(first.tickets).toHaveLength(2);
    expect(first.count).toBe(3);
    // next_page is a full URL, followed as it is.
    expect(first.next_page).toMatch(new RegExp(`^${server.url}/api/v2/tickets\\.json\\?.*page=2`));
    const second = await (await fetch(first.next_page, { headers: { authorization: basic() } })).json();
    expect(second.tickets.map((t: { external_id: string }) => t.external_id)).toEqual(['DL_other']);
    expect(second.next_page).toBeNull();
    expect(second.previous_page).toMatch(/page=1/);
  });

  it('uploads files under one token, attaches them to the comment that names the token, once', async () => {
    const first = await upload('recording.mp3', Buffer.from('voice bytes'));
    expect(first.status).toBe(201);
    const { upload: created } = await first.json();
    expect(created).toMatchObject({ token: expect.any(String), expires_at: expect.any(String), attachment: { file_name: 'recording.mp3', content_type: 'text/plain', size: 11 } });
    // "Upload Files": the token lasts 60 minutes.
    expect(Date.parse(created.expires_at) - server.now()).toBeGreaterThan(59 * 60_000);
    const second = await (await upload('transcript.txt', 'the transcript', created.token)).json();
    expect(second.upload.token).toBe(created.token);
    expect(second.upload.attachments.map((a: { file_name: string }) => a.file_name)).toEqual(['recording.mp3', 'transcript.txt']);
    expect((await api('/api/v2/uploads.json', { method: 'POST', body: 'x' })).status).toBe(400);

    const { ticket } = await (await api('/api/v2/tickets.json', { method: 'POST', json: { ticket: { external_id: 'DL_files', comment: { body: 'Files.', uploads: [created.token] } } } })).json();
    expect(server.ticketAttachments(ticket.id).map((a) => [a.file_name, a.bytes.toString()])).toEqual([
      ['recording.mp3', 'voice bytes'],
      ['transcript.txt', 'the transcript'],
    ]);
    // The attachment's content URL serves the bytes.
    const [attachment] = (await (await api(`/api/v2/tickets/${ticket.id}/comments.json`)).json()).comments[0].attachments;
    expect(attachment).not.toHaveProperty('bytes');
    const content = await fetch(attachment.content_url, { headers: { authorization: basic() } });
    expect(content.status).toBe(200);
    expect(await content.text()).toBe('voice bytes');

    // A used token names nothing any more: no error, no attachment; nor can files be added to it.
    await api(`/api/v2/tickets/${ticket.id}.json`, { method: 'PUT', json: { ticket: { comment: { body: 'Again.', uploads: [created.token] } } } });
    expect(server.ticketAttachments(ticket.id)).toHaveLength(2);
    expect((await upload('late.txt', 'x', created.token)).status).toBe(404);
  });

  it('lets an upload token expire after 60 minutes, and refuses files over the size limit with 413', async () => {
    await start({ maxUploadBytes: 1024 });
    const { upload: created } = await (await upload('a.txt', 'a')).json();
    server.advanceClock(60 * 60_000 + 1);
    const { ticket } = await (await api('/api/v2/tickets.json', { method: 'POST', json: { ticket: { comment: { body: 'Files.', uploads: [created.token] } } } })).json();
    // An expired token is not an error: its files are simply not attached.
    expect(server.ticketAttachments(ticket.id)).toEqual([]);
    expect((await upload('b.txt', 'b', created.token)).status).toBe(404);
    const tooLarge = await upload('big.bin', Buffer.alloc(1025));
    expect(tooLarge.status).toBe(413);
    expect(await tooLarge.json()).toMatchObject({ error: 'RequestEntityTooLarge' });
    expect((await upload('fits.bin', Buffer.alloc(1024))).status).toBe(201);
  });

  it('keeps a per-minute rate limit: 429 with Retry-After in seconds until the window ends', async () => {
    await start({ requestsPerMinute: 3 });
    for (let i = 0; i < 3; i++) {
      const ok = await api('/api/v2/tickets.json');
      expect(ok.status).toBe(200);
      expect(ok.headers.get('x-rate-limit')).toBe('3');
      expect(ok.headers.get('x-rate-limit-remaining')).toBe(String(2 - i));
    }
    const limited = await api('/api/v2/tickets.json');
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ error: 'APIRateLimitExceeded' });
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // A fresh window once the minute is over.
    server.advanceClock(retryAfter * 1000);
    expect((await api('/api/v2/tickets.json')).status).toBe(200);
  });

  it('injects faults by path, method, count and skip, and records every request', async () => {
    server.inject({ status: 503, retryAfterSeconds: 7 }, { path: '/api/v2/tickets', method: 'POST', skip: 1 });
    server.inject({ rateLimited: 30 }, { path: /^\/api\/v2\/users\/search$/ });
    const create = () => api('/api/v2/tickets.json', { method: 'POST', json: { ticket: { external_id: 'DL_fault', comment: { body: 'x' } } } });
    expect((await api('/api/v2/tickets.json')).status).toBe(200);
    expect((await create()).status).toBe(201);
    const failed = await create();
    expect(failed.status).toBe(503);
    expect(failed.headers.get('retry-after')).toBe('7');
    expect((await create()).status).toBe(201);
    const limited = await api('/api/v2/users/search.json?external_id=x');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('30');
    expect((await api('/api/v2/users/search.json?external_id=x')).status).toBe(200);

    // A reset connection and a lost answer: the second one's change is made all the same.
    server.inject({ resetConnection: true }, { path: '/api/v2/tickets', method: 'POST' });
    await expect(create()).rejects.toThrow();
    server.inject({ loseResponse: true }, { path: '/api/v2/tickets', method: 'POST' });
    await expect(create()).rejects.toThrow();
    expect(server.ticketsByExternalId('DL_fault')).toHaveLength(3);

    // Requests are recorded with their path (without .json), query and status.
    expect(server.count('POST', /^\/api\/v2\/tickets$/)).toBe(5);
    expect(server.requests.find((r) => r.path === '/api/v2/users/search')).toMatchObject({ method: 'GET', query: { external_id: 'x' }, status: 429 });
  });

  it('answers unknown endpoints with 404 and accepts paths with or without .json', async () => {
    expect((await api('/api/v2/tickets')).status).toBe(200);
    expect((await api('/api/v2/tickets.json')).status).toBe(200);
    const unknown = await api('/api/v2/macros.json');
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: 'InvalidEndpoint' });
  });
});
