import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { ArtifactStore, buckets, catalog, DEMO_TENANT_KEK, GatewayError, isArtifactStoreFull, StaticKeyring, streamNameOf } from '@gateway/common';
import { NatsServer, startCrmSyncProcess, startSfuProcess, startSignalingProcess, waitFor } from '@gateway/testing';
import { scrapeMetrics } from '../support/metrics.js';
import { TestClients } from '../support/wsClient.js';
import { demoToken } from '../support/tokens.js';
import { storeWhenRoom } from '../../services/recorder/src/assemble.js';

const alertsPath = fileURLToPath(new URL('../../k8s/base/alerts.yaml', import.meta.url));

/** The artifact store's own limit in this test: small enough to fill in a moment. */
const ARTIFACT_LIMIT_BYTES = 2 * 1024 * 1024;
const BUDGET_BYTES = 1024 ** 3;
const artifactsStream = `OBJ_${buckets.artifacts}`;

/** The threshold of an alert of k8s/base/alerts.yaml, with the metrics its expression reads. */
function alertRule(name: string): { expr: string; threshold: number } {
  for (const document of parseAllDocuments(readFileSync(alertsPath, 'utf8'))) {
    const rule = (document.toJS()?.spec?.groups ?? []).flatMap((group: { rules: Array<{ alert?: string; expr: string }> }) => group.rules).find((r: { alert?: string }) => r.alert === name);
    if (rule) return { expr: rule.expr, threshold: Number(/>\s*([\d.]+)\s*$/.exec(rule.expr)![1]) };
  }
  throw new Error(`no alert ${name}`);
}

/**
 * A CRM that takes no deliveries for days fills the object store of recordings. That store has a
 * limit of its own, apart from the registries, placement and sessions of live calls: its writes
 * are refused (to be written again later, as a delivery is retried), the storage alert reads it
 * full, and calls go on: SFUs keep heartbeating, participants keep joining.
 */
describe('a full artifact store', () => {
  let nats: NatsServer;
  let admin: NatsConnection;
  let recorder: NatsConnection;
  let crmSyncNats: NatsConnection;
  let sfu: Awaited<ReturnType<typeof startSfuProcess>>;
  let signaling: Awaited<ReturnType<typeof startSignalingProcess>>;
  let crmSync: Awaited<ReturnType<typeof startCrmSyncProcess>>;
  const clients = new TestClients();
  const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });
  const written: string[] = [];

  const streamInfo = async (name: string) => (await jetstreamManager(admin)).streams.info(name);
  /** An artifact written as the recorder writes one: its size given when known (`sized`). */
  const write = (store: ArtifactStore, bytes: number, sized = false) => {
    const artifactId = `AR_${randomBytes(8).toString('hex')}`;
    return store.put('demo', artifactId, Readable.from([randomBytes(bytes)]), 'audio/webm', sized ? { sizeBytes: bytes } : {}).then(() => {
      written.push(artifactId);
      return artifactId;
    });
  };

  beforeAll(async () => {
    nats = await NatsServer.start({ provision: false });
    // The client's clean-up of a refused artifact purges its chunks, which only the deleting service may do.
    nats.expectsViolations = true;
    await nats.runProvisioning({ NATS_STORAGE_BUDGET: String(BUDGET_BYTES), NATS_STORAGE_LIMITS: JSON.stringify({ [buckets.artifacts]: { maxBytes: String(ARTIFACT_LIMIT_BYTES) } }) });
    admin = await nats.connect('admin');
    recorder = await nats.connect('recorder');
    crmSyncNats = await nats.connect('crm-sync');
    sfu = await startSfuProcess({ natsUrl: nats.url, env: { SFU_HEARTBEAT_SECONDS: '0.5' } });
    [signaling, crmSync] = await Promise.all([
      startSignalingProcess({ natsUrl: nats.url }),
      startCrmSyncProcess({ natsUrl: nats.url, env: { CRM_SYNC_RESIDUE_NKEY_SEED_FILE: nats.envFor('residue').NATS_NKEY_SEED_FILE! } }),
    ]);
  }, 120_000);

  afterAll(async () => {
    clients.closeAll();
    await Promise.all([signaling?.stop(), crmSync?.stop()]);
    await sfu?.stop('SIGKILL');
    await Promise.all([admin?.close(), recorder?.close(), crmSyncNats?.close()]);
    await nats?.stop();
  });

  it('has a limit of its own, and so has every bucket of hot state, all within the budget', async () => {
    expect((await streamInfo(artifactsStream)).config.max_bytes).toBe(ARTIFACT_LIMIT_BYTES);
    const hot = catalog.filter((entry) => entry.hot);
    expect(hot.map(streamNameOf)).toEqual(expect.arrayContaining([`KV_${buckets.sfuNodes}`, `KV_${buckets.roomPlacement}`, `KV_${buckets.roomSessions}`, `KV_${buckets.participants}`]));
    let total = 0;
    for (const entry of catalog) {
      const { config } = await streamInfo(streamNameOf(entry));
      expect(config.max_bytes, streamNameOf(entry)).toBeGreaterThan(0);
      expect(config.discard, streamNameOf(entry)).toBe('new');
      total += config.max_bytes;
    }
    expect(total).toBeLessThanOrEqual(BUDGET_BYTES);
  });

  it('refuses the next artifact with a code to retry on, raises its alert, and calls go on', async () => {
    const store = await ArtifactStore.open(recorder, keyring, 'recordings');
    // Filled as the recorder fills it while crm-sync cannot deliver: large artifacts, then what still fits.
    let refused: unknown;
    for (const size of [256 * 1024, 32 * 1024, 4 * 1024]) {
      for (let i = 0; i < 64; i++) {
        const outcome = await write(store, size).then(
          () => undefined,
          (error: unknown) => error,
        );
        if (outcome) {
          refused = outcome;
          break;
        }
      }
    }
    expect(refused).toBeInstanceOf(GatewayError);
    expect((refused as GatewayError).code).toBe('UNAVAILABLE');
    expect((refused as GatewayError).details).toEqual({ reason: 'storage_full', store: buckets.artifacts });
    const filled = await streamInfo(artifactsStream);
    expect(filled.state.bytes).toBeLessThanOrEqual(ARTIFACT_LIMIT_BYTES);

    // The alert reads crm-sync's gauges: the store is past GatewayJetStreamStorageFull's threshold, hot state far below.
    const full = alertRule('GatewayJetStreamStorageFull');
    expect(full.expr).toMatch(/gateway_jetstream_stream_bytes\b.*\/.*gateway_jetstream_stream_max_bytes\b/);
    const fill = async (stream: string) => {
      const scrape = await scrapeMetrics(crmSync.opsPort);
      const of = (name: string) => scrape.samples.find((s) => s.name === name && s.labels.stream === stream)?.value;
      return of('gateway_jetstream_stream_bytes')! / of('gateway_jetstream_stream_max_bytes')!;
    };
    await waitFor(async () => (await fill(artifactsStream)) > full.threshold, 10_000, 'the artifact store reported full');
    expect(await fill(`KV_${buckets.sfuNodes}`)).toBeLessThan(alertRule('GatewayJetStreamStorageFilling').threshold);

    // Hot state is untouched: the SFU's heartbeats go on being stored...
    const registry = await new Kvm(admin).open(buckets.sfuNodes);
    const before = (await registry.get(sfu.nodeId))!.revision;
    await waitFor(async () => ((await registry.get(sfu.nodeId))?.revision ?? 0) >= before + 2, 10_000, 'two more SFU heartbeats stored');
    // ...and a participant joins a room (placement, session and participant records written) and has media.
    const room = `full-store-${Date.now()}`;
    const { client, join } = await clients.join(signaling.wsUrl, await demoToken({ room, identity: 'caller', role: 'end_user' }));
    expect(join.participant.participantId).toBeTruthy();
    const transport = await client.request('createTransport', { direction: 'send' });
    expect(transport.error).toBeUndefined();
    expect(transport.createTransport.transportId).toBeTruthy();
    const second = await clients.join(signaling.wsUrl, await demoToken({ room, identity: 'agent', role: 'agent' }));
    expect(second.join.participant.participantId).toBeTruthy();
    expect((await (await new Kvm(admin).open(buckets.roomPlacement)).get(`demo.${room}`))?.operation).toBe('PUT');

    // The recorder writes a refused file again with a backoff, and it is stored once crm-sync delivered some and made room.
    expect(isArtifactStoreFull(refused)).toBe(true);
    // A write of known size is refused before any of its chunks land: a writer that may not purge would leave them taking room.
    const bytesWhenFull = (await streamInfo(artifactsStream)).state.bytes;
    await expect(write(store, 256 * 1024, true)).rejects.toSatisfy(isArtifactStoreFull);
    expect((await streamInfo(artifactsStream)).state.bytes).toBe(bytesWhenFull);
    let attempts = 0;
    const retried = storeWhenRoom(
      () => {
        attempts++;
        return write(store, 256 * 1024, true);
      },
      30_000,
      { initialMs: 100, maxMs: 1_000 },
    );
    await waitFor(() => attempts >= 2, 10_000, 'a write refused while the store is full, then tried again');
    const delivered = await ArtifactStore.open(crmSyncNats, keyring);
    await delivered.delete('demo', written[0]!);
    await delivered.delete('demo', written[1]!);
    expect(await retried).toMatch(/^AR_/);
  }, 90_000);
});
