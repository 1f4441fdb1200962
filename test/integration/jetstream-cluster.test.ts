import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { buckets, catalog, streamNameOf, streams } from '@gateway/common';
import { NatsCluster, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';

/**
 * The production shape of NATS: a cluster of three servers with JetStream, every stream, bucket
 * and object store kept in three copies (NATS_REPLICAS=3, applied by the provisioning step).
 * Losing one server loses nothing and stops nothing.
 */
describe('on a three-server JetStream cluster', () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  const clients = new TestClients();

  beforeAll(async () => {
    cluster = await NatsCluster.start(3, { provision: false });
    nc = await cluster.connect();
    // JetStream answers once the cluster has elected its meta leader.
    await waitFor(
      async () =>
        (await jetstreamManager(nc)
          .then((jsm) => jsm.getAccountInfo())
          .catch(() => undefined)) !== undefined,
      20_000,
      'a JetStream meta leader',
    );
    // An earlier one-copy set-up left a stream and a bucket behind: they get their copies too.
    await (await jetstreamManager(nc)).streams.add({ name: streams.sessions.name, subjects: [...streams.sessions.subjects], num_replicas: 1 });
    await new Kvm(nc).create(buckets.roomPlacement, { replicas: 1 });
    // The provisioning step as Kubernetes runs it (its own process, the admin identity).
    await cluster.runProvisioning({ NATS_REPLICAS: '3' });
    sfu = await startSfuProcess({ natsUrl: cluster.url });
    signaling = await startSignalingProcess({ natsUrl: cluster.url });
  }, 90_000);

  afterAll(async () => {
    clients.closeAll();
    await signaling?.stop();
    await sfu?.stop();
    await nc?.close();
    await cluster?.stop();
  });

  it('keeps three copies of every stream, bucket and object store, including ones made with fewer', async () => {
    const jsm = await jetstreamManager(nc);
    for (const entry of catalog) {
      expect((await jsm.streams.info(streamNameOf(entry))).config.num_replicas, streamNameOf(entry)).toBe(3);
    }
    const kvm = new Kvm(nc);
    for (const bucket of [buckets.sfuNodes, buckets.roomPlacement, buckets.participants, buckets.roomSessions, buckets.chatKeys, buckets.dataKeys]) {
      expect((await (await kvm.open(bucket)).status()).replicas, bucket).toBe(3);
    }
    expect((await (await new Objm(nc).open(buckets.artifacts)).status()).replicas).toBe(3);
  });

  it('goes on when one server is lost: joins, chat and the SFU registry keep working', async () => {
    const room = `cluster-${Date.now()}`;
    const before = await clients.join(signaling.wsUrl, await demoToken({ room, identity: 'agent-1', role: 'agent' }));
    expect((await before.client.request('sendMessage', { text: 'before' })).error).toBeUndefined();
    const jsm = await jetstreamManager(nc);
    await cluster.stopServer(0);
    // The cluster elects new leaders for what the lost server led (nats-server's own failover);
    // then everything must be there and work.
    await waitFor(
      async () => {
        try {
          const names: string[] = [];
          for await (const info of jsm.streams.list()) names.push(info.config.name);
          const infos = await Promise.all(names.map((name) => jsm.streams.info(name)));
          return infos.length > 0 && infos.every((info) => info.cluster?.leader) ? true : undefined;
        } catch {
          return undefined;
        }
      },
      90_000,
      'new stream leaders after losing a server',
    );
    let lastError: unknown;
    // Clients reconnect to the other servers; the replicated state is all there.
    const after = await waitFor(
      async () => {
        try {
          // While the streams elect new leaders a join may go through without the history
          // (signaling does not hold a join for it); the conversation must come back.
          const joined = await clients.join(signaling.wsUrl, await demoToken({ room, identity: 'agent-2', role: 'agent' }));
          if (!joined.join.messages?.length) {
            joined.client.close();
            return undefined;
          }
          return joined;
        } catch (error) {
          lastError = error;
          return undefined;
        }
      },
      30_000,
      'a join after losing a server',
    ).catch((error) => {
      throw new Error(`${String(error)}; last join error: ${String(lastError)}\n${signaling.logs.slice(-3000)}`);
    });
    expect(after.join.messages.map((m: { text: string }) => m.text)).toEqual(['before']);
    expect((await after.client.request('sendMessage', { text: 'after' })).error).toBeUndefined();
    const resp = await fetch(`http://127.0.0.1:${sfu.opsPort}/readyz`);
    expect(resp.status).toBe(200);
  }, 150_000);
});
