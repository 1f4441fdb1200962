import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, GatewayError } from '@gateway/common';
import { SalesforceContractServer, type SalesforceContractOptions } from '../../../../test/contracts/salesforce/server.js';
import { assertPublicHost } from './network.js';
import { SalesforceDestination, salesforceConfigSchema, salesforceSecretsSchema, soqlString } from './salesforce.js';
import { SalesforceTokenCache } from './salesforceApi.js';
import { contactDelivery, delivery } from '../testing/deliveries.js';
import type { ContactMap } from './types.js';

const CLIENT_ID = '3MVG9-test-consumer-key';
const CLIENT_SECRET = 'consumer-secret-0451';
const log = createLogger('test', 'silent');

/** A ContactMap in memory that counts its reads. */
function memoryContacts() {
  const map = new Map<string, string>();
  const contacts: ContactMap & { map: Map<string, string>; hits: number } = {
    map,
    hits: 0,
    get: async (externalId) => {
      const id = map.get(externalId);
      if (id) contacts.hits++;
      return id;
    },
    set: async (externalId, id) => void map.set(externalId, id),
  };
  return contacts;
}

describe('Salesforce destination against the contract server', () => {
  let server: SalesforceContractServer;
  let contacts: ReturnType<typeof memoryContacts>;

  const start = async (options: Partial<SalesforceContractOptions> = {}) => {
    server = await SalesforceContractServer.start({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...options });
  };
  // The contract server is on this machine: private addresses are allowed, unless a test says not.
  const destination = (
    config: Record<string, unknown> = {},
    secrets: Record<string, unknown> = { clientSecret: CLIENT_SECRET },
    tokens = new SalesforceTokenCache(),
    network = { allowPrivate: true },
  ) =>
    new SalesforceDestination(
      salesforceConfigSchema.parse({ loginUrl: server.url, authFlow: 'client_credentials', clientId: CLIENT_ID, requestTimeoutMs: 2_000, ...config }),
      salesforceSecretsSchema.parse(secrets),
      { contacts, log, checkHost: (host) => assertPublicHost(host, network) },
      { tokens },
    );
  const failure = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('DESTINATION_FAILED');
    return error as GatewayError;
  };
  const sole = <T>(items: T[]) => {
    expect(items).toHaveLength(1);
    return items[0]!;
  };

  beforeEach(() => {
    contacts = memoryContacts();
  });
  afterEach(async () => {
    await server?.stop();
  });

  it('refuses an instance URL on an address that is not public, as the token response may name any', async () => {
    await start();
    const error = await destination({}, undefined, undefined, { allowPrivate: false })
      .test()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('PERMISSION_DENIED');
    expect((error as GatewayError).message).toMatch(/127\.0\.0\.1 is a loopback address/);
  });

  it('client credentials: one Contact, one Task by CallObject, Files with their bytes; a second run adds nothing', async () => {
    await start();
    const sf = destination();
    await sf.test();
    const files = [
      { id: 'AR_json', data: Buffer.from('{"messages":[]}'), contentType: 'application/json' },
      { id: 'AR_txt', data: Buffer.from('[card] [CARD]\n'), contentType: 'text/plain' },
    ];
    // With the agent among the contacts: only the end user becomes a Contact.
    const people = [
      { participantId: 'PA_1', role: 'end_user', externalId: 'ext-1', crmContactId: '' },
      { participantId: 'PA_2', role: 'agent', externalId: 'agent-7', crmContactId: '' },
    ];
    const d = delivery({ files, contacts: people });
    await sf.deliver(d);
    await sf.deliver(d);

    const contact = sole(server.list('Contact'));
    expect(contact).toMatchObject({ LastName: 'Gateway end user', Gateway_External_Id__c: 'ext-1' });
    expect(contacts.map.get('ext-1')).toBe(contact.Id);
    expect(contacts.map.has('agent-7')).toBe(false);
    const task = sole(server.list('Task'));
    expect(task).toMatchObject({ WhoId: contact.Id, CallObject: d.deliveryId, Subject: 'Chat transcript', Status: 'Completed', ActivityDate: '2025-03-14' });
    expect(task.CallDurationInSeconds).toBeUndefined();
    const versions = server.list('ContentVersion');
    expect(versions.map((v) => [v.Title, v.PathOnClient, v.FirstPublishLocationId])).toEqual([
      ['Chat transcript AR_json', 'AR_json.json', contact.Id],
      ['Chat transcript AR_txt', 'AR_txt.txt', contact.Id],
    ]);
    expect(versions.map((v) => (v.VersionData as Buffer).toString())).toEqual(files.map((f) => f.data.toString()));
    expect(server.count('POST', '/sobjects/ContentVersion')).toBe(2);
    expect(server.tokenRequests).toBe(1);
    expect(sf.apiUsage).toEqual({ used: server.apiUsage, max: 15_000 });
  });

  it("logs a contact-center contact's record as a call Task with its disposition, handle time and notes, once", async () => {
    await start();
    const sf = destination();
    const d = contactDelivery();
    await sf.deliver(d);
    await sf.deliver(d);
    const contact = sole(server.list('Contact'));
    expect(contact).toMatchObject({ Gateway_External_Id__c: 'ext-1' });
    const task = sole(server.list('Task'));
    expect(task).toMatchObject({
      WhoId: contact.Id,
      CallObject: 'contact-CT_1',
      Subject: 'Contact center contact',
      Status: 'Completed',
      TaskSubtype: 'Call',
      CallType: 'Inbound',
      CallDurationInSeconds: 300,
      CallDisposition: 'Refund issued',
      ActivityDate: '2025-03-14',
    });
    const description = String(task.Description);
    for (const fact of ['Queue: billing (overflowed from general)', 'Outcome: completed', 'Wait: 30 s; handle: 300 s', 'Agent: AG_1', 'from agent AG_0 to agent AG_1 (warm)']) {
      expect(description).toContain(fact);
    }
    expect(description.endsWith('Notes:\nCustomer asked for a refund.\nSent by email.')).toBe(true);
    expect(server.list('ContentVersion')).toHaveLength(0);
  });

  it("a chat contact is a Task without call fields; a CRM contact id of the record is the Task's WhoId", async () => {
    await start();
    const existing = server.seed('Contact', { LastName: 'Real Customer' });
    await destination().deliver(contactDelivery({ channel: 'chat', crmContactId: existing, disposition: undefined, notes: undefined, outcome: 'abandoned', agentId: undefined }));
    const task = sole(server.list('Task'));
    expect(task).toMatchObject({ WhoId: existing, Subject: 'Contact center contact' });
    expect([task.TaskSubtype, task.CallType, task.CallDurationInSeconds, task.CallDisposition]).toEqual([undefined, undefined, undefined, undefined]);
    expect(String(task.Description)).toContain('Agent: none');
    expect(String(task.Description)).not.toContain('Notes:');
    expect(server.list('Contact')).toHaveLength(1);
  });

  it('without an end-user contact, logs the Task alone and publishes the files to it', async () => {
    await start();
    await destination().deliver(delivery({ kind: 'attachment', contacts: [], files: [{ id: 'AR_photo', data: Buffer.from([0xff, 0xd8, 0xff]), contentType: 'image/jpeg' }] }));
    const task = sole(server.list('Task'));
    expect(task).toMatchObject({ Subject: 'Attachment' });
    expect(task.WhoId).toBeUndefined();
    expect(sole(server.list('ContentVersion'))).toMatchObject({ FirstPublishLocationId: task.Id, PathOnClient: 'AR_photo.jpg' });
    expect(server.list('Contact')).toHaveLength(0);
  });

  it('uses the ContactMap on the next delivery and the shared token cache across destinations', async () => {
    await start();
    const tokens = new SalesforceTokenCache();
    // One file each: each delivery makes one upload.
    const oneFile = (id: string) => delivery({ files: [{ id, data: Buffer.from('{"messages":[]}'), contentType: 'application/json' }] });
    await destination({}, undefined, tokens).deliver(oneFile('AR_first'));
    const contactLookups = () => server.requests.filter((r) => r.soql?.includes('FROM Contact')).length;
    expect(contactLookups()).toBe(1);
    expect(server.count('PATCH', '/sobjects/Contact/Gateway_External_Id__c/ext-1')).toBe(1);

    const before = server.requests.length;
    await destination({}, undefined, tokens).deliver(oneFile('AR_second'));
    expect(contacts.hits).toBe(1);
    expect(contactLookups()).toBe(1);
    // Two Composite requests: the Task's and the file's lookups, then the Task and the file made; nothing else.
    const second = server.requests.slice(before);
    expect(second.filter((r) => !r.composite).map((r) => `${r.method} ${r.path}`)).toEqual(['POST /composite', 'POST /composite']);
    expect(second.filter((r) => r.composite).map((r) => `${r.method} ${r.path}`)).toEqual(['GET /query', 'GET /query', 'POST /sobjects/Task', 'POST /sobjects/ContentVersion']);
    expect(server.tokenRequests).toBe(1);
    expect(server.list('Contact')).toHaveLength(1);
    expect(server.list('Task')).toHaveLength(2);
  });

  it('finds an existing Contact by its external id instead of creating one', async () => {
    await start();
    const existing = server.seed('Contact', { LastName: 'Real Customer', Gateway_External_Id__c: 'EXT-1' });
    await destination().deliver(delivery());
    expect(sole(server.list('Contact'))).toMatchObject({ Id: existing, LastName: 'Real Customer' });
    expect(sole(server.list('Task')).WhoId).toBe(existing);
    expect(server.count('PATCH', '/sobjects/Contact')).toBe(0);
  });

  it('sends large files as multipart (entity_content + VersionData) with the exact bytes', async () => {
    await start();
    const big = randomBytes(300_000);
    const small = Buffer.from('small');
    await destination({ jsonUploadMaxBytes: 1024 }).deliver(
      delivery({
        kind: 'recording',
        files: [
          { id: 'AR_voice', data: big, contentType: 'audio/ogg' },
          { id: 'AR_small', data: small, contentType: 'audio/ogg' },
        ],
      }),
    );
    const uploads = server.requests.filter((r) => r.method === 'POST' && r.path === '/sobjects/ContentVersion');
    // The small one inline in the Composite request that made the Task, the large one streamed after it.
    expect(uploads.map((u) => [u.contentType?.split(';')[0], u.composite ?? false])).toEqual([
      ['application/json', true],
      ['multipart/form-data', false],
    ]);
    const [smallVersion, voice] = server.list('ContentVersion');
    expect((voice!.VersionData as Buffer).equals(big)).toBe(true);
    expect(voice).toMatchObject({ Title: 'Call recording AR_voice', PathOnClient: 'AR_voice.ogg' });
    expect((smallVersion!.VersionData as Buffer).equals(small)).toBe(true);
    expect(sole(server.list('Task'))).toMatchObject({ Subject: 'Call recording', TaskSubtype: 'Call', CallDurationInSeconds: 330 });
  });

  it('JWT bearer: an RS256 assertion the server verifies (iss, sub, aud, exp); a wrong key is refused', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await start({ clientSecret: undefined, jwt: { username: 'integration@customer.example', publicKey } });
    const jwtConfig = { authFlow: 'jwt_bearer', username: 'integration@customer.example' };
    const sf = destination(jwtConfig, { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) });
    await sf.test();
    await sf.deliver(delivery());
    expect(server.list('Task')).toHaveLength(1);

    const wrongKey = destination(jwtConfig, { privateKeyPem: other.privateKey.export({ type: 'pkcs1', format: 'pem' }) });
    expect((await failure(wrongKey.test())).message).toContain('invalid_grant');
    const wrongUser = destination({ ...jwtConfig, username: 'someone@else.example' }, { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) });
    expect((await failure(wrongUser.test())).message).toContain('invalid_grant');
    const noKey = destination(jwtConfig, { clientSecret: 'x' });
    expect((await failure(noKey.test())).message).toContain('privateKeyPem');
  });

  it('bad client credentials fail with the OAuth error code only', async () => {
    await start();
    const error = await failure(destination({}, { clientSecret: 'not-the-secret' }).test());
    expect(error.message).toBe('Salesforce refused the token request: HTTP 400 invalid_client');
  });

  it('gets a new token once on 401 INVALID_SESSION_ID and carries on', async () => {
    await start();
    const tokens = new SalesforceTokenCache();
    await destination({}, undefined, tokens).deliver(delivery());
    server.inject({ expireToken: true });
    await destination({}, undefined, tokens).deliver(delivery());
    expect(server.tokenRequests).toBe(2);
    expect(server.list('Task')).toHaveLength(2);
    expect(server.requests.filter((r) => r.status === 401)).toHaveLength(1);
  });

  it('403 REQUEST_LIMIT_EXCEEDED: a retryable failure that says the limit was hit', async () => {
    // The limits' call, then the lookups' Composite request (one call), then the one over the limit.
    await start({ dailyApiLimit: 2 });
    const sf = destination();
    await sf.test();
    const error = await failure(sf.deliver(delivery()));
    expect(error.message).toMatch(/API request limit exceeded \(api-usage 3\/2\)/);
    expect(error.details).toMatchObject({ httpStatus: 403, errorCode: 'REQUEST_LIMIT_EXCEEDED', retryAfterMs: expect.any(Number) });

    await server.stop();
    await start();
    server.inject({ limitExceeded: true });
    expect((await failure(destination().deliver(delivery()))).message).toContain('limit exceeded');
  });

  it('5xx, timeout and connection reset fail the delivery; the retry completes it without duplicates', async () => {
    await start();
    const sf = destination({ requestTimeoutMs: 300 });
    const d = delivery({
      files: [
        { id: 'AR_a', data: Buffer.from('aaa') },
        { id: 'AR_b', data: Buffer.from('bbb') },
      ],
    });

    // A subrequest that fails is reported as itself; its dependants (nothing here) would say PROCESSING_HALTED.
    server.inject({ status: 503 }, { match: { method: 'POST', path: '/sobjects/Task' } });
    expect((await failure(sf.deliver(d))).message).toBe('Salesforce task create failed: HTTP 503 SERVER_UNAVAILABLE');
    expect(server.list('Task')).toHaveLength(0);

    // The Task is created but the answer is lost on a reset connection (the files went on the Contact the first time).
    server.inject({ resetConnection: true }, { match: { method: 'POST', path: '/sobjects/Task' }, afterProcessing: true });
    expect((await failure(sf.deliver(d))).message).toBe('Salesforce task create: connection reset');
    expect(server.list('Task')).toHaveLength(1);
    await sf.deliver(d);
    expect(server.list('Task')).toHaveLength(1);
    expect(server.list('ContentVersion').map((v) => (v.VersionData as Buffer).toString())).toEqual(['aaa', 'bbb']);

    // A request that reaches Salesforce late (after we gave up) is found by the next attempt's lookups.
    const late = delivery({ deliveryId: 'REC_late', files: [{ id: 'AR_c', data: Buffer.from('ccc') }] });
    server.inject({ delayMs: 600 }, { match: { method: 'POST', path: '/sobjects/ContentVersion' } });
    expect((await failure(sf.deliver(late))).message).toBe('Salesforce task create and file upload: no answer within 300 ms');
    await new Promise((r) => setTimeout(r, 500));
    await sf.deliver(late);
    expect(server.list('Task')).toHaveLength(2);
    expect(server.list('ContentVersion').map((v) => (v.VersionData as Buffer).toString())).toEqual(['aaa', 'bbb', 'ccc']);
    expect(server.list('Contact')).toHaveLength(1);
  });

  it('files on a Task made in the same Composite request: a failed Task is reported as itself, not as the halted uploads', async () => {
    await start();
    const sf = destination();
    const d = delivery({ kind: 'attachment', contacts: [], files: [{ id: 'AR_p', data: Buffer.from([1, 2, 3]), contentType: 'image/png' }] });
    server.inject({ status: 503 }, { match: { method: 'POST', path: '/sobjects/Task' } });
    expect((await failure(sf.deliver(d))).message).toBe('Salesforce task create failed: HTTP 503 SERVER_UNAVAILABLE');
    expect(server.requests.filter((r) => r.composite && r.path === '/sobjects/ContentVersion').map((r) => r.status)).toEqual([400]);
    await sf.deliver(d);
    const task = sole(server.list('Task'));
    expect(sole(server.list('ContentVersion'))).toMatchObject({ FirstPublishLocationId: task.Id });
  });

  it('more files than the lookups can hold: the first 3 in the Composite requests, the others one request per step', async () => {
    await start();
    const files = Array.from({ length: 5 }, (_, i) => ({ id: `AR_${i}`, data: Buffer.from(`file ${i}`), contentType: 'text/plain' }));
    const d = delivery({ files });
    await destination().deliver(d);
    expect(server.requests.filter((r) => r.path === '/sobjects/ContentVersion').map((r) => r.composite ?? false)).toEqual([true, true, true, false, false]);
    await destination().deliver(d);
    expect(server.list('ContentVersion').map((v) => (v.VersionData as Buffer).toString())).toEqual(files.map((f) => f.data.toString()));
    expect(server.list('Task')).toHaveLength(1);
  });

  it('reports Salesforce errors by status and errorCode, never their message text', async () => {
    await start();
    server.inject({ status: 400, errorCode: 'INVALID_FIELD' }, { match: { method: 'POST', path: '/sobjects/ContentVersion' } });
    const error = await failure(destination().deliver(delivery()));
    expect(error.message).toBe('Salesforce file upload failed: HTTP 400 INVALID_FIELD');
    expect(error.message).not.toContain('injected');
  });

  it('escapes a hostile external id in SOQL and finds the same Contact again', async () => {
    await start();
    const hostile = `o'brien\\' OR Name != '' \\\\ "x"\n`;
    const d = delivery({ contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: hostile, crmContactId: '' }] });
    await destination().deliver(d);
    const contact = sole(server.list('Contact'));
    expect(contact.Gateway_External_Id__c).toBe(hostile);
    const soql = server.requests.find((r) => r.soql?.includes('FROM Contact'))!.soql!;
    expect(soql).toBe(`SELECT Id FROM Contact WHERE Gateway_External_Id__c = ${soqlString(hostile)} LIMIT 1`);
    expect(soql).toContain(`'o\\'brien\\\\\\' OR Name != \\'\\' \\\\\\\\ \\"x\\"\\n'`);
    // Not path-safe: created with a POST, not an upsert URL.
    expect(server.count('PATCH', '/sobjects/Contact')).toBe(0);

    contacts = memoryContacts();
    await destination().deliver(delivery({ contacts: d.contacts }));
    expect(sole(server.list('Contact')).Id).toBe(contact.Id);
    expect(contacts.map.get(hostile)).toBe(contact.Id);
    // Something the server cannot parse is refused the way Salesforce does.
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: CLIENT_ID, client_secret: CLIENT_SECRET });
    const { access_token: token } = await (await fetch(`${server.url}/services/oauth2/token`, { method: 'POST', body: form })).json();
    const query = (soql: string) => fetch(`${server.url}/services/data/v60.0/query?q=${encodeURIComponent(soql)}`, { headers: { authorization: `Bearer ${token}` } });
    const bad = await query("SELECT Id FROM Contact WHERE LastName = 'a\\q'");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual([expect.objectContaining({ errorCode: 'MALFORMED_QUERY' })]);
    expect((await query("SELECT Id FROM Contact WHERE LastName LIKE 'a%'")).status).toBe(400);
  });

  it('validates its settings', () => {
    const base = { loginUrl: 'https://acme.my.salesforce.com', authFlow: 'client_credentials', clientId: 'x' };
    expect(salesforceConfigSchema.parse(base)).toMatchObject({ apiVersion: 'v60.0', contactExternalIdField: 'Gateway_External_Id__c', jsonUploadMaxBytes: 30 * 1024 * 1024 });
    expect(salesforceConfigSchema.safeParse({ ...base, authFlow: 'jwt_bearer' }).success).toBe(false);
    expect(salesforceConfigSchema.safeParse({ ...base, loginUrl: 'http://acme.my.salesforce.com' }).success).toBe(false);
    expect(salesforceConfigSchema.safeParse({ ...base, contactExternalIdField: "Id' OR ''='" }).success).toBe(false);
    expect(salesforceConfigSchema.safeParse({ ...base, jsonUploadMaxBytes: 40 * 1024 * 1024 }).success).toBe(false);
    expect(salesforceSecretsSchema.safeParse({}).success).toBe(false);
    expect(salesforceSecretsSchema.safeParse({ privateKeyPem: 'not a key' }).success).toBe(false);
  });
});
