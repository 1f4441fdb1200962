import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress, LookupOptions } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import ipaddr from 'ipaddr.js';
import { Agent } from 'undici';
import { ErrorCode, GatewayError } from '@gateway/common';

/** Resolves a host name to its addresses (the system resolver unless a test gives another). */
export type Resolver = (host: string) => Promise<LookupAddress[]>;

/**
 * Tenants name their own destinations, so a destination could point crm-sync at our own network
 * (a metadata service, NATS, another service's port) and read answers back through the connector
 * test. A host whose address is not public unicast is refused, unless the deployment allows
 * private destinations (a customer database peered into the cluster, a single machine).
 */
export interface DestinationNetwork {
  allowPrivate: boolean;
  resolve?: Resolver;
}

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Resolves a host once and checks every address it gives; the connection is then made to
 * exactly these addresses. Checking a name and letting the client resolve it again would let a
 * name that answers a public address first and a private one next (DNS rebinding) through.
 * PERMISSION_DENIED for an address that is not public, DESTINATION_FAILED when it does not resolve.
 */
export async function resolveDestination(host: string, network: DestinationNetwork): Promise<LookupAddress[]> {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  let addresses: LookupAddress[];
  if (ipaddr.isValid(bare)) addresses = [{ address: bare, family: bare.includes(':') ? 6 : 4 }];
  else {
    try {
      addresses = await (network.resolve ?? systemResolver)(bare);
    } catch (error) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the destination host ${host} does not resolve`, { cause: error });
    }
    if (addresses.length === 0) throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the destination host ${host} does not resolve`);
  }
  if (network.allowPrivate) return addresses;
  for (const { address } of addresses) {
    // IPv4 written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
    const range = ipaddr.isValid(address) ? ipaddr.process(address).range() : 'invalid';
    if (range !== 'unicast') {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, `the destination host ${host} is a ${range} address; destinations must be reachable on the public internet`);
    }
  }
  return addresses;
}

/** Throws PERMISSION_DENIED when a host is, or resolves to, an address that is not public. */
export async function assertPublicHost(host: string, network: DestinationNetwork): Promise<void> {
  await resolveDestination(host, network);
}

export async function assertPublicHosts(hosts: readonly string[], network: DestinationNetwork): Promise<void> {
  for (const host of hosts) await assertPublicHost(host, network);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
/** The `lookup` option of net.connect (and of the HTTP agents built on it). */
export type CheckedLookup = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

/**
 * A `lookup` for sockets that resolves through `resolveDestination`: every connection goes to
 * an address that was checked when that connection was made, and to no other.
 */
export function checkedLookup(network: DestinationNetwork): CheckedLookup {
  return (hostname, options, callback) => {
    resolveDestination(hostname, network).then(
      (found) => {
        const wanted = options.family === 4 || options.family === 6 ? found.filter((a) => a.family === options.family) : found;
        if (wanted.length === 0) {
          callback(Object.assign(new Error(`no address of family ${String(options.family)}`), { code: 'ENOTFOUND' }), '', 0);
          return;
        }
        if (options.all) callback(null, wanted);
        else callback(null, wanted[0]!.address, wanted[0]!.family);
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, '', 0),
    );
  };
}

/** What a destination connects with: an undici dispatcher and HTTP agents that resolve once and check. */
export interface DestinationConnections {
  /** For undici's request. */
  dispatcher: Agent;
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
  lookup: CheckedLookup;
  close(): Promise<void>;
}

/**
 * Connections to one destination host at most: a replica runs a few dozen deliveries at once
 * (CRM_SYNC_CONCURRENCY), each with one request at a time; more would only queue at the customer.
 */
const MAX_CONNECTIONS_PER_HOST = 64;

/**
 * Connections are kept alive between requests and deliveries (a delivery makes 2-6 requests; a
 * new TCP and TLS handshake for each cost more than the request), without pipelining.
 */
export function destinationConnections(network: DestinationNetwork): DestinationConnections {
  const lookup = checkedLookup(network);
  const dispatcher = new Agent({ connect: { lookup }, connections: MAX_CONNECTIONS_PER_HOST, pipelining: 1 });
  const agentOptions = { keepAlive: true, maxSockets: MAX_CONNECTIONS_PER_HOST, lookup };
  const httpAgent = new http.Agent(agentOptions as http.AgentOptions);
  const httpsAgent = new https.Agent(agentOptions as https.AgentOptions);
  return {
    dispatcher,
    httpAgent,
    httpsAgent,
    lookup,
    /** Ends every connection, requests in flight included (closing would wait for them). */
    async close() {
      httpAgent.destroy();
      httpsAgent.destroy();
      await dispatcher.destroy().catch(() => undefined);
    },
  };
}

/** A header's value as undici's request gives it (the first, if it came more than once). */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * A GatewayError of ours in an error's cause chain (a refused address inside the request's
 * error, an artifact that failed its check while a request body was read), if any: it says
 * what happened better than the network error around it.
 */
export function ownCause(error: unknown): GatewayError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    if (current instanceof GatewayError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
