import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '@gateway/common';
import { TurnServer, turnserverInstalled } from '@gateway/testing';
import { CloudMetadataServer, type Cloud } from '../../../../test/contracts/cloud-metadata/server.js';
import { hostileAnswer } from '../../../../test/contracts/cloud-metadata/hostileAnswers.js';
import { HOSTILE_KINDS, type Reply, StunResponder, bindingSuccess, hostileDatagram } from '../../../../test/contracts/stun/server.js';
import { recordingLogger } from '../../../../test/support/recordingLogger.js';
import { seededRandom } from '../../../../test/support/seededRandom.js';
import { ANNOUNCED_ADDRESS_TIMINGS, type AnnouncedAddressSettings, type AnnouncedAddressTimings, findAnnouncedAddress } from './discover.js';

/**
 * How the SFU finds the address it announces, against the contract servers of the AWS (IMDSv2),
 * GCP and Azure metadata services, a real coturn, and a STUN server of ours for the answers coturn
 * would never give. Every answer is hostile input: an address is announced only from an honest
 * answer, and where none comes start-up fails with `announced_address_unavailable`. The process
 * around it (the candidates, the metric, the exit) is test/integration/announced-address.test.ts.
 */

const seed = Number(process.env.FUZZ_SEED ?? 2026);

/**
 * The production rounds and transmissions (what is counted depends on them), with shorter waits:
 * the backoff and the Retry-After cap are what a round waits, the timeouts what silence costs.
 */
const timings: AnnouncedAddressTimings = {
  ...ANNOUNCED_ADDRESS_TIMINGS,
  backoff: { initialMs: 10, maxMs: 40 },
  maxRetryAfterMs: 200,
  metadataTimeoutMs: 500,
  stun: { initialRtoMs: 50, giveUpMs: 700 },
};

/** A UDP port free on the loopback right now, as the media's first port would be. */
async function freeUdpPort(address = '127.0.0.1'): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** The address found, with what was logged on the way. */
async function find(settings: AnnouncedAddressSettings, listenIp = '127.0.0.1') {
  const log = recordingLogger();
  const found = await findAnnouncedAddress(settings, { listenIp, port: await freeUdpPort(listenIp) }, log, timings);
  return { ...found, log };
}

/** Why no address was found: the error start-up fails with. */
async function refusal(settings: AnnouncedAddressSettings, listenIp = '127.0.0.1'): Promise<GatewayError> {
  const error = await find(settings, listenIp).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'an address was found').toBeInstanceOf(GatewayError);
  const refused = error as GatewayError;
  expect(refused.message).toMatch(new RegExp(`^announced_address_unavailable: no address to announce from SFU_ANNOUNCED_ADDRESS_SOURCE=${settings.source}: `));
  expect(refused.details).toMatchObject({ reason: 'announced_address_unavailable', source: settings.source });
  return refused;
}

describe.each(['aws', 'gcp', 'azure'] as const)('the announced address from the %s metadata service', (cloud: Cloud) => {
  let metadata: CloudMetadataServer;
  beforeAll(async () => {
    metadata = await CloudMetadataServer.start(cloud);
  });
  afterAll(() => metadata?.close());
  const settings = (allowPrivate = false): AnnouncedAddressSettings => ({ source: cloud, metadataUrl: metadata.url, allowPrivate });

  it('is the public address it gives, through a burst of 429, 500 and 503 answers, waiting at least the Retry-After (up to its cap)', async () => {
    metadata.honest();
    metadata.publicAddress = cloud === 'azure' ? '2603:1030:20e:3::5' : '52.95.110.1';
    metadata.failNext({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'status', status: 500 }, { kind: 'status', status: 503 });
    const mark = metadata.requests.length;
    const found = await find(settings());
    expect(found).toMatchObject({ address: metadata.publicAddress, source: cloud });
    const requests = metadata.requests.slice(mark);
    expect(requests.slice(0, 3).map((r) => r.status)).toEqual([429, 500, 503]);
    // Every honest answer was a 200: it asked as the service documents (headers, token).
    expect(requests.slice(3).map((r) => r.status)).toEqual(cloud === 'aws' ? [200, 200] : [200]);
    if (cloud === 'aws') expect(requests.at(-1)).toMatchObject({ method: 'GET', path: '/latest/meta-data/public-ipv4', tokenValid: true });
    // One wait per failed round; after the 429 the Retry-After (1 s), capped, not the backoff (at most 10 ms then).
    const waits = found.log.lines.filter((line) => line.message === 'announced address not found yet; asking again').map((line) => line.fields.waitMs);
    expect(waits).toHaveLength(3);
    expect(waits[0]).toBe(timings.maxRetryAfterMs);
    expect(waits.slice(1).every((ms) => typeof ms === 'number' && ms < timings.maxRetryAfterMs)).toBe(true);
  });

  it('is refused, without asking again, when the instance has no public address', async () => {
    metadata.honest();
    metadata.publicAddress = undefined;
    const mark = metadata.requests.length;
    expect((await refusal(settings())).message).toMatch(new RegExp(`: ${cloud}: the metadata service knows no public address`));
    expect(metadata.requests.length - mark).toBe(cloud === 'aws' ? 2 : 1);
  });

  it('is refused when private, unless allowed (tests and private networks)', async () => {
    metadata.honest();
    metadata.publicAddress = '10.0.12.7';
    expect((await refusal(settings())).message).toMatch(/the metadata service's answer is not a public unicast address/);
    expect(await find(settings(true))).toMatchObject({ address: '10.0.12.7', source: cloud });
  });

  it(`is never a hostile answer (seed ${seed}): found once an honest one comes, refused with announced_address_unavailable on hostile ones only`, async () => {
    const random = seededRandom(seed + cloud.length);
    metadata.honest();
    metadata.publicAddress = '52.95.110.1';
    // Silence (the request times out), two hostile answers, then honest: asked again through them.
    metadata.failNext({ kind: 'silent' }, hostileAnswer(random), hostileAnswer(random));
    expect(await find(settings())).toMatchObject({ address: '52.95.110.1', source: cloud });
    // Nothing but hostile answers: refused, with the code and nothing else.
    metadata.answerWith(() => hostileAnswer(random));
    try {
      await refusal(settings());
    } finally {
      metadata.honest();
    }
  });
});

describe('the announced address by STUN', () => {
  const responders: StunResponder[] = [];
  afterAll(() => Promise.all(responders.map((r) => r.close())));
  const responder = async (reply: Reply) => {
    const r = await StunResponder.start(reply);
    responders.push(r);
    return r;
  };
  const stun = (addresses: string[], allowPrivate = false): AnnouncedAddressSettings => ({
    source: 'stun',
    servers: addresses.map((address) => ({ host: address.slice(0, address.lastIndexOf(':')), port: Number(address.slice(address.lastIndexOf(':') + 1)) })),
    allowPrivate,
  });

  it.skipIf(!turnserverInstalled())('refuses the loopback address coturn sees unless allowed', async () => {
    const coturn = await TurnServer.start();
    try {
      // The media listen on 127.0.0.2 (the loopback is all of 127/8): coturn sees the requests come from there.
      expect((await refusal(stun([`127.0.0.1:${coturn.port}`]), '127.0.0.2')).message).toMatch(/the mapped address is not a public unicast address/);
      expect(await find(stun([`127.0.0.1:${coturn.port}`], true), '127.0.0.2')).toMatchObject({ address: '127.0.0.2', source: 'stun' });
    } finally {
      await coturn.stop();
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
    expect(await find(stun([server.address]))).toMatchObject({ address: '34.120.7.9', source: 'stun' });
  });

  it('is refused on nothing but hostile datagrams', async () => {
    const random = seededRandom(seed + 1);
    const hostile = await responder((request) => Array.from({ length: 3 }, () => hostileDatagram(random, request, { address: '34.120.7.9', port: request.from.port })));
    expect((await refusal(stun([hostile.address]))).message).toMatch(/stun: no server gave a usable answer/);
    // Four rounds of four transmissions each: retransmitted, then asked again, then given up.
    expect(hostile.requests).toBe(4 * 4);
  });

  it('is refused on a private address, or on two servers that disagree; a server that does not answer is left out', async () => {
    const privateAnswer = await responder((request) => [bindingSuccess(request.transactionId, '10.0.12.7', request.from.port)]);
    expect((await refusal(stun([privateAnswer.address]))).message).toMatch(/the mapped address is not a public unicast address/);

    const one = await responder((request) => [bindingSuccess(request.transactionId, '34.120.7.9', request.from.port)]);
    const other = await responder((request) => [bindingSuccess(request.transactionId, '34.120.7.10', request.from.port)]);
    expect((await refusal(stun([one.address, other.address]))).message).toMatch(/stun: the servers disagree/);

    const silent = await responder(() => []);
    const found = await find(stun([silent.address, one.address]));
    expect(found).toMatchObject({ address: '34.120.7.9', source: 'stun' });
    expect(silent.requests).toBe(4);
    expect(found.log.lines.find((line) => line.message === 'some STUN servers gave no usable answer')?.fields.problems).toEqual([`${silent.address}: no answer`]);
  });
});
