import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { ErrorCode, type Tenant } from '@gateway/common';
import type { RoomService } from '../rooms/RoomService.js';
import { createRoomRoutes } from './rooms.js';

const tenant = (name: string) => ({ name }) as Tenant;
const request = { method: 'GET', headers: {} } as http.IncomingMessage;
/** A response that only records its status. */
const response = () => {
  const res = { statusCode: 0, writeHead: (status: number) => ((res.statusCode = status), res), end: () => res };
  return res as unknown as http.ServerResponse & { statusCode: number };
};

describe('the room API rate', () => {
  it("refuses a tenant's requests beyond its rate with RATE_LIMITED and when to retry, and leaves other tenants alone", async () => {
    let listed = 0;
    const service = { listRooms: async () => (listed++, []) } as unknown as RoomService;
    const routes = createRoomRoutes(service, () => undefined, { perSecond: 1, burst: 2 });
    const url = new URL('http://localhost/v1/rooms');
    await routes(tenant('demo'), request, response(), url);
    await routes(tenant('demo'), request, response(), url);
    await expect(routes(tenant('demo'), request, response(), url)).rejects.toMatchObject({ code: ErrorCode.RATE_LIMITED, details: { retryAfterMs: expect.any(Number) } });
    // Nothing happened for the refused request.
    expect(listed).toBe(2);
    await routes(tenant('globex'), request, response(), url);
    expect(listed).toBe(3);
  });
});
