import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '@gateway/testing';
import { ZendeskContractServer } from '../../contracts/zendesk/server.js';
import { adminApi, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';

const TEST_SECONDS = 1.5;
const ZENDESK = { email: 'agent@acme.example', apiToken: 'zendesk-token-probe' };

/**
 * The connector test is not a port scanner: a port that refuses, one that takes the connection
 * and never answers, one that hangs up, one that answers garbage, and a real service refusing
 * the credentials all get the same answer, at the same time. What happened is in the log, under
 * the reference the answer gives.
 */
describe('connector tests reveal nothing of the network', () => {
  let stack: CrmSyncStack;
  let zendesk: ZendeskContractServer;
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();

  async function tcpServer(onConnection: (socket: net.Socket) => void): Promise<number> {
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      onConnection(socket);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  beforeAll(async () => {
    [stack, zendesk] = await Promise.all([startCrmSyncStack({ CRM_SYNC_CONNECTOR_TEST_SECONDS: String(TEST_SECONDS) }), ZendeskContractServer.start(ZENDESK)]);
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) await new Promise<void>((resolve) => server.close(() => resolve()));
    await stack?.stop();
    await zendesk?.close();
  });

  it('answers one failure, at one time, whatever the network did', async () => {
    const admin = adminApi(stack.crm.url);
    const postgres = (port: number) => ({ type: 'postgres', config: { host: '127.0.0.1', port, database: 'x', user: 'x', ssl: 'disable' }, secrets: { password: 'x' } });
    const probes: Record<string, unknown> = {
      refused: postgres(await freePort()),
      silent: postgres(await tcpServer(() => undefined)),
      hangsUp: postgres(await tcpServer((socket) => socket.destroy())),
      garbage: postgres(await tcpServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'))),
      s3Refused: {
        type: 's3',
        config: { bucket: 'bucket', region: 'eu-west-1', endpoint: `http://127.0.0.1:${await freePort()}`, maxAttempts: 1 },
        secrets: { accessKeyId: 'a', secretAccessKey: 's' },
      },
      wrongToken: { type: 'zendesk', config: { subdomainUrl: zendesk.url, email: ZENDESK.email }, secrets: { apiToken: 'not-the-token' } },
    };
    const answers: Array<{ name: string; status: number; body: string; ms: number; reference: string }> = [];
    for (const [name, body] of Object.entries(probes)) {
      expect((await admin(`/v1/connectors/${name}`, { method: 'PUT', body: JSON.stringify(body) })).status).toBe(200);
      const started = performance.now();
      const response = await admin(`/v1/connectors/${name}/test`, { method: 'POST' });
      const text = await response.text();
      const reference = /reference ([0-9a-f]{12})/.exec(text)?.[1] ?? '';
      answers.push({ name, status: response.status, body: text.replace(reference, '<reference>'), ms: performance.now() - started, reference });
    }
    const summary = JSON.stringify(answers.map(({ name, status, ms }) => ({ name, status, ms: Math.round(ms) })));
    // One status and one body for all of them.
    expect(new Set(answers.map((a) => a.status)), summary).toEqual(new Set([502]));
    expect(new Set(answers.map((a) => a.body)).size, summary).toBe(1);
    expect(answers[0]!.body).not.toMatch(/ECONN|SQLSTATE|timed? ?out|refused|reset|anonymous|HTTP \d/i);
    // Each answered when the test time was up, not sooner.
    for (const a of answers) expect(a.ms, summary).toBeGreaterThanOrEqual(TEST_SECONDS * 1000 - 5);
    expect(Math.max(...answers.map((a) => a.ms)) - Math.min(...answers.map((a) => a.ms)), summary).toBeLessThan(500);
    // The log tells the operator what happened, under each reference.
    for (const a of answers) await waitFor(() => stack.crm.logs.includes(a.reference), 5_000, `the log line of ${a.name}`);

    // A destination that works answers at once.
    await admin('/v1/connectors/works', { method: 'PUT', body: JSON.stringify({ ...(probes.wrongToken as object), secrets: { apiToken: ZENDESK.apiToken } }) });
    const started = performance.now();
    expect(await (await admin('/v1/connectors/works/test', { method: 'POST' })).json()).toEqual({ ok: true });
    expect(performance.now() - started).toBeLessThan(TEST_SECONDS * 1000);
  }, 60_000);
});
