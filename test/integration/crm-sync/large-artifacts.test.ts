import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { type ArtifactStore, DEMO_TENANT_KEK, SEGMENT_BYTES, StaticKeyring, buckets } from '@gateway/common';
import { PostgresServer, waitFor } from '@gateway/testing';
import { MIB, S3ContractServer } from '../../contracts/s3/server.js';
import { SalesforceContractServer } from '../../contracts/salesforce/server.js';
import { ZendeskContractServer } from '../../contracts/zendesk/server.js';
import { adminApi, announceRecording, pseudoRandomBytes, residentMemory, startCrmSyncStack, type CrmSyncStack } from '../../support/crmSync.js';

const LARGE_BYTES = Number(process.env.CRM_SYNC_LARGE_ARTIFACT_MB ?? 256) * MIB;
/** What crm-sync may grow by while it delivers, whatever the artifact's size (parts in flight, buffers, the heap's slack). */
const GROWTH_LIMIT_BYTES = 192 * MIB;
const BUCKET = 'customer-recordings';
const CUSTOMER_PASSWORD = 'customer-db-password-large';
const SALESFORCE = { clientId: '3MVG9-large-consumer-key', clientSecret: 'consumer-secret-large-0451' };
const ZENDESK = { email: 'agent@acme.example', apiToken: 'zendesk-token-large' };

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * Artifacts far larger than crm-sync could hold go to every kind of destination at once
 * (PostgreSQL in chunk rows, S3 in parts, Salesforce and Zendesk as streamed bodies) while its
 * resident memory stays within a bound that does not depend on the artifact's size. An artifact
 * whose stored bytes were tampered with is delivered nowhere, and one stored in the format
 * before segments still is.
 */
describe('crm-sync streams large artifacts', () => {
  let stack: CrmSyncStack;
  let postgres: PostgresServer;
  let s3: S3ContractServer;
  let salesforce: SalesforceContractServer;
  let zendesk: ZendeskContractServer;
  let customerDb: pg.Client;

  beforeAll(async () => {
    [stack, postgres, s3, salesforce, zendesk] = await Promise.all([
      startCrmSyncStack({ LOG_LEVEL: 'warn', CRM_SYNC_ACK_WAIT_SECONDS: '30' }),
      PostgresServer.start(),
      S3ContractServer.start({ buckets: [BUCKET] }),
      SalesforceContractServer.start({ clientId: SALESFORCE.clientId, clientSecret: SALESFORCE.clientSecret }),
      ZendeskContractServer.start({ ...ZENDESK, requestsPerMinute: 100_000 }),
    ]);
    postgres.createDatabase('customer_crm', 'customer', CUSTOMER_PASSWORD);
    customerDb = new pg.Client({ host: '127.0.0.1', port: postgres.port, user: 'customer', password: CUSTOMER_PASSWORD, database: 'customer_crm' });
    await customerDb.connect();
  }, 60_000);

  afterAll(async () => {
    await customerDb?.end();
    await stack?.stop();
    await Promise.all([postgres?.stop(), s3?.close(), salesforce?.stop(), zendesk?.close()]);
  });

  const connectors = () => ({
    warehouse: { type: 'postgres', config: { host: '127.0.0.1', port: postgres.port, database: 'customer_crm', user: 'customer', ssl: 'disable' }, secrets: { password: CUSTOMER_PASSWORD } },
    bucket: { type: 's3', config: { bucket: BUCKET, region: s3.region, endpoint: s3.url }, secrets: S3ContractServer.defaultCredential },
    crm: { type: 'salesforce', config: { loginUrl: salesforce.url, authFlow: 'client_credentials', clientId: SALESFORCE.clientId }, secrets: { clientSecret: SALESFORCE.clientSecret } },
    support: { type: 'zendesk', config: { subdomainUrl: zendesk.url, email: ZENDESK.email }, secrets: { apiToken: ZENDESK.apiToken } },
  });
  const connect = async (names: Array<keyof ReturnType<typeof connectors>>) => {
    const admin = adminApi(stack.crm.url);
    for (const [name, body] of Object.entries(connectors())) {
      if (names.includes(name as keyof ReturnType<typeof connectors>)) expect((await admin(`/v1/connectors/${name}`, { method: 'PUT', body: JSON.stringify(body) })).status).toBe(200);
      else await admin(`/v1/connectors/${name}`, { method: 'DELETE' });
    }
  };

  /** What each destination holds of an artifact, as SHA-256 of the bytes put back together (undefined: nothing). */
  const received = {
    async postgres(artifactId: string): Promise<string | undefined> {
      const row = (await customerDb.query('select content, chunk_count, sha256, size_bytes from gateway_artifacts where artifact_id = $1', [artifactId]).catch(() => ({ rows: [] }))).rows[0];
      if (!row) return undefined;
      if (row.chunk_count === 0) return sha256(row.content);
      const hash = createHash('sha256');
      for (let seq = 0; seq < row.chunk_count; seq += 32) {
        const rows = await customerDb.query('select data from gateway_artifact_chunks where artifact_id = $1 and seq >= $2 and seq < $3 order by seq', [artifactId, seq, seq + 32]);
        for (const r of rows.rows) hash.update(r.data);
      }
      const digest = hash.digest('hex');
      expect(row.sha256).toBe(digest);
      return digest;
    },
    s3(recordingId: string, artifactId: string, extension: string): string | undefined {
      const object = s3.object(BUCKET, `gateway/demo/recording/${recordingId}/${artifactId}.${extension}`);
      return object && sha256(object.body);
    },
    salesforce(artifactId: string): string | undefined {
      const file = salesforce.list('ContentVersion').find((r) => String(r.Title).endsWith(artifactId));
      return file && sha256(file.VersionData as Buffer);
    },
    zendesk(recordingId: string): string | undefined {
      const [ticket] = zendesk.ticketsByExternalId(recordingId);
      if (!ticket) return undefined;
      const files = zendesk.ticketAttachments(ticket.id);
      return files.length ? sha256(Buffer.concat(files.map((f) => f.bytes))) : undefined;
    },
  };

  /** Purged once every destination has it. */
  const gone = (store: ArtifactStore, artifactId: string, timeoutMs = 60_000) =>
    waitFor(
      async () =>
        (await store.open('demo', artifactId).then(
          () => 'held',
          (e: { code?: string }) => e.code,
        )) === 'NOT_FOUND',
      timeoutMs,
      'every destination to have it and our copy purged',
    );

  it(`delivers a ${LARGE_BYTES / MIB} MiB recording to PostgreSQL, S3, Salesforce and Zendesk within a fixed memory bound`, async () => {
    await connect(['warehouse', 'bucket', 'crm', 'support']);
    const recordingId = `REC_large${Date.now()}`;
    const artifactId = `${recordingId}-voice`;
    const generated = pseudoRandomBytes(LARGE_BYTES, 7);
    await stack.artifacts.put('demo', artifactId, generated.stream, 'audio/mpeg');
    const expected = generated.sha256();

    const pid = stack.crm.pid;
    const before = residentMemory.bytes(pid);
    residentMemory.resetPeak(pid);
    await announceRecording(stack.nc, { recordingId, artifacts: [{ artifactId, kind: 'voice', contentType: 'audio/mpeg', sizeBytes: LARGE_BYTES }] });
    await gone(stack.artifacts, artifactId, 500_000);
    const growth = residentMemory.peak(pid) - before;

    expect(await received.postgres(artifactId)).toBe(expected);
    expect(received.s3(recordingId, artifactId, 'mp3')).toBe(expected);
    expect(received.salesforce(artifactId)).toBe(expected);
    expect(received.zendesk(recordingId)).toBe(expected);
    // Stored in chunk rows, with the inline column left empty; S3 in parts; Zendesk in 50 MB parts.
    expect((await customerDb.query('select octet_length(content) as inline, chunk_count, size_bytes from gateway_artifacts where artifact_id = $1', [artifactId])).rows[0]).toEqual({
      inline: 0,
      chunk_count: Math.ceil(LARGE_BYTES / MIB),
      size_bytes: String(LARGE_BYTES),
    });
    expect(s3.count('UploadPart', (r) => r.key?.includes(recordingId) === true)).toBe(Math.ceil(LARGE_BYTES / (8 * MIB)));
    expect(zendesk.ticketAttachments(zendesk.ticketsByExternalId(recordingId)[0]!.id)).toHaveLength(Math.ceil(LARGE_BYTES / 50_000_000));
    // Four reads of the whole artifact, and crm-sync grew by a bound that holds for any size.
    expect(growth, `grew by ${Math.round(growth / MIB)} MiB delivering ${LARGE_BYTES / MIB} MiB four times`).toBeLessThan(GROWTH_LIMIT_BYTES);
  }, 600_000);

  it('still delivers an artifact stored whole, before the segmented format', async () => {
    const recordingId = `REC_legacy${Date.now()}`;
    const artifactId = `${recordingId}-cam`;
    const bytes = randomBytes(3 * MIB + 17);
    // As the store wrote artifacts before: AES-256-GCM over the whole object, iv and tag in the key record.
    const name = `demo.${artifactId}`;
    const dataKey = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', dataKey, iv).setAAD(Buffer.from(name));
    const ciphertext = Buffer.concat([cipher.update(bytes), cipher.final()]);
    await (await new Objm(stack.nc).open(buckets.artifacts)).putBlob({ name, metadata: { tenant: 'demo', contentType: 'video/webm' } }, ciphertext);
    const record = {
      wrapped: await new StaticKeyring({ demo: DEMO_TENANT_KEK }).wrap('demo', dataKey),
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      contentType: 'video/webm',
      size: bytes.length,
    };
    await (await new Kvm(stack.nc).open(buckets.dataKeys)).put(`demo.recordings.${artifactId}`, JSON.stringify(record));

    await announceRecording(stack.nc, { recordingId, artifacts: [{ artifactId, kind: 'camera', contentType: 'video/webm', sizeBytes: bytes.length }] });
    await gone(stack.artifacts, artifactId);
    const expected = sha256(bytes);
    expect(await received.postgres(artifactId)).toBe(expected);
    expect(received.s3(recordingId, artifactId, 'webm')).toBe(expected);
    expect(received.salesforce(artifactId)).toBe(expected);
    expect(received.zendesk(recordingId)).toBe(expected);
  }, 120_000);

  it('delivers nothing of an artifact whose stored bytes were tampered with, to any destination, and keeps it', async () => {
    const objects = await new Objm(stack.nc).open(buckets.artifacts);
    for (const destination of ['warehouse', 'bucket', 'crm', 'support'] as const) {
      await connect([destination]);
      const recordingId = `REC_tampered${destination}${Date.now()}`;
      const artifactId = `${recordingId}-voice`;
      // Large enough for parts (S3), several segments, and a tampered one past the first part.
      const bytes = randomBytes(20 * MIB);
      await stack.artifacts.put('demo', artifactId, Readable.from([bytes]), 'audio/mpeg');
      const raw = Buffer.from((await objects.getBlob(`demo.${artifactId}`))!);
      const tampered = Math.floor((18 * MIB) / SEGMENT_BYTES);
      raw[tampered * (SEGMENT_BYTES + 16) + 99]! ^= 0x04;
      await objects.putBlob({ name: `demo.${artifactId}`, metadata: { tenant: 'demo', contentType: 'audio/mpeg' } }, raw);

      const logsBefore = stack.crm.logs.length;
      await announceRecording(stack.nc, { recordingId, artifacts: [{ artifactId, kind: 'voice', contentType: 'audio/mpeg', sizeBytes: bytes.length }] });
      // Tried and failed twice on its integrity check.
      await waitFor(() => (stack.crm.logs.slice(logsBefore).match(new RegExp(`${recordingId}.*integrity check`, 'g')) ?? []).length >= 2, 30_000, `two failed attempts to ${destination}`);
      expect(await received.postgres(artifactId)).toBeUndefined();
      expect(received.s3(recordingId, artifactId, 'mp3')).toBeUndefined();
      // A failed attempt aborts its multipart upload (no parts left behind); the next attempt may
      // already have begun one, so between attempts there is none.
      await waitFor(() => s3.pendingUploads(BUCKET).every((u) => !u.key.includes(recordingId)), 15_000, 'no multipart upload left between attempts');
      expect(received.salesforce(artifactId)).toBeUndefined();
      expect(received.zendesk(recordingId)).toBeUndefined();
      // Still held by us (it may be restored); nothing acknowledged.
      expect((await stack.artifacts.open('demo', artifactId)).size).toBe(bytes.length);
    }
  }, 300_000);

  it('exports a large pending recording as JSON streamed from the store, within the same memory bound', async () => {
    await connect([]);
    const recordingId = `REC_export${Date.now()}`;
    const artifactId = `${recordingId}-voice`;
    const generated = pseudoRandomBytes(LARGE_BYTES, 9);
    await stack.artifacts.put('demo', artifactId, generated.stream, 'audio/mpeg');
    await announceRecording(stack.nc, { recordingId, externalId: 'ext-export', artifacts: [{ artifactId, kind: 'voice', contentType: 'audio/mpeg', sizeBytes: LARGE_BYTES }] });

    const pid = stack.crm.pid;
    const before = residentMemory.bytes(pid);
    residentMemory.resetPeak(pid);
    const response = await adminApi(stack.crm.url)('/v1/data-subjects/export?externalId=ext-export');
    expect(response.status).toBe(200);
    // Read as it comes: the JSON around the base64 is kept, the base64 decoded and hashed block by block.
    const marker = '"contentBase64":"';
    const hash = createHash('sha256');
    let outside = '';
    /** Where in `outside` a marker may still start (the ones before were read). */
    let searchFrom = 0;
    let inside = false;
    let carry = '';
    let decoded = 0;
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      let text = Buffer.from(chunk).toString('latin1');
      while (text.length > 0) {
        if (!inside) {
          outside += text;
          const at = outside.indexOf(marker, searchFrom);
          if (at < 0) {
            searchFrom = Math.max(searchFrom, outside.length - marker.length);
            break;
          }
          text = outside.slice(at + marker.length);
          outside = outside.slice(0, at + marker.length);
          searchFrom = outside.length;
          inside = true;
          continue;
        }
        const end = text.indexOf('"');
        const block = carry + (end < 0 ? text : text.slice(0, end));
        const whole = end < 0 ? block.length - (block.length % 4) : block.length;
        const bytes = Buffer.from(block.slice(0, whole), 'base64');
        hash.update(bytes);
        decoded += bytes.length;
        carry = block.slice(whole);
        if (end < 0) break;
        inside = false;
        text = text.slice(end);
      }
    }
    const growth = residentMemory.peak(pid) - before;
    expect(decoded).toBe(LARGE_BYTES);
    expect(hash.digest('hex')).toBe(generated.sha256());
    // The rest is the export, well-formed, with the content taken out.
    const exported = JSON.parse(outside) as { pendingDeliveries: Array<{ deliveryId: string; artifacts: Array<{ sizeBytes: number; contentBase64: string }> }> };
    expect(exported.pendingDeliveries.map((d) => d.deliveryId)).toEqual([recordingId]);
    expect(exported.pendingDeliveries[0]!.artifacts).toEqual([expect.objectContaining({ sizeBytes: LARGE_BYTES, contentBase64: '' })]);
    expect(growth, `grew by ${Math.round(growth / MIB)} MiB exporting ${LARGE_BYTES / MIB} MiB`).toBeLessThan(GROWTH_LIMIT_BYTES);
  }, 300_000);
});
