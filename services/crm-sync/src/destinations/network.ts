import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';
import { ErrorCode, GatewayError } from '@gateway/common';

/**
 * Tenants name their own destinations, so a destination could point crm-sync at our own network
 * (a metadata service, NATS, another service's port) and read answers back through the connector
 * test. A host whose address is not public unicast is refused, unless the deployment allows
 * private destinations (a customer database peered into the cluster, a single machine).
 */
export interface DestinationNetwork {
  allowPrivate: boolean;
}

/** Throws PERMISSION_DENIED when a host is, or resolves to, an address that is not public. */
export async function assertPublicHost(host: string, network: DestinationNetwork): Promise<void> {
  if (network.allowPrivate) return;
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  let addresses: string[];
  if (ipaddr.isValid(bare)) addresses = [bare];
  else {
    try {
      addresses = (await lookup(bare, { all: true, verbatim: true })).map((a) => a.address);
    } catch (error) {
      throw new GatewayError(ErrorCode.DESTINATION_FAILED, `the destination host ${host} does not resolve`, { cause: error });
    }
  }
  for (const address of addresses) {
    // IPv4 written as IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
    const range = ipaddr.process(address).range();
    if (range !== 'unicast') {
      throw new GatewayError(ErrorCode.PERMISSION_DENIED, `the destination host ${host} is a ${range} address; destinations must be reachable on the public internet`);
    }
  }
}

export async function assertPublicHosts(hosts: readonly string[], network: DestinationNetwork): Promise<void> {
  for (const host of hosts) await assertPublicHost(host, network);
}
