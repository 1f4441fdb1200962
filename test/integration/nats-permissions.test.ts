import net from 'node:net';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, errors, nkeyAuthenticator, nkeys, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import {
  ArtifactStore,
  DEMO_TENANT_KEK,
  ErrorCode,
  StaticKeyring,
  buckets,
  catalog,
  crmSyncDurables,
  dataKeyName,
  inboxPrefixOf,
  openBucket,
  permissionsOf,
  streamNameOf,
  subjects,
  type ServiceIdentity,
} from '@gateway/common';
import { NatsServer } from '@gateway/testing';
import { deliveryConsumers } from '../../services/crm-sync/src/Deliveries.js';

const keyring = new StaticKeyring({ demo: DEMO_TENANT_KEK });
const services: ServiceIdentity[] = ['signaling', 'sfu', 'recorder', 'crm-sync', 'routing', 'residue'];
const permissionViolation = /Permissions Violation/;

/** Resolves once the connection reports that the server refused a publish or subscription to `subject`. */
async function refusedAsync(nc: NatsConnection, subject: string, act: () => void | Promise<void>): Promise<void> {
  const seen = (async () => {
    for await (const status of nc.status()) {
      const error = status.type === 'error' ? (status as { error?: unknown }).error : undefined;
      if (error instanceof errors.PermissionViolationError && error.subject === subject) return;
    }
  })();
  await act();
  await nc.flush();
  await Promise.race([seen, new Promise((_, reject) => setTimeout(() => reject(new Error(`no refusal of ${subject}`)), 3_000))]);
}

/** The server's first line, then what it says to a CONNECT over plain TCP. */
async function plaintextConnect(port: number): Promise<{ info: string; answer: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    let info = '';
    socket.on('data', (chunk) => {
      received += chunk.toString();
      if (!info && received.includes('\r\n')) {
        info = received.slice(0, received.indexOf('\r\n'));
        received = '';
        socket.write('CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n');
      }
    });
    socket.on('close', () => resolve({ info, answer: received }));
    socket.on('error', (error) => (info ? resolve({ info, answer: received }) : reject(error)));
    setTimeout(() => socket.destroy(), 3_000);
  });
}

/**
 * The closed inside: NATS takes only TLS clients with a certificate of our CA and an nkey of
 * ours, and each identity may do only what its service needs (packages/common/src/jetstream/
 * access.ts). Every refusal here was an open door before: any client on port 4222 could do all
 * of it.
 */
describe('NATS: TLS, an identity per service, least privilege', () => {
  let nats: NatsServer;
  const as: Partial<Record<ServiceIdentity | 'admin', NatsConnection>> = {};
  const recording = { tenant: 'demo', artifactId: 'AR_permission_test' };

  beforeAll(async () => {
    nats = await NatsServer.start();
    nats.expectsViolations = true;
    for (const identity of ['admin', ...services] as const) as[identity] = await nats.connect(identity);
    // What there is to protect: a recording waiting for delivery, a tenant's connector, a participant.
    const recorderStore = await ArtifactStore.open(as.admin!, keyring, 'recordings');
    await recorderStore.put(recording.tenant, recording.artifactId, Readable.from([Buffer.from('the recording')]), 'audio/mpeg');
    await (await openBucket(as.admin!, buckets.connectors)).put('demo.warehouse', JSON.stringify({ type: 'postgres', secrets: 'sealed' }));
    await (await openBucket(as.admin!, buckets.participants)).put('demo.room-1.PA_1', new Uint8Array([1, 2, 3]));
  });

  afterAll(async () => {
    for (const nc of Object.values(as)) await nc?.close();
    await nats?.stop();
  });

  const recordingKey = () => dataKeyName(recording.tenant, 'recordings', recording.artifactId);
  const recordingIsIntact = async () => {
    const store = await ArtifactStore.open(as.admin!, keyring);
    expect((await store.get(recording.tenant, recording.artifactId)).data.toString()).toBe('the recording');
  };

  it('refuses clients without TLS, without a certificate of our CA, or without an nkey of ours', async () => {
    const port = Number(new URL(nats.url.replace('tls://', 'http://')).port);
    // Plain TCP: the server asks for TLS and answers a CONNECT by closing the connection.
    const plain = await plaintextConnect(port);
    expect(JSON.parse(plain.info.replace(/^INFO /, '')).tls_required).toBe(true);
    expect(plain.answer).not.toContain('PONG');

    const adminSeed = new TextEncoder().encode(readFileSync(nats.envFor('admin').NATS_NKEY_SEED_FILE, 'utf8').trim());
    const servers = nats.url;
    // TLS, the admin's nkey, but no client certificate.
    await expect(connect({ servers, authenticator: nkeyAuthenticator(adminSeed), tls: { caFile: nats.pki.caFile }, reconnect: false })).rejects.toThrow();
    // A certificate of another CA.
    await expect(
      connect({ servers, authenticator: nkeyAuthenticator(adminSeed), tls: { caFile: nats.pki.caFile, certFile: nats.pki.foreign.certFile, keyFile: nats.pki.foreign.keyFile }, reconnect: false }),
    ).rejects.toThrow();
    // Our CA's certificate, but no nkey, or an nkey the server does not know.
    const tls = { caFile: nats.pki.caFile, certFile: nats.pki.stranger.certFile, keyFile: nats.pki.stranger.keyFile };
    await expect(connect({ servers, tls, reconnect: false })).rejects.toThrow(/Authorization/i);
    await expect(connect({ servers, tls, authenticator: nkeyAuthenticator(nkeys.createUser().getSeed()), reconnect: false })).rejects.toThrow(/Authorization/i);
  });

  it('signaling cannot read connector secrets, delete or purge data keys, or announce a recording', async () => {
    const nc = as.signaling!;
    await expect(openBucket(nc, buckets.connectors)).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    const connectors = await new Kvm(nc).open(buckets.connectors, { allow_direct: true });
    await expect(connectors.get('demo.warehouse')).rejects.toThrow(permissionViolation);

    const dataKeys = await new Kvm(nc).open(buckets.dataKeys, { allow_direct: true });
    await expect(dataKeys.get(recordingKey())).rejects.toThrow(permissionViolation);
    await expect(dataKeys.purge(recordingKey())).rejects.toThrow(permissionViolation);
    await expect(dataKeys.delete(recordingKey())).rejects.toThrow(permissionViolation);
    await expect(dataKeys.put(recordingKey(), 'overwritten')).rejects.toThrow(permissionViolation);
    const jsm = await jetstreamManager(nc);
    await expect(jsm.streams.purge(`KV_${buckets.dataKeys}`)).rejects.toThrow(permissionViolation);
    await expect(jsm.streams.delete(`KV_${buckets.dataKeys}`)).rejects.toThrow(permissionViolation);

    await expect(jetstream(nc).publish(subjects.recordingReady('demo'), new Uint8Array([1]))).rejects.toThrow(permissionViolation);
    await recordingIsIntact();
  });

  it("only crm-sync writes tenants' API keys; signaling and routing read them, the SFU and the recorder not at all", async () => {
    const key = 'demo.ak_0123456789abcdef';
    await (await openBucket(as['crm-sync']!, buckets.apiKeys)).put(key, '{"written":"by crm-sync"}');
    for (const identity of ['signaling', 'routing'] as const) {
      const keys = await openBucket(as[identity]!, buckets.apiKeys);
      expect((await keys.get(key))?.string(), identity).toBe('{"written":"by crm-sync"}');
      await expect(keys.put(key, '{"forged":true}'), identity).rejects.toThrow(permissionViolation);
      await expect(keys.delete(key), identity).rejects.toThrow(permissionViolation);
    }
    for (const identity of ['sfu', 'recorder'] as const) {
      await expect(openBucket(as[identity]!, buckets.apiKeys), identity).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
      const keys = await new Kvm(as[identity]!).open(buckets.apiKeys, { allow_direct: true });
      await expect(keys.get(key), identity).rejects.toThrow(permissionViolation);
    }
    await (await openBucket(as['crm-sync']!, buckets.apiKeys)).purge(key);
  });

  it('the SFU cannot write a participant record or announce an ended session', async () => {
    const nc = as.sfu!;
    const participants = await new Kvm(nc).open(buckets.participants, { allow_direct: true });
    // The grants of a participant (trusted on resume) stay as signaling wrote them.
    await expect(participants.put('demo.room-1.PA_1', new Uint8Array([9]))).rejects.toThrow(permissionViolation);
    await expect(participants.put('demo.room-1.PA_forged', new Uint8Array([9]))).rejects.toThrow(permissionViolation);
    await expect(jetstream(nc).publish(subjects.sessionEnded('demo'), new Uint8Array([1]))).rejects.toThrow(permissionViolation);
    // Room events, yes (rooms closing on this node); the chat, no.
    await refusedAsync(nc, subjects.chat('demo', 'room-1'), () => nc.publish(subjects.chat('demo', 'room-1'), 'forged'));
    expect(Array.from((await (await openBucket(as.admin!, buckets.participants)).get('demo.room-1.PA_1'))!.value)).toEqual([1, 2, 3]);
  });

  it('the recorder cannot write the SFU registry, and only an SFU can', async () => {
    const forged = new Uint8Array([1]);
    await expect((await new Kvm(as.recorder!).open(buckets.sfuNodes, { allow_direct: true })).put('sfu-forged', forged)).rejects.toThrow(permissionViolation);
    await expect((await new Kvm(as.signaling!).open(buckets.sfuNodes, { allow_direct: true })).put('sfu-forged', forged)).rejects.toThrow(permissionViolation);
    await expect((await new Kvm(as['crm-sync']!).open(buckets.sfuNodes, { allow_direct: true })).put('sfu-forged', forged)).rejects.toThrow(permissionViolation);
    await (await openBucket(as.sfu!, buckets.sfuNodes)).put('sfu-test-node', forged);
  });

  it('each producer writes its own artifacts, which crm-sync reads, however large', async () => {
    const large = Buffer.alloc(24 * 1024 * 1024, 7);
    await (await ArtifactStore.open(as.recorder!, keyring, 'recordings')).put('demo', 'AR_large', Readable.from([large]), 'video/webm');
    await (await ArtifactStore.open(as.signaling!, keyring, 'conversations')).put('demo', 'AT_photo', Readable.from([Buffer.from('photo')]), 'image/png');
    const crmSync = await ArtifactStore.open(as['crm-sync']!, keyring);
    expect((await crmSync.get('demo', 'AR_large')).data.equals(large)).toBe(true);
    expect((await crmSync.get('demo', 'AT_photo')).data.toString()).toBe('photo');
    // Neither producer reaches the other's space.
    await expect(ArtifactStore.open(as.recorder!, keyring, 'conversations')).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    await expect(ArtifactStore.open(as.signaling!, keyring, 'recordings')).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
    await crmSync.delete('demo', 'AR_large');
    await crmSync.delete('demo', 'AT_photo');
  }, 60_000);

  it('only crm-sync deletes an artifact waiting for delivery', async () => {
    const name = `${recording.tenant}.${recording.artifactId}`;
    for (const identity of ['signaling', 'sfu', 'routing'] as const) {
      await expect(ArtifactStore.open(as[identity]!, keyring, 'recordings'), identity).rejects.toMatchObject({ code: ErrorCode.PERMISSION_DENIED });
      const objects = await new Objm(as[identity]!).open(buckets.artifacts, false);
      await expect(objects.delete(name), identity).rejects.toThrow(permissionViolation);
      await expect(
        jetstreamManager(as[identity]!).then((jsm) => jsm.streams.purge(`OBJ_${buckets.artifacts}`)),
        identity,
      ).rejects.toThrow(permissionViolation);
    }
    // The recorder writes recordings but cannot purge their store.
    await expect(jetstreamManager(as.recorder!).then((jsm) => jsm.streams.purge(`OBJ_${buckets.artifacts}`))).rejects.toThrow(permissionViolation);
    await recordingIsIntact();

    const crmSync = await ArtifactStore.open(as['crm-sync']!, keyring);
    await crmSync.delete(recording.tenant, recording.artifactId);
    await expect(crmSync.get(recording.tenant, recording.artifactId)).rejects.toMatchObject({ code: ErrorCode.NOT_FOUND });
    expect(await (await new Objm(as.admin!).open(buckets.artifacts)).info(name)).toMatchObject({ deleted: true });
  });

  it('no service can create, change, delete or purge a stream, bucket or object store but where its job needs it', async () => {
    const purges: Record<string, string[]> = {};
    for (const identity of services) {
      const jsm = await jetstreamManager(as[identity]!, { checkAPI: false });
      const allowed = permissionsOf(identity).publish.allow;
      purges[identity] = catalog.map(streamNameOf).filter((name) => allowed.includes(`$JS.API.STREAM.PURGE.${name}`));
      for (const entry of catalog) {
        const name = streamNameOf(entry);
        await expect(jsm.streams.delete(name), `${identity} deletes ${name}`).rejects.toThrow(permissionViolation);
        await expect(jsm.streams.update(name, { max_bytes: 1 }), `${identity} changes ${name}`).rejects.toThrow(permissionViolation);
        if (!purges[identity]!.includes(name)) await expect(jsm.streams.purge(name), `${identity} purges ${name}`).rejects.toThrow(permissionViolation);
      }
      await expect(jsm.streams.add({ name: 'GATEWAY_ROGUE', subjects: ['rogue.>'] }), `${identity} creates a stream`).rejects.toThrow(permissionViolation);
    }
    // The purges there are: the chat of an ended conversation, a participant's record when they
    // leave and a room's index with its last participant or Smart Action (no delete marker
    // kept), a losing upload's copy, a finished recording's segments, delivered artifacts.
    expect(purges).toEqual({
      signaling: ['GATEWAY_CHAT', `KV_${buckets.participants}`, `KV_${buckets.smartActions}`, `OBJ_${buckets.conversationArtifacts}`],
      sfu: [],
      recorder: [`OBJ_${buckets.recordingSegments}`],
      'crm-sync': [`OBJ_${buckets.artifacts}`, `OBJ_${buckets.conversationArtifacts}`],
      routing: [],
      // The residue sweep deletes orphaned objects of every store, and delete markers where calls,
      // deliveries and erasures delete: never in the node registries or the connectors (docs/security.md).
      residue: [
        `KV_${buckets.roomPlacement}`,
        `KV_${buckets.participants}`,
        `KV_${buckets.roomSessions}`,
        `KV_${buckets.recordings}`,
        `KV_${buckets.roomRecordings}`,
        `KV_${buckets.chatKeys}`,
        `KV_${buckets.smartActions}`,
        `KV_${buckets.webauthnChallenges}`,
        `KV_${buckets.tokenSessions}`,
        `KV_${buckets.uploadLeases}`,
        `KV_${buckets.deviceKeys}`,
        `KV_${buckets.crmContacts}`,
        `KV_${buckets.crmConfirmations}`,
        `KV_${buckets.dataKeys}`,
        `OBJ_${buckets.artifacts}`,
        `OBJ_${buckets.conversationArtifacts}`,
        `OBJ_${buckets.recordingSegments}`,
      ],
    });
    // Nothing changed meanwhile.
    const jsm = await jetstreamManager(as.admin!);
    for (const entry of catalog) expect((await jsm.streams.info(streamNameOf(entry))).config.max_bytes, streamNameOf(entry)).toBeGreaterThan(1);
  });

  it("crm-sync's permissions name the durable consumers its code holds", () => {
    expect(crmSyncDurables.map(({ stream, durable }) => ({ stream: stream.name, durable }))).toEqual(deliveryConsumers.map(({ stream, durable }) => ({ stream, durable })));
  });

  it("a service cannot read another's replies", async () => {
    const eavesdropper = as.signaling!;
    const crmInbox = `${inboxPrefixOf('crm-sync')}.>`;
    let overheard = 0;
    await refusedAsync(eavesdropper, crmInbox, () => {
      // The callback hears of the refusal (an error), and must hear nothing else.
      eavesdropper.subscribe(crmInbox, {
        callback: (error) => {
          if (!error) overheard++;
        },
      });
    });
    // crm-sync's replies (here, answers of the JetStream API) go to its inbox: nobody else gets them.
    await (await jetstreamManager(as['crm-sync']!)).streams.info(streamNameOf(catalog[0]!));
    as.admin!.publish(`${inboxPrefixOf('crm-sync')}.probe`, 'reply');
    await as.admin!.flush();
    // The server queued anything it routes to the eavesdropper while handling those messages,
    // before the answer to this ping: once it is back, whatever was overheard has been counted.
    await eavesdropper.flush();
    expect(overheard).toBe(0);
    for (const identity of services) expect(permissionsOf(identity).subscribe.allow.filter((s) => s.startsWith('_INBOX'))).toEqual([`${inboxPrefixOf(identity)}.>`]);
  });
});
