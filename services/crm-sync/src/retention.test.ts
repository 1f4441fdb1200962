import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Registry } from 'prom-client';
import { ArtifactStore, DEMO_TENANT_KEK, StaticKeyring, buckets, createLogger, ensureStream, openBucket, streams, subjects } from '@gateway/common';
import { DeliveryExpired, TranscriptReady } from '@gateway/proto/gateway/events/v1/events';
import { NatsServer, freePort, waitFor } from '@gateway/testing';
import { ConnectorStore } from './connectors/ConnectorStore.js';
import { KvContactMaps } from './connectors/ContactMap.js';
import { Confirmations } from './Confirmations.js';
import { Deliveries } from './Deliveries.js';

const DAY_MS = 86_400_000;

/**
 * The retention limit, with an injected clock: a communication its tenant's destination never
 * took is deleted once the limit passes, and an alert is raised; a younger one is kept.
 */
describe('retention of undelivered communications', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let artifacts: ArtifactStore;
  let deliveries: Deliveries;
  let clockOffsetMs = 0;
  const registry = new Registry();

  beforeAll(async () => {
    nats = await NatsServer.start();
    nc = await nats.connect();
    const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });
    const log = createLogger('crm-sync-test', 'error');
    artifacts = await ArtifactStore.open(nc, keyring);
    const connectors = new ConnectorStore(await openBucket(nc, buckets.connectors), keyring, new KvContactMaps(await openBucket(nc, buckets.crmContacts)), log, { allowPrivate: true });
    // A destination that never answers: a database port nobody listens on.
    await connectors.put('demo', 'down', { type: 'postgres', config: { host: '127.0.0.1', port: await freePort(), database: 'x', user: 'x', ssl: 'disable' }, secrets: { password: 'x' } });
    await ensureStream(nc, streams.recordings);
    await ensureStream(nc, streams.alerts);
    const jsm = await ensureStream(nc, streams.transcripts);
    await ensureStream(nc, streams.sessions);
    const confirmations = new Confirmations(await openBucket(nc, buckets.crmConfirmations), log);
    deliveries = new Deliveries(
      nc,
      jsm,
      connectors,
      artifacts,
      keyring,
      confirmations,
      {
        concurrency: 2,
        tenantConcurrency: 2,
        retryBaseMs: 100,
        retryMaxMs: 200,
        ackWaitMs: 30_000,
        retentionMs: (tenant) => (tenant === 'demo' ? 7 * DAY_MS : DAY_MS),
        now: () => Date.now() + clockOffsetMs,
      },
      registry,
      log,
    );
    await deliveries.start();
  }, 30_000);

  afterAll(async () => {
    await deliveries?.close();
    await nc?.close();
    await nats?.stop();
  });

  async function publish(conversationId: string): Promise<string> {
    const artifactId = `${conversationId}-txt`;
    await artifacts.put('demo', artifactId, Readable.from([Buffer.from('transcript')]), 'text/plain');
    const event = TranscriptReady.encode({
      tenant: 'demo',
      room: 'r',
      conversationId,
      messageCount: 1,
      startedAtMs: 0,
      endedAtMs: 0,
      contacts: [],
      smartActions: [],
      artifacts: [{ artifactId, kind: 'transcript', contentType: 'text/plain', participantId: '', sizeBytes: 10, durationMs: 0, part: 0 }],
    }).finish();
    await jetstream(nc).publish(subjects.transcriptReady('demo'), event);
    return artifactId;
  }

  it('keeps retrying within the limit, then deletes it undelivered and raises an alert', async () => {
    const alerts = await jetstream(nc).consumers.get(streams.alerts.name, { filter_subjects: subjects.alert('demo', 'delivery_expired') });
    const artifactId = await publish(`CV_ret${Date.now()}`);
    // Six days later it is still held, still being retried.
    clockOffsetMs = 6 * DAY_MS;
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await artifacts.get('demo', artifactId)).data.toString()).toBe('transcript');

    // Past seven days the next attempt deletes it.
    clockOffsetMs = 7 * DAY_MS + 60_000;
    await waitFor(async () => (await artifacts.get('demo', artifactId).catch((e) => e.code)) === 'NOT_FOUND', 5_000, 'the purge');
    const alert = DeliveryExpired.decode((await alerts.next({ expires: 5_000 }))!.data);
    expect(alert).toMatchObject({ tenant: 'demo', kind: 'transcript', artifactCount: 1 });
    expect(alert.attempts).toBeGreaterThan(1);
    expect(Number(alert.purgedAtMs) - Number(alert.storedAtMs)).toBeGreaterThan(7 * DAY_MS);
    await waitFor(async () => (await registry.getSingleMetricAsString('gateway_crm_sync_expired_total')).includes('kind="transcript"} 1'), 5_000, 'the metric');
    // Acknowledged: nothing of it is pending any more.
    await waitFor(
      async () => {
        const info = await (await jetstream(nc).jetstreamManager()).consumers.info(streams.transcripts.name, 'crm-sync-transcripts');
        return info.num_pending === 0 && info.num_ack_pending === 0;
      },
      5_000,
      'the event acknowledged',
    );
    // And erased from the stream: the command does not outlive the communication.
    const jsm = await jetstream(nc).jetstreamManager();
    expect((await jsm.streams.info(streams.transcripts.name)).state.messages).toBe(0);
  });
});
