import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SalesforceContractServer } from './server.js';

/** The contract server's own answers, checked against the documented shapes. */
describe('Salesforce contract server', () => {
  let server: SalesforceContractServer;
  let token: string;
  const api = (path: string, init: RequestInit = {}, version = 'v60.0') =>
    fetch(`${server.url}/services/data/${version}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers } });

  beforeAll(async () => {
    server = await SalesforceContractServer.start({ clientId: 'id', clientSecret: 'secret' });
    const response = await fetch(`${server.url}/services/oauth2/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'id', client_secret: 'secret' }) });
    const body = await response.json();
    expect(body).toMatchObject({ instance_url: server.url, token_type: 'Bearer', issued_at: expect.any(String), signature: expect.any(String) });
    token = body.access_token;
  });
  afterAll(() => server.stop());

  it('upserts by external id: 201 created, then 200 {created:false} (46.0+) or 204 (older)', async () => {
    const path = '/sobjects/Contact/Gateway_External_Id__c/abc-1';
    const created = await api(path, { method: 'PATCH', body: JSON.stringify({ LastName: 'A' }) });
    expect(created.status).toBe(201);
    const { id } = await created.json();
    expect(id).toMatch(/^003[A-Za-z0-9]{15}$/);
    expect(created.headers.get('sforce-limit-info')).toMatch(/^api-usage=\d+\/15000$/);
    expect(await (await api(path, { method: 'PATCH', body: JSON.stringify({ LastName: 'B' }) })).json()).toEqual({ id, success: true, errors: [], created: false });
    expect((await api(path, { method: 'PATCH', body: JSON.stringify({ LastName: 'C' }) }, 'v45.0')).status).toBe(204);
    const withField = await api(path, { method: 'PATCH', body: JSON.stringify({ LastName: 'D', Gateway_External_Id__c: 'abc-1' }) });
    expect(withField.status).toBe(400);
    expect(await (await api('/sobjects/Contact', { method: 'POST', body: JSON.stringify({ FirstName: 'x' }) })).json()).toEqual([
      { message: 'Required fields are missing: [LastName]', errorCode: 'REQUIRED_FIELD_MISSING', fields: ['LastName'] },
    ]);
  });

  it('refuses malformed multipart, unknown fields, unknown versions and missing tokens as Salesforce does', async () => {
    const multipart = (body: string) => api('/sobjects/ContentVersion', { method: 'POST', body, headers: { 'content-type': 'multipart/form-data; boundary=b' } });
    expect((await multipart('--b\r\nContent-Disposition: form-data; name="VersionData"; filename="x"\r\n\r\nxx\r\n--b--')).status).toBe(400);
    const ok = await multipart(
      '--b\r\nContent-Disposition: form-data; name="entity_content"\r\nContent-Type: application/json\r\n\r\n{"PathOnClient":"x.txt"}\r\n--b\r\nContent-Disposition: form-data; name="VersionData"; filename="x.txt"\r\n\r\nx\r\ny\r\n--b--\r\n',
    );
    expect(ok.status).toBe(201);
    expect(server.list('ContentVersion').map((v) => (v.VersionData as Buffer).toString())).toEqual(['x\r\ny']);
    expect(await (await api('/sobjects/Task', { method: 'POST', body: JSON.stringify({ Colour: 'red' }) })).json()).toEqual([expect.objectContaining({ errorCode: 'INVALID_FIELD' })]);
    expect(await (await api('/sobjects/Task', { method: 'POST', body: JSON.stringify({ WhoId: '003000000000000AAA' }) })).json()).toEqual([
      expect.objectContaining({ errorCode: 'INVALID_CROSS_REFERENCE_KEY' }),
    ]);
    // A logged call's fields: CallDisposition is text (255), CallType and TaskSubtype restricted picklists.
    const call = { Subject: 'Call', TaskSubtype: 'Call', CallType: 'Inbound', CallDurationInSeconds: 300, CallDisposition: 'Resolved' };
    expect((await api('/sobjects/Task', { method: 'POST', body: JSON.stringify(call) })).status).toBe(201);
    expect(await (await api('/sobjects/Task', { method: 'POST', body: JSON.stringify({ ...call, CallDisposition: 'd'.repeat(256) }) })).json()).toEqual([
      expect.objectContaining({ errorCode: 'STRING_TOO_LONG', fields: ['CallDisposition'] }),
    ]);
    expect(await (await api('/sobjects/Task', { method: 'POST', body: JSON.stringify({ ...call, CallType: 'Incoming' }) })).json()).toEqual([
      expect.objectContaining({ errorCode: 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST', fields: ['CallType'] }),
    ]);
    expect((await api('/limits', {}, 'v99.0')).status).toBe(404);
    const anonymous = await fetch(`${server.url}/services/data/v60.0/limits`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual([{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID', fields: [] }]);
  });

  it('Composite: subrequests in order with @{ref} values, one API call; a failed one halts its dependants; allOrNone rolls back; limits', async () => {
    const composite = async (compositeRequest: unknown[], allOrNone = false) => {
      const response = await api('/composite', { method: 'POST', body: JSON.stringify({ allOrNone, compositeRequest }) });
      return { status: response.status, body: await response.json() };
    };
    const url = (path: string) => `/services/data/v60.0${path}`;
    const contacts = () => server.list('Contact').length;
    const usage = server.apiUsage;
    const made = await composite([
      { method: 'PATCH', url: url('/sobjects/Contact/Gateway_External_Id__c/composite-1'), referenceId: 'contact', body: { LastName: 'C' } },
      { method: 'POST', url: url('/sobjects/Task'), referenceId: 'task', body: { Subject: 'Composite call', WhoId: '@{contact.id}' } },
      { method: 'GET', url: url(`/query?q=${encodeURIComponent("SELECT Id FROM Task WHERE Subject = 'Composite call'")}`), referenceId: 'found' },
      { method: 'GET', url: url(`/query?q=${encodeURIComponent("SELECT Subject FROM Task WHERE Id = '")}@{found.records[0].Id}${encodeURIComponent("'")}`), referenceId: 'again' },
    ]);
    expect(made.status).toBe(200);
    expect(server.apiUsage).toBe(usage + 1);
    const [contact, task, found, again] = made.body.compositeResponse;
    expect(contact).toMatchObject({ referenceId: 'contact', httpStatusCode: 201, body: { id: expect.stringMatching(/^003/), created: true } });
    expect(task).toMatchObject({ referenceId: 'task', httpStatusCode: 201 });
    expect(server.list('Task').find((t) => t.Id === task.body.id)!.WhoId).toBe(contact.body.id);
    expect(found.body.records[0].Id).toBe(task.body.id);
    // A reference in a url, into a query's records.
    expect(again).toMatchObject({ httpStatusCode: 200, body: { records: [expect.objectContaining({ Subject: 'Composite call' })] } });

    const before = contacts();
    const halted = await composite([
      { method: 'POST', url: url('/sobjects/Contact'), referenceId: 'bad', body: { FirstName: 'no last name' } },
      { method: 'POST', url: url('/sobjects/Task'), referenceId: 'dependant', body: { Subject: 'x', WhoId: '@{bad.id}' } },
      { method: 'POST', url: url('/sobjects/Contact'), referenceId: 'independent', body: { LastName: 'kept' } },
    ]);
    expect(halted.body.compositeResponse.map((r: { httpStatusCode: number; body: Array<{ errorCode?: string }> }) => [r.httpStatusCode, r.body[0]?.errorCode])).toEqual([
      [400, 'REQUIRED_FIELD_MISSING'],
      [400, 'PROCESSING_HALTED'],
      [201, undefined],
    ]);
    expect(contacts()).toBe(before + 1);

    const rolledBack = await composite(
      [
        { method: 'POST', url: url('/sobjects/Contact'), referenceId: 'first', body: { LastName: 'rolled back' } },
        { method: 'POST', url: url('/sobjects/Contact'), referenceId: 'bad', body: { FirstName: 'no last name' } },
      ],
      true,
    );
    expect(rolledBack.body.compositeResponse.map((r: { httpStatusCode: number; body: Array<{ errorCode?: string }> }) => [r.httpStatusCode, r.body[0]?.errorCode])).toEqual([
      [400, 'PROCESSING_HALTED'],
      [400, 'REQUIRED_FIELD_MISSING'],
    ]);
    expect(contacts()).toBe(before + 1);

    const query = (i: number) => ({ method: 'GET', url: url(`/query?q=${encodeURIComponent('SELECT Id FROM Contact')}`), referenceId: `q${i}` });
    expect((await composite(Array.from({ length: 6 }, (_, i) => query(i)))).status).toBe(400);
    const create = (i: number) => ({ method: 'POST', url: url('/sobjects/Contact'), referenceId: `c${i}`, body: { LastName: 'x' } });
    expect((await composite(Array.from({ length: 26 }, (_, i) => create(i)))).status).toBe(400);
    expect((await composite([{ ...create(0), referenceId: 'has-dash' }])).status).toBe(400);
    expect((await composite([{ ...create(0), url: '/services/data/v61.0/sobjects/Contact' }])).status).toBe(400);
    expect(contacts()).toBe(before + 1);
  });
});
