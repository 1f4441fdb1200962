import { describe, expect, it } from 'vitest';
import { Validator } from '@seriousme/openapi-schema-validator';
import { OpenApiContract, specFiles } from '../support/openapi.js';

/**
 * The OpenAPI documents (docs/openapi/) are valid OpenAPI 3.1, describe closed answers, and the
 * contract check the integration tests run on every request fails on what departs from them.
 * The real exchanges are checked in test/integration/room-api.test.ts, room-api-fuzz.test.ts and
 * crm-sync/admin-openapi.test.ts.
 */
describe('the OpenAPI contracts', () => {
  it.each(Object.entries(specFiles))('%s is valid OpenAPI 3.1', async (_name, file) => {
    const validator = new Validator();
    const result = await validator.validate(file);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it.each(Object.entries(specFiles))('%s closes every object of its answers (an undocumented field fails)', (_name, file) => {
    expect(OpenApiContract.load(file).openResponseObjects()).toEqual([]);
  });

  it('refuses an undocumented field, status, path or header, and a body the contract does not take', () => {
    const contract = OpenApiContract.load(specFiles.signaling);
    const headers = new Headers({ 'content-type': 'application/json' });
    const rooms = { rooms: [{ room: 'r1', participants: 2 }] };
    expect(contract.problems({ method: 'GET', target: '/v1/rooms', status: 200, headers, body: rooms })).toEqual([]);
    // A deliberate violation: a field the contract does not name.
    const leaked = { rooms: [{ room: 'r1', participants: 2, phoneNumber: '+14155550132' }] };
    expect(contract.problems({ method: 'GET', target: '/v1/rooms', status: 200, headers, body: leaked }).join('\n')).toMatch(/additional properties \(phoneNumber\)/);
    expect(contract.problems({ method: 'GET', target: '/v1/rooms', status: 200, headers, body: { rooms: [{ room: 'r1' }] } }).join('\n')).toMatch(/participants/);
    expect(contract.problems({ method: 'GET', target: '/v1/rooms', status: 200, headers, body: { error: { code: 'NOPE', message: '' } } })).not.toEqual([]);
    expect(contract.problems({ method: 'GET', target: '/v1/nowhere', status: 404, headers, body: undefined })).toEqual(['GET /v1/nowhere → 404: the path is not in the contract']);
    // A 405 must name what the resource takes.
    const methodError = { error: { code: 'METHOD_NOT_ALLOWED', message: 'use GET' } };
    expect(contract.problems({ method: 'PUT', target: '/v1/rooms', status: 405, headers, body: methodError })).toEqual(['PUT /v1/rooms → 405: the allow header is missing']);
    expect(contract.problems({ method: 'PUT', target: '/v1/rooms', status: 405, headers: new Headers({ allow: 'GET' }), body: methodError })).toEqual([]);
    // An accepted request must be one the contract describes.
    const sent = { sentAtMs: 1, participants: 1 };
    expect(contract.problems({ method: 'POST', target: '/v1/rooms/r1/data', requestBody: { payload: 'hi' }, status: 202, headers, body: sent })).toEqual([]);
    expect(contract.problems({ method: 'POST', target: '/v1/rooms/r1/data', requestBody: { payload: 'hi', to: 'x' }, status: 202, headers, body: sent }).join('\n')).toMatch(/request body/);
    expect(contract.problems({ method: 'POST', target: '/v1/rooms/r%2A/data', requestBody: { payload: 'hi' }, status: 202, headers, body: sent }).join('\n')).toMatch(/path parameter room/);
  });
});
