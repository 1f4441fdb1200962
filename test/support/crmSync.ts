import { createCipheriv, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ArtifactStore, DEMO_TENANT, DEMO_TENANT_KEK, StaticKeyring, ensureStream, streams, subjects, type Tenant } from '@gateway/common';
import { NatsServer, startCrmSyncProcess } from '@gateway/testing';
import { RecordingReady, TranscriptReady, type ContactReference } from '@gateway/proto/gateway/events/v1/events';
import { RecordingState } from '@gateway/proto/gateway/recorder/v1/recorder';
import { twoTenantEnv } from './tokens.js';

type Credentials = Pick<Tenant, 'apiKey' | 'apiSecret'>;

/** HTTP Basic with a tenant's apiKey:apiSecret, as customers call the admin API. */
export const basicAuth = (tenant: Credentials) => `Basic ${Buffer.from(`${tenant.apiKey}:${tenant.apiSecret}`).toString('base64')}`;

/** The crm-sync admin API at `baseUrl`, as the demo tenant unless `as` names another. */
export function adminApi(baseUrl: string) {
  return (path: string, init: RequestInit & { as?: Credentials } = {}) =>
    fetch(`${baseUrl}${path}`, { ...init, headers: { authorization: basicAuth(init.as ?? DEMO_TENANT), 'content-type': 'application/json', ...init.headers } });
}

/**
 * Stores the files as artifacts and announces them as one conversation's transcript, as
 * signaling does when a room ends. Returns the artifact ids (`<conversationId>-<n>`).
 */
export async function publishTranscript(
  nc: NatsConnection,
  store: ArtifactStore,
  options: { conversationId: string; files: Array<{ contentType: string; bytes: Buffer }>; tenant?: string; contacts?: ContactReference[] },
): Promise<string[]> {
  const tenant = options.tenant ?? 'demo';
  const ids = options.files.map((_, i) => `${options.conversationId}-${i}`);
  for (const [i, file] of options.files.entries()) await store.put(tenant, ids[i]!, Readable.from([file.bytes]), file.contentType);
  const event = TranscriptReady.encode({
    tenant,
    room: 'r-1',
    conversationId: options.conversationId,
    artifacts: ids.map((artifactId, i) => ({
      artifactId,
      kind: 'transcript',
      contentType: options.files[i]!.contentType,
      participantId: '',
      sizeBytes: options.files[i]!.bytes.length,
      durationMs: 0,
      part: 0,
    })),
    messageCount: 1,
    startedAtMs: Date.now() - 60_000,
    endedAtMs: Date.now(),
    contacts: options.contacts ?? [{ participantId: 'PA_1', role: 'end_user', externalId: 'ext-1', crmContactId: '' }],
    smartActions: [],
  }).finish();
  await ensureStream(nc, streams.transcripts);
  await jetstream(nc).publish(subjects.transcriptReady(tenant), event);
  return ids;
}

/**
 * nats-server and a crm-sync process with fast retries (both tenants configured), and a client
 * holding the demo tenant's artifact store: what every crm-sync integration test starts from.
 */
export async function startCrmSyncStack(env: Record<string, string> = {}) {
  const nats = await NatsServer.start();
  const crm = await startCrmSyncProcess({
    natsUrl: nats.url,
    env: { ...twoTenantEnv, CRM_SYNC_RETRY_BASE_SECONDS: '0.2', CRM_SYNC_RETRY_MAX_SECONDS: '1', CRM_SYNC_CONNECTOR_TEST_SECONDS: '0.5', ...env },
  });
  const nc = await nats.connect();
  const artifacts = await ArtifactStore.open(nc, new StaticKeyring({ demo: DEMO_TENANT_KEK }));
  return {
    nats,
    crm,
    nc,
    artifacts,
    admin: adminApi(crm.url),
    async stop() {
      await nc.close();
      await crm.stop();
      await nats.stop();
    },
  };
}
export type CrmSyncStack = Awaited<ReturnType<typeof startCrmSyncStack>>;

/**
 * `size` pseudo-random bytes from a seed (AES-CTR over zeros: fast, and the same every time),
 * generated as they are read, never held whole. `sha256()` is known once the stream has ended.
 */
export function pseudoRandomBytes(size: number, seed: number): { stream: Readable; sha256(): string } {
  const key = createHash('sha256').update(`seed:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const hash = createHash('sha256');
  const block = Buffer.alloc(1024 * 1024);
  let left = size;
  let digest: string | undefined;
  const stream = Readable.from(
    (function* () {
      while (left > 0) {
        const chunk = cipher.update(left >= block.length ? block : block.subarray(0, left));
        left -= chunk.length;
        hash.update(chunk);
        yield chunk;
      }
      digest = hash.digest('hex');
    })(),
    { objectMode: false, highWaterMark: 1 },
  );
  return {
    stream,
    sha256: () => {
      if (!digest) throw new Error('the stream has not ended');
      return digest;
    },
  };
}

/** A `recording.ready` event of stored artifacts, as a recorder publishes it. */
export function recordingReadyEvent(options: {
  recordingId: string;
  tenant?: string;
  externalId?: string;
  artifacts: Array<{ artifactId: string; kind: string; contentType: string; sizeBytes: number }>;
}): Uint8Array {
  return RecordingReady.encode(
    RecordingReady.fromPartial({
      recording: {
        recordingId: options.recordingId,
        tenant: options.tenant ?? 'demo',
        room: 'r-rec',
        state: RecordingState.RECORDING_STATE_COMPLETE,
        startedAtMs: Date.now() - 60_000,
        endedAtMs: Date.now(),
        artifacts: options.artifacts.map((a) => ({ ...a, participantId: 'PA_1', durationMs: 60_000, part: 0 })),
      },
      contacts: [{ participantId: 'PA_1', role: 'end_user', externalId: options.externalId ?? 'ext-rec', crmContactId: '' }],
    }),
  ).finish();
}

/** Announces a recording whose artifacts are already stored, as a recorder does. */
export async function announceRecording(nc: NatsConnection, options: Parameters<typeof recordingReadyEvent>[0]): Promise<void> {
  await ensureStream(nc, streams.recordings);
  await jetstream(nc).publish(subjects.recordingReady(options.tenant ?? 'demo'), recordingReadyEvent(options));
}

/** Resident memory of a process (Linux): now, and its peak since the last reset. */
export const residentMemory = {
  bytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${field}:`));
    return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) * 1024;
  },
  peak(pid: number): number {
    return residentMemory.bytes(pid, 'VmHWM');
  },
  /** Starts the peak again from the current resident size ("5" to clear_refs, Linux 4.0 on). */
  resetPeak(pid: number): void {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  },
};
