import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type GatewayError } from '@gateway/common';
import { S3ContractServer } from '../../../../test/contracts/s3/server.js';
import { SalesforceContractServer } from '../../../../test/contracts/salesforce/server.js';
import { ZendeskContractServer } from '../../../../test/contracts/zendesk/server.js';
import { delivery } from '../testing/deliveries.js';
import { assertPublicHost, destinationConnections, resolveDestination, type DestinationConnections, type DestinationNetwork, type Resolver } from './network.js';
import { PostgresDestination, postgresConfigSchema } from './postgres.js';
import { S3Destination, s3ConfigSchema } from './s3.js';
import { SalesforceDestination, salesforceConfigSchema } from './salesforce.js';
import { SalesforceTokenCache } from './salesforceApi.js';
import type { Destination } from './types.js';
import { ZendeskDestination, zendeskConfigSchema } from './zendesk.js';

const strict = { allowPrivate: false };
const refused = (host: string) =>
  assertPublicHost(host, strict).then(
    () => 'allowed',
    (error: { code: string }) => error.code,
  );

describe('destination hosts', () => {
  it('refuses loopback, private, link-local (cloud metadata) and other non-public addresses', async () => {
    for (const host of [
      '127.0.0.1',
      'localhost',
      '10.1.2.3',
      '172.20.0.5',
      '192.168.1.10',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '[::1]',
      '::ffff:127.0.0.1',
      'fd00::1',
      'fe80::1',
      '224.0.0.1',
    ]) {
      expect(await refused(host), host).toBe('PERMISSION_DENIED');
    }
  });

  it('lets public addresses through, and everything when private destinations are allowed', async () => {
    expect(await refused('93.184.216.34')).toBe('allowed');
    expect(await refused('2606:2800:220:1:248:1893:25c8:1946')).toBe('allowed');
    await expect(assertPublicHost('127.0.0.1', { allowPrivate: true })).resolves.toBeUndefined();
  });

  it('says so when a name does not resolve', async () => {
    expect(await refused('no-such-host.invalid')).toBe('DESTINATION_FAILED');
  });
});

/**
 * DNS rebinding: a name that answers a public address when it is checked and a private one when
 * the client resolves it again. Each client must connect to the address that was checked, with
 * no second resolution of its own: here every resolution goes through the injected resolver, and
 * the second one (the connection's) is checked again and refused. "localhost" is the name, so a
 * client that resolved it by itself would reach the local server, which counts connections.
 */
describe('connections go only to checked addresses', () => {
  let server: net.Server;
  let port = 0;
  let connections = 0;
  const log = createLogger('network-test', 'silent');
  const contacts = { get: async () => undefined, set: async () => undefined };

  beforeAll(async () => {
    server = net.createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Public the first time, the loopback after: what a rebinding name server answers. */
  function rebinding(): DestinationNetwork & { calls: () => number } {
    let calls = 0;
    const resolve: Resolver = async () => (calls++ === 0 ? [{ address: '93.184.216.34', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
    return { allowPrivate: false, resolve, calls: () => calls };
  }

  const clients: Array<[string, (network: DestinationNetwork, connections: DestinationConnections) => Destination]> = [
    ['PostgreSQL', (network) => new PostgresDestination(postgresConfigSchema.parse({ host: 'localhost', port, database: 'x', user: 'x', ssl: 'disable' }), { password: 'x' }, network, 2_000)],
    [
      'S3',
      (_network, connections) =>
        new S3Destination(
          s3ConfigSchema.parse({ bucket: 'bucket', region: 'eu-west-1', endpoint: `http://localhost:${port}`, maxAttempts: 1 }),
          { accessKeyId: 'a', secretAccessKey: 's' },
          { log, connections },
          { connectTimeoutMs: 2_000, requestTimeoutMs: 2_000 },
        ),
    ],
    [
      'Salesforce',
      (network, connections) =>
        new SalesforceDestination(
          salesforceConfigSchema.parse({ loginUrl: `http://localhost:${port}`, authFlow: 'client_credentials', clientId: 'c', requestTimeoutMs: 2_000 }),
          { clientSecret: 's' },
          { contacts, log, checkHost: (host) => assertPublicHost(host, network), connections },
          { tokens: new SalesforceTokenCache() },
        ),
    ],
    [
      'Zendesk',
      (network, connections) =>
        new ZendeskDestination(
          zendeskConfigSchema.parse({ subdomainUrl: `http://localhost:${port}`, email: 'a@example.com' }),
          { apiToken: 't' },
          { contacts, log, checkHost: (host) => assertPublicHost(host, network), connections },
          { requestTimeoutMs: 2_000 },
        ),
    ],
  ];

  for (const [name, create] of clients) {
    it(`${name}: a name checked as public that resolves to the loopback next is never connected to`, async () => {
      const network = rebinding();
      const connected = destinationConnections(network);
      // The check when the connector is opened: public.
      await assertPublicHost('localhost', network);
      const destination = create(network, connected);
      try {
        const error = await destination.test().then(
          () => undefined,
          (e: unknown) => e as GatewayError,
        );
        expect(error?.code).toBe('PERMISSION_DENIED');
        expect(error?.message).toMatch(/loopback/);
      } finally {
        await destination.close();
        await connected.close();
      }
      expect(network.calls()).toBe(2);
      expect(connections).toBe(0);
    });
  }

  it('connects to exactly the address the resolver gave and was checked, resolving once per connection', async () => {
    let calls = 0;
    // A name the system cannot resolve: only the checked lookup can connect to it.
    const network: DestinationNetwork = { allowPrivate: true, resolve: async () => (calls++, [{ address: '127.0.0.1', family: 4 }]) };
    const connected = destinationConnections(network);
    const destination = new ZendeskDestination(
      zendeskConfigSchema.parse({ subdomainUrl: `http://localhost:${port}`, email: 'a@example.com' }),
      { apiToken: 't' },
      { contacts, log, checkHost: async () => undefined, connections: connected },
      { requestTimeoutMs: 2_000 },
    );
    const before = connections;
    await destination.test().catch(() => undefined);
    await connected.close();
    expect(connections - before).toBe(1);
    expect(calls).toBe(1);
    expect((await resolveDestination('gateway-test.invalid', network))[0]!.address).toBe('127.0.0.1');
  });
});

/**
 * A kept destination reuses its connections: 24 deliveries, 4 at a time, each of several
 * requests, come over a few connections, not one per request (before the S3 contract server
 * answered HEAD with its length, each HeadObject 404 closed its connection: 100 for 100
 * requests). undici may open a second connection per delivery in flight: a request that starts
 * as the previous answer is read finds that connection not yet free.
 */
const KEPT_CONNECTIONS_MAX = 8;
describe('connections are kept alive between requests and deliveries', () => {
  const log = createLogger('network-test', 'silent');
  const network = { allowPrivate: true };
  const memoryContacts = () => {
    const map = new Map<string, string>();
    return { get: async (id: string) => map.get(id), set: async (id: string, value: string) => void map.set(id, value) };
  };
  const deliverAll = async (destination: Destination) => {
    const all = Array.from({ length: 24 }, (_, i) => delivery({ deliveryId: `REC_keep${i}`, contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: `ext-keep-${i}`, crmContactId: '' }] }));
    for (let at = 0; at < all.length; at += 4) await Promise.all(all.slice(at, at + 4).map((d) => destination.deliver(d)));
  };

  it('Salesforce', async () => {
    const server = await SalesforceContractServer.start({ clientId: 'c', clientSecret: 's' });
    const connected = destinationConnections(network);
    const destination = new SalesforceDestination(
      salesforceConfigSchema.parse({ loginUrl: server.url, authFlow: 'client_credentials', clientId: 'c' }),
      { clientSecret: 's' },
      { contacts: memoryContacts(), log, checkHost: async () => undefined, connections: connected },
      { tokens: new SalesforceTokenCache() },
    );
    try {
      await deliverAll(destination);
      expect(server.requests.filter((r) => !r.composite).length).toBeGreaterThanOrEqual(48);
      expect(server.connections).toBeLessThanOrEqual(KEPT_CONNECTIONS_MAX);
    } finally {
      await connected.close();
      await server.stop();
    }
  });

  it('Zendesk', async () => {
    const server = await ZendeskContractServer.start({ email: 'a@example.com', apiToken: 't' });
    const connected = destinationConnections(network);
    const destination = new ZendeskDestination(
      zendeskConfigSchema.parse({ subdomainUrl: server.url, email: 'a@example.com' }),
      { apiToken: 't' },
      { contacts: memoryContacts(), log, checkHost: async () => undefined, connections: connected },
    );
    try {
      await deliverAll(destination);
      expect(server.requests.length).toBeGreaterThanOrEqual(48);
      expect(server.connections).toBeLessThanOrEqual(KEPT_CONNECTIONS_MAX);
    } finally {
      await connected.close();
      await server.close();
    }
  });

  it('S3', async () => {
    const server = await S3ContractServer.start({ buckets: ['bucket'] });
    const connected = destinationConnections(network);
    const destination = new S3Destination(
      s3ConfigSchema.parse({ bucket: 'bucket', region: server.region, endpoint: server.url }),
      S3ContractServer.defaultCredential,
      { log, connections: connected },
      { connectTimeoutMs: 2_000, requestTimeoutMs: 10_000 },
    );
    try {
      await deliverAll(destination);
      expect(server.requests.length).toBeGreaterThanOrEqual(48);
      expect(server.connections).toBeLessThanOrEqual(KEPT_CONNECTIONS_MAX);
    } finally {
      await destination.close();
      await connected.close();
      await server.close();
    }
  });
});
