import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { callUnary } from '@gateway/common';
import { NatsServer, TurnServer, startSfuProcess, turnserverInstalled } from '@gateway/testing';
import { CloudMetadataServer, type Cloud } from '../contracts/cloud-metadata/server.js';
import { hostileAnswer } from '../contracts/cloud-metadata/hostileAnswers.js';
import { HOSTILE_KINDS, type Reply, StunResponder, bindingSuccess, hostileDatagram } from '../contracts/stun/server.js';
import { SfuClients } from '../support/grpcClients.js';
import { metricValue } from '../support/metrics.js';
import { seededRandom } from '../support/seededRandom.js';

/**
 * The SFU finds the address it puts in ICE candidates at start-up: from the cloud's metadata
 * service (the contract servers of AWS IMDSv2, GCP and Azure), by STUN (a real coturn; hostile
 * STUN answers from a server of ours), or as configured. A real SFU process each time, judged by
 * what it announces in a transport's ICE candidates; where no trustworthy address is found it
 * must refuse to start with `announced_address_unavailable`, and only so.
 */

const seed = Number(process.env.FUZZ_SEED ?? 2026);
const metadataUrlVariable: Record<Cloud, string> = { aws: 'SFU_AWS_METADATA_URL', gcp: 'SFU_GCP_METADATA_URL', azure: 'SFU_AZURE_METADATA_URL' };

// Each test starts SFU processes, some made to wait out timeouts and retries: on a shared machine that takes a while.
describe('the announced address of an SFU', { timeout: 60_000 }, () => {
  let nats: NatsServer;
  const running: Array<Awaited<ReturnType<typeof startSfuProcess>>> = [];

  beforeAll(async () => {
    nats = await NatsServer.start();
  });
  afterAll(async () => {
    await Promise.all(running.map((sfu) => sfu.stop()));
    await nats?.stop();
  });

  /** An SFU with `env` (the test helper's SFU_ANNOUNCED_ADDRESS unset unless given). */
  const start = async (env: Record<string, string>) => {
    const sfu = await startSfuProcess({ natsUrl: nats.url, env: { SFU_ANNOUNCED_ADDRESS: '', ...env } });
    running.push(sfu);
    return sfu;
  };
  /** Why the SFU refused to start: its last words. */
  const refusal = async (env: Record<string, string>): Promise<string> => {
    const error = await start(env).then(
      () => undefined,
      (e: unknown) => String((e as Error).message),
    );
    expect(error, 'the SFU started').toBeDefined();
    return error!;
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

  describe.each(['aws', 'gcp', 'azure'] as const)('from the %s metadata service', (cloud) => {
    let metadata: CloudMetadataServer;
    beforeAll(async () => {
      metadata = await CloudMetadataServer.start(cloud);
    });
    afterAll(() => metadata?.close());
    const env = (extra: Record<string, string> = {}) => ({ SFU_ANNOUNCED_ADDRESS_SOURCE: cloud, [metadataUrlVariable[cloud]]: metadata.url, ...extra });

    it('announces the public address it gives, through a burst of 429 and 500 answers', async () => {
      metadata.honest();
      metadata.publicAddress = cloud === 'azure' ? '2603:1030:20e:3::5' : '52.95.110.1';
      metadata.failNext({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'status', status: 500 }, { kind: 'status', status: 503 });
      const mark = metadata.requests.length;
      const sfu = await start(env());
      expect(await announced(sfu)).toEqual([metadata.publicAddress]);
      expect(await sourceMetric(sfu, cloud, metadata.publicAddress)).toBe(1);
      expect(sfu.logs).toMatch(new RegExp(`"source":"${cloud}".*announced address for ICE candidates`));
      const requests = metadata.requests.slice(mark);
      expect(requests.slice(0, 3).map((r) => r.status)).toEqual([429, 500, 503]);
      // Every honest answer was a 200: the SFU asked as the service documents (headers, token).
      expect(requests.slice(3).map((r) => r.status)).toEqual(cloud === 'aws' ? [200, 200] : [200]);
      if (cloud === 'aws') expect(requests.at(-1)).toMatchObject({ method: 'GET', path: '/latest/meta-data/public-ipv4', tokenValid: true });
      await sfu.stop();
    });

    it('refuses to start, without asking again, when the instance has no public address', async () => {
      metadata.honest();
      metadata.publicAddress = undefined;
      const mark = metadata.requests.length;
      const error = await refusal(env());
      expect(error).toMatch(new RegExp(`announced_address_unavailable: no address to announce from SFU_ANNOUNCED_ADDRESS_SOURCE=${cloud}: ${cloud}: the metadata service knows no public address`));
      expect(metadata.requests.length - mark).toBe(cloud === 'aws' ? 2 : 1);
    });

    it('refuses a private address unless allowed (tests and private networks)', async () => {
      metadata.honest();
      metadata.publicAddress = '10.0.12.7';
      expect(await refusal(env())).toMatch(/announced_address_unavailable: .*the metadata service's answer is not a public unicast address/);
      const sfu = await start(env({ SFU_ANNOUNCED_ADDRESS_ALLOW_PRIVATE: 'true' }));
      expect(await announced(sfu)).toEqual(['10.0.12.7']);
      await sfu.stop();
    });

    it(`never announces a hostile answer (seed ${seed}): it starts once an honest one comes, or refuses with announced_address_unavailable`, async () => {
      const random = seededRandom(seed + cloud.length);
      metadata.honest();
      metadata.publicAddress = '52.95.110.1';
      // Silence (the request times out), two hostile answers, then honest: the SFU asks again through them.
      metadata.failNext({ kind: 'silent' }, hostileAnswer(random), hostileAnswer(random));
      const sfu = await start(env());
      expect(await announced(sfu)).toEqual(['52.95.110.1']);
      await sfu.stop();
      // Nothing but hostile answers: start-up fails, with the code and nothing else.
      metadata.answerWith(() => hostileAnswer(random));
      const error = await refusal(env());
      expect(error).toMatch(/exited with 1 during start-up/);
      expect(error).toMatch(/fatal: announced_address_unavailable: /);
      metadata.honest();
    });
  });

  describe('by STUN', () => {
    const responders: StunResponder[] = [];
    afterAll(() => Promise.all(responders.map((r) => r.close())));
    const responder = async (reply: Reply) => {
      const r = await StunResponder.start(reply);
      responders.push(r);
      return r;
    };

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
        // Without the allowance a loopback address is refused.
        expect(await refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: `127.0.0.1:${first.port}`, SFU_LISTEN_IP: '127.0.0.2' })).toMatch(
          /announced_address_unavailable: .*the mapped address is not a public unicast address/,
        );
      } finally {
        await Promise.all([first.stop(), second.stop()]);
      }
    });

    it(`finds the honest answer among hostile datagrams (seed ${seed}): random bytes, other transactions, oversized, altered`, async () => {
      const random = seededRandom(seed);
      const claimed = { address: '34.120.7.9', port: 0 };
      // Before the honest answer: one datagram of each hostile kind, then a few more picked at random, shuffled.
      const server = await responder((request) => {
        const hostile = [
          ...HOSTILE_KINDS.map((kind) => hostileDatagram(random, request, { ...claimed, port: request.from.port }, kind)),
          ...Array.from({ length: Math.floor(random() * 5) }, () => hostileDatagram(random, request, { ...claimed, port: request.from.port })),
        ].sort(() => random() - 0.5);
        return [...hostile, bindingSuccess(request.transactionId, claimed.address, request.from.port)];
      });
      const sfu = await start({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: server.address });
      expect(await announced(sfu)).toEqual(['34.120.7.9']);
      await sfu.stop();
    });

    it('refuses to start on nothing but hostile datagrams', async () => {
      const random = seededRandom(seed + 1);
      const hostile = await responder((request) => Array.from({ length: 3 }, () => hostileDatagram(random, request, { address: '34.120.7.9', port: request.from.port })));
      expect(await refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: hostile.address })).toMatch(/fatal: announced_address_unavailable: .*no server gave a usable answer/);
      // Four rounds of four transmissions each: retransmitted, then asked again, then given up.
      expect(hostile.requests).toBe(4 * 4);
    }, 60_000);

    it('refuses to start on a private address, or on two servers that disagree; leaves out a server that does not answer', async () => {
      const privateAnswer = await responder((request) => [bindingSuccess(request.transactionId, '10.0.12.7', request.from.port)]);
      expect(await refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: privateAnswer.address })).toMatch(/announced_address_unavailable: .*not a public unicast address/);

      const one = await responder((request) => [bindingSuccess(request.transactionId, '34.120.7.9', request.from.port)]);
      const other = await responder((request) => [bindingSuccess(request.transactionId, '34.120.7.10', request.from.port)]);
      expect(await refusal({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: `${one.address},${other.address}` })).toMatch(/announced_address_unavailable: .*stun: the servers disagree/);
      const silent = await responder(() => []);
      const sfu = await start({ SFU_ANNOUNCED_ADDRESS_SOURCE: 'stun', SFU_STUN_SERVERS: `${silent.address},${one.address}` });
      expect(await announced(sfu)).toEqual(['34.120.7.9']);
      await sfu.stop();
    }, 90_000);
  });
});
