import { copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransportDirection } from '@gateway/proto/gateway/sfu/v1/sfu';
import { sfuLoadScore } from '@gateway/cluster';
import { callUnary } from '@gateway/common';
import { NatsServer, startSfuProcess, waitFor } from '@gateway/testing';
import { KubernetesApiServer } from '../contracts/kubernetes/server.js';
import { hostileAnswer } from '../contracts/kubernetes/hostileAnswers.js';
import { SfuClients } from '../support/grpcClients.js';
import { metricValue } from '../support/metrics.js';
import { seededRandom } from '../support/seededRandom.js';

const namespace = 'gateway-media';
const LOWEST_COST = -2_147_483_648;

/** A service account folder as the kubelet mounts it: the API server's CA and a token it replaces by moving a new file in. */
function serviceAccountDir(api: KubernetesApiServer): { dir: string; writeToken(token: string): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'gateway-serviceaccount-'));
  copyFileSync(api.caFile, path.join(dir, 'ca.crt'));
  const writeToken = (token: string) => {
    writeFileSync(path.join(dir, 'token.new'), token);
    renameSync(path.join(dir, 'token.new'), path.join(dir, 'token'));
  };
  writeToken(api.currentToken);
  return { dir, writeToken };
}

/** An SFU process in "Kubernetes": Pod `podName` of gateway-media, the contract server as its API server. */
function startSfuInPod(natsUrl: string, api: KubernetesApiServer, accountDir: string, podName: string) {
  return startSfuProcess({
    natsUrl,
    env: {
      POD_NAME: podName,
      POD_NAMESPACE: namespace,
      KUBERNETES_SERVICE_HOST: api.host,
      KUBERNETES_SERVICE_PORT: String(api.port),
      SFU_KUBERNETES_SERVICE_ACCOUNT_DIR: accountDir,
      // The interval of production is 15 s; the behaviour is the same at a fifth of a second.
      SFU_DELETION_COST_INTERVAL_SECONDS: '0.2',
    },
  });
}

/**
 * The SFU keeps its Pod's `controller.kubernetes.io/pod-deletion-cost` equal to its load, so the
 * ReplicaSet removes the emptiest SFU first on a scale-down: a real SFU process, a real
 * nats-server, load made over gRPC as signaling makes it, and the contract server of the
 * Kubernetes API standing for the API server.
 */
describe('the SFU Pod deletion cost', () => {
  let nats: NatsServer;
  let api: KubernetesApiServer;
  let account: ReturnType<typeof serviceAccountDir>;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let clients: SfuClients;
  const pod = 'sfu-0';
  const room = { tenant: 'acme', room: 'support-cost' };
  const signaling = () => clients.as('signaling');

  const written = () => api.deletionCost(namespace, pod);
  const load = async () => sfuLoadScore((await callUnary(signaling(), signaling().getNodeInfo, {})).load);
  /** Waits until the Pod's cost is `expected` (by default the node's load as it reports it now), and returns it. */
  const costSettles = async (expected?: number) =>
    (
      await waitFor(
        async () => {
          const want = expected ?? (await load());
          return written() === want ? { want } : undefined;
        },
        15_000,
        `the Pod deletion cost to be ${expected ?? 'the load'} (it is ${written()})`,
      )
    ).want;
  const join = async (participantId: string) => {
    // The room opens with the first participant; later opens find it.
    await callUnary(signaling(), signaling().openRoom, { room });
    for (const direction of [TransportDirection.TRANSPORT_DIRECTION_SEND, TransportDirection.TRANSPORT_DIRECTION_RECV])
      await callUnary(signaling(), signaling().createWebRtcTransport, { room, participantId, direction });
  };
  const leave = (participantId: string) => callUnary(signaling(), signaling().closeParticipant, { room, participantId });
  const requestsSince = (mark: number) => api.requests.slice(mark);

  beforeAll(async () => {
    [nats, api] = await Promise.all([NatsServer.start(), KubernetesApiServer.start()]);
    api.allow(namespace, [pod]);
    api.addPod(namespace, pod);
    api.addPod(namespace, 'sfu-1');
    account = serviceAccountDir(api);
    sfu = await startSfuInPod(nats.url, api, account.dir, pod);
    clients = new SfuClients(`127.0.0.1:${sfu.grpcPort}`);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await sfu?.stop();
    await Promise.all([nats?.stop(), api?.close()]);
    if (account) rmSync(account.dir, { recursive: true, force: true });
  });

  it('writes the load of an idle node at start: 0', async () => {
    expect(await costSettles(0)).toBe(0);
    // Only its own Pod.
    expect(api.pod(namespace, 'sfu-1')!.metadata.annotations).toEqual({});
  });

  it('follows the load as participants join and leave, writing only a cost that changed', async () => {
    const mark = api.requests.length;
    for (const participant of ['PA_1', 'PA_2', 'PA_3']) await join(participant);
    // A room and six transports.
    expect(await costSettles()).toBe(5 + 2 * 6);
    await leave('PA_1');
    expect(await costSettles()).toBe(5 + 2 * 4);
    await leave('PA_2');
    expect(await costSettles()).toBe(5 + 2 * 2);
    const costs = requestsSince(mark)
      .filter((r) => r.status === 200)
      .map((r) => r.deletionCost);
    expect(costs.length).toBeGreaterThanOrEqual(3);
    // A write carries a cost the Pod did not hold already.
    expect(costs.filter((cost, i) => cost === (i === 0 ? '0' : costs[i - 1]))).toEqual([]);
    expect(await metricValue(sfu.opsPort, 'gateway_sfu_pod_deletion_cost')).toBe(5 + 2 * 2);
  });

  it('waits out a 429 as long as its Retry-After asks, and a 500 its backoff, then writes', async () => {
    const mark = api.requests.length;
    api.failNext({ kind: 'status', status: 429, retryAfter: '1' }, { kind: 'status', status: 500 });
    await join('PA_4');
    expect(await costSettles()).toBe(5 + 2 * 4);
    const [limited, failed, ok] = requestsSince(mark);
    expect([limited?.status, failed?.status, ok?.status]).toEqual([429, 500, 200]);
    // Retry-After: 1 is a promise not to ask again within the second (a slow machine only waits longer).
    expect(failed!.atMs - limited!.atMs).toBeGreaterThanOrEqual(1_000);
    expect(sfu.running).toBe(true);
    expect(await metricValue(sfu.opsPort, 'gateway_sfu_pod_deletion_cost_failures_total', { failure: 'rate_limited' })).toBe(1);
    expect(await metricValue(sfu.opsPort, 'gateway_sfu_pod_deletion_cost_failures_total', { failure: 'server_error' })).toBe(1);
  });

  it('reads the token file again: a token the kubelet rotated is used for the next write', async () => {
    const mark = api.requests.length;
    // The server takes only the new token from now on, and the file holds it before the SFU can write again.
    account.writeToken(api.rotateToken());
    const before = written();
    await join('PA_rotated');
    expect(await costSettles()).toBe(before! + 2 * 2);
    const since = requestsSince(mark);
    expect(since.map((r) => r.status)).not.toContain(401);
    expect(since.at(-1)).toMatchObject({ token: api.currentToken, status: 200 });
  });

  it('goes to the lowest cost of all when the node drains, whatever it still carries', async () => {
    const drained = await fetch(`http://127.0.0.1:${sfu.opsPort}/drain`, { method: 'POST' });
    expect(drained.status).toBe(202);
    expect(await costSettles(LOWEST_COST)).toBe(LOWEST_COST);
    // The room still runs: the cost no longer follows it.
    expect(await load()).toBeGreaterThan(0);
    await join('PA_5');
    await leave('PA_3');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(written()).toBe(LOWEST_COST);
  });
});

/** Fuzz: the API server answers with garbage; the SFU keeps serving and writes once it is honest again. */
describe('the SFU Pod deletion cost against a hostile API server', () => {
  let nats: NatsServer;
  let api: KubernetesApiServer;
  let account: ReturnType<typeof serviceAccountDir>;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let clients: SfuClients;
  const pod = 'sfu-hostile';
  const seed = Number(process.env.FUZZ_SEED ?? 2025);

  beforeAll(async () => {
    [nats, api] = await Promise.all([NatsServer.start(), KubernetesApiServer.start()]);
    api.allow(namespace, [pod]);
    api.addPod(namespace, pod);
    account = serviceAccountDir(api);
    const random = seededRandom(seed);
    // Two answers in three are hostile: runs of failures grow the backoff, honest answers reset it.
    api.answerWith(() => (random() < 2 / 3 ? hostileAnswer(random) : undefined));
    sfu = await startSfuInPod(nats.url, api, account.dir, pod);
    clients = new SfuClients(`127.0.0.1:${sfu.grpcPort}`);
  }, 60_000);

  afterAll(async () => {
    clients?.close();
    await sfu?.stop();
    await Promise.all([nats?.stop(), api?.close()]);
    if (account) rmSync(account.dir, { recursive: true, force: true });
  });

  it(`stays up and serving through 25 hostile answers (seed ${seed}), then writes its cost`, async () => {
    const signaling = clients.as('signaling');
    const room = { tenant: 'acme', room: 'hostile' };
    await callUnary(signaling, signaling.openRoom, { room });
    const hostile = () => api.requests.filter((r) => r.fault !== undefined).length;
    let participants = 0;
    await waitFor(
      async () => {
        // The load moves after each answer, so the node always has a cost to write; and it keeps taking work while its writes fail.
        if (participants < api.requests.length + 1)
          await callUnary(signaling, signaling.createWebRtcTransport, { room, participantId: `PA_${++participants}`, direction: TransportDirection.TRANSPORT_DIRECTION_SEND });
        return hostile() >= 25;
      },
      90_000,
      '25 hostile answers',
    );
    expect(sfu.running).toBe(true);
    expect((await fetch(`http://127.0.0.1:${sfu.opsPort}/healthz`)).status).toBe(200);
    // Every hostile answer was counted as a failed write, none believed.
    expect(await metricValue(sfu.opsPort, 'gateway_sfu_pod_deletion_cost_failures_total')).toBeGreaterThanOrEqual(hostile() - 1);
    const honestWrites = api.requests.filter((r) => r.fault === undefined && r.status === 200).length;
    expect(await metricValue(sfu.opsPort, 'gateway_sfu_pod_deletion_cost_writes_total')).toBeLessThanOrEqual(honestWrites);
    api.honest();
    await waitFor(async () => api.deletionCost(namespace, pod) === sfuLoadScore((await callUnary(signaling, signaling.getNodeInfo, {})).load), 30_000, 'the cost written once the server is honest');
    expect(sfu.logs).not.toMatch(/"level":(50|60)/);
  });
});
