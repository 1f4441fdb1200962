import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_TENANT, DEMO_TENANT_KEK } from '@gateway/common';
import { NatsServer, startSfuProcess, startSignalingProcess } from '@gateway/testing';
import { mintJoinToken } from '../../services/signaling/src/auth/tokens.js';
import { requestSchemas } from '../../services/signaling/src/ws/requests.js';
import { GLOBEX_TENANT } from '../support/tokens.js';
import { METHODS } from './generators.js';
import { fuzzSignaling, type FuzzStats } from './signalingFuzzer.js';

/**
 * The short seeded pass of the protocol fuzzer (`make fuzz` runs the long one against `make up`):
 * two signaling replicas, a real SFU and NATS take valid, mutated and broken frames of every
 * method, floods, forged tokens, spliced resume tokens, foreign ids and hostile HTTP. Set
 * FUZZ_SEED to replay a run, FUZZ_FRAMES / FUZZ_HTTP_REQUESTS for a longer one.
 */
describe('signaling under a seeded protocol fuzzer', () => {
  let nats: NatsServer;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let replicas: Array<Awaited<ReturnType<typeof startSignalingProcess>>>;

  beforeAll(async () => {
    nats = await NatsServer.start();
    sfu = await startSfuProcess({ natsUrl: nats.url });
    const env = {
      GATEWAY_TENANTS: JSON.stringify([DEMO_TENANT, GLOBEX_TENANT]),
      GATEWAY_TENANT_KEYS: JSON.stringify({ demo: DEMO_TENANT_KEK, globex: Buffer.alloc(32, 7).toString('base64') }),
      SIGNALING_RESUME_WINDOW_SECONDS: '2',
      LOG_LEVEL: 'warn',
    };
    replicas = await Promise.all([startSignalingProcess({ natsUrl: nats.url, env }), startSignalingProcess({ natsUrl: nats.url, env })]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all((replicas ?? []).map((r) => r.stop()));
    await sfu?.stop();
    await nats?.stop();
  });

  it('covers every method of the protocol', () => {
    expect([...METHODS].sort()).toEqual(Object.keys(requestSchemas).sort());
  });

  it('loses no process, answers every batch, accepts no forged credential and no foreign id', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? 20261205);
    const stats: FuzzStats = await fuzzSignaling(
      {
        wsUrls: replicas.map((r) => r.wsUrl),
        httpUrls: replicas.map((r) => r.url),
        tenant: DEMO_TENANT,
        other: GLOBEX_TENANT,
        mint: async (request) => (await mintJoinToken(DEMO_TENANT, request)).token,
        maxFrameBytes: 64 * 1024,
      },
      { seed, frames: Number(process.env.FUZZ_FRAMES ?? 3_000), httpRequests: Number(process.env.FUZZ_HTTP_REQUESTS ?? 300), batchFrames: 1_000 },
    );
    if (process.env.FUZZ_VERBOSE) console.log(JSON.stringify(stats));
    const context = JSON.stringify({ seed, forged: stats.forgedAccepted, foreign: stats.foreignIdsAccepted, liveness: stats.livenessFailures });
    expect(stats.forgedAccepted, context).toEqual([]);
    expect(stats.foreignIdsAccepted, context).toEqual([]);
    expect(stats.livenessFailures, context).toEqual([]);
    for (const replica of replicas) expect(replica.running, replica.logs.slice(-2_000)).toBe(true);
    expect(sfu.running).toBe(true);
    // The run reached the code behind the checks, not only the parser.
    expect(stats.responses.OK ?? 0).toBeGreaterThan(100);
    expect(stats.responses.MALFORMED_MESSAGE ?? 0).toBeGreaterThan(100);
    expect(stats.responses.UNAUTHENTICATED ?? 0).toBeGreaterThan(5);
    expect(stats.http['400'] ?? 0).toBeGreaterThan(0);
    // Nothing was answered as an internal failure.
    expect(stats.responses.INTERNAL ?? 0, context).toBe(0);
  }, 240_000);
});
