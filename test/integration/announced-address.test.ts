import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary } from '@gateway/common';
import { NatsServer, TurnServer, startSfuProcess, turnserverInstalled } from '@gateway/testing';
import { CloudMetadataServer, type Cloud } from '../contracts/cloud-metadata/server.js';
import { SfuClients } from '../support/grpcClients.js';
import { metricValue } from '../support/metrics.js';

/**
 * The SFU process finds the address it puts in ICE candidates at start-up: as configured, from
 * the cloud's metadata service (the contract servers of AWS IMDSv2, GCP and Azure), or by STUN
 * (two real coturn). One real SFU per case, judged by the candidates of a transport it opens,
 * its metric and its logs; where no address is found it must exit during start-up with
 * `announced_address_unavailable`. What each source accepts and refuses (bursts, Retry-After,
 * hostile answers, disagreeing STUN servers) is services/sfu/src/announcedAddress/discover.test.ts.
 */

const metadataUrlVariable: Record<Cloud, string> = { aws: 'SFU_AWS_METADATA_URL', gcp: 'SFU_GCP_METADATA_URL', azure: 'SFU_AZURE_METADATA_URL' };

/**
 * SFU start-ups under way at once. Each runs a Node.js process and a mediasoup worker: six at
 * once on two shared cores outlast the helper's 30 s readiness wait, two do not.
 */
const STARTS_AT_ONCE = 2;

// The cases run at once, each with its own SFU and its own metadata or STUN servers (nothing is
// shared but NATS), their start-ups two at a time; a case may wait for two others' start-ups first.
describe.concurrent('the announced address of an SFU process', { timeout: 120_000 }, () => {
  let nats: NatsServer;
  const running: Array<Awaited<ReturnType<typeof startSfuProcess>>> = [];
  const metadataServers: CloudMetadataServer[] = [];

  beforeAll(async () => {
    nats = await NatsServer.start();
  });
  afterAll(async () => {
    await Promise.all([...running.map((sfu) => sfu.stop()), ...metadataServers.map((server) => server.close())]);
    await nats?.stop();
  });

  let starting = 0;
  const waitingToStart: Array<() => void> = [];
  /** An SFU with `env` (the test helper's SFU_ANNOUNCED_ADDRESS unset unless given), once fewer than STARTS_AT_ONCE are starting. */
  const start = async (env: Record<string, string>) => {
    while (starting >= STARTS_AT_ONCE) await new Promise<void>((resolve) => waitingToStart.push(resolve));
    starting++;
    try {
      const sfu = await startSfuProcess({ natsUrl: nats.url, env: { SFU_ANNOUNCED_ADDRESS: '', ...env } });
      running.push(sfu);
      return sfu;
    } finally {
      starting--;
      waitingToStart.shift()?.();
    }
  };
  /** A metadata service of `cloud` for one case, and the SFU environment that points at it. */
  const metadataService = async (cloud: Cloud) => {
    const server = await CloudMetadataServer.start(cloud);
    metadataServers.push(server);
    return { server, env: { SFU_ANNOUNCED_ADDRESS_SOURCE: cloud, [metadataUrlVariable[cloud]]: server.url } };
  };
  /** The addresses of the ICE candidates of a transport the SFU opens for a participant, as signaling asks for it. */
  const announced = async (sfu: Awaited<ReturnType<typeof startSfuProcess>>) => {
    const clients = new SfuClients(`127.0.0.1:${sfu.grpcPort}`);
    try {
      const signaling = clients.as('signaling');
      const room = { tenant: 'acme', room: `announce-${sfu.grpcPort}` };
      await callUnary(signaling, signaling.openRoom, { room });
      const transport = await callUnary(signaling, signaling.createWebRtcTransport, { room, participantId: 'PA_1', direction: TransportDirection.TRANSPORT_DIRECTION_SEND });
      const addresses = transport.iceCandidates.map((candidate) => String(candidate.address ?? candidate.ip));
      expect(addresses.length).toBeGreaterThan(0);
      return [...new Set(addresses)];
    } finally {
      clients.close();
    }
  };
  const sourceMetric = (sfu: { opsPort: number }, source: string, address: string) => metricValue(sfu.opsPort, 'gateway_sfu_announced_address_info', { source, address });

  it('announces SFU_ANNOUNCED_ADDRESS as configured (explicit, the default source)', async () => {
    const sfu = await start({ SFU_ANNOUNCED_ADDRESS: '198.18.0.7' });
    expect(await announced(sfu)).toEqual(['198.18.0.7']);
    expect(await sourceMetric(sfu, 'explicit', '198.18.0.7')).toBe(1);
    await sfu.stop();
  });

  it('announces the public address the aws metadata service gives, through a 429, with an IMDSv2 token', async () => {
    const { server, env } = await metadataService('aws');
    server.publicAddress = '52.95.110.1';
    server.failNext({ kind: 'status', status: 429, retryAfter: '1' });
    const sfu = await start(env);
    expect(await announced(sfu)).toEqual(['52.95.110.1']);
    expect(await sourceMetric(sfu, 'aws', '52.95.110.1')).toBe(1);
    expect(sfu.logs).toMatch(/"source":"aws".*announced address for ICE candidates/);
    expect(server.requests.map((r) => r.status)).toEqual([429, 200, 200]);
    expect(server.requests.at(-1)).toMatchObject({ method: 'GET', path: '/latest/meta-data/public-ipv4', tokenValid: true });
    await sfu.stop();
  });

  it.each([
    ['gcp', '34.120.7.9'],
    ['azure', '2603:1030:20e:3::5'],
  ] as const)('announces the public address the %s metadata service gives', async (cloud, address) => {
    const { server, env } = await metadataService(cloud);
    server.publicAddress = address;
    const sfu = await start(env);
    expect(await announced(sfu)).toEqual([address]);
    await sfu.stop();
  });

  it('exits during start-up with announced_address_unavailable when no address is found', async () => {
    const { server, env } = await metadataService('gcp');
    server.publicAddress = undefined;
    const error = await start(env).then(
      () => undefined,
      (e: unknown) => String((e as Error).message),
    );
    expect(error, 'the SFU started').toBeDefined();
    expect(error).toMatch(/exited with 1 during start-up/);
    expect(error).toMatch(/fatal: announced_address_unavailable: no address to announce from SFU_ANNOUNCED_ADDRESS_SOURCE=gcp: gcp: the metadata service knows no public address/);
  });

  it.skipIf(!turnserverInstalled())('announces the address two coturn servers see the media port at', async () => {
    const [first, second] = await Promise.all([TurnServer.start(), TurnServer.start()]);
    try {
      // The media listen on 127.0.0.2 (the loopback is all of 127/8): coturn sees the requests come from there, not from the default 127.0.0.1.
      const sfu = await start({
        SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun',
        SFU_STUN_SERVERS: `127.0.0.1:${first.port},127.0.0.1:${second.port}`,
        SFU_LISTEN_IP: '127.0.0.2',
        SFU_ANNOUNCED_ADDRESS_ALLOW_PRIVATE: 'true',
      });
      expect(await announced(sfu)).toEqual(['127.0.0.2']);
      expect(await sourceMetric(sfu, 'stun', '127.0.0.2')).toBe(1);
      // The requests came from the media port itself.
      expect(sfu.logs).not.toMatch(/changes ports/);
      await sfu.stop();
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });
});
