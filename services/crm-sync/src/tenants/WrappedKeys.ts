import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { ChatKeyRecord, RoomSessionRecord, SessionEnded } from '@gateway/proto/gateway/events/v1/events';
import {
  isLiveEntry,
  ErrorCode,
  GatewayError,
  buckets,
  chatKeyRecordSchema,
  decodeChecked,
  listEntries,
  openBucket,
  readSubject,
  roomSessionRecordSchema,
  streams,
  subjects,
  type Logger,
  type ManagedKeyring,
  type NatsConnection,
  type WrappedKey,
} from '@gateway/common';
import { sealedValueSchema, sessionEndedSchema } from '../events.js';

/**
 * Where a tenant's wrapped data keys live, and how each kind of record is re-wrapped in place.
 * Every record is read back through its schema (it came from NATS), its wrapped keys that are not
 * under the tenant's current KEK re-wrapped (KMS: ReEncrypt, the data key never leaves KMS), and
 * written back only if it did not change meanwhile (compare-and-set on the KV revision): a
 * service that rewrote it at once wrote it under the current KEK already, or is read again.
 *
 * Records in KV are re-wrapped; `session.ended` events (participants sealed in the event) cannot
 * be changed in a stream, so they are counted instead: their old KEK stays readable until they
 * are delivered.
 */

const wrappedKeySchema = z.object({
  kekId: z.string().min(1).max(256),
  value: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/),
});
/** Artifact data-key records: the wrapped key, and what the reader needs (kept as it is). */
const dataKeyRecordSchema = z.looseObject({ wrapped: wrappedKeySchema });
/** Connector records: the sealed secrets' wrapped key (the rest kept as it is). */
const connectorRecordSchema = z.looseObject({ secrets: z.looseObject({ wrapped: wrappedKeySchema }) });
/** API key records: the sealed secrets' wrapped key (none once revoked). */
const apiKeyRecordSchema = z.looseObject({ secrets: z.looseObject({ wrapped: wrappedKeySchema }).optional() });

interface KeySite {
  /** The name counts are reported under. */
  name: string;
  bucket: string;
  /** The record's wrapped keys (checked), and the record with them replaced. */
  read(value: Uint8Array): { wrapped: WrappedKey[]; replace(rewrapped: WrappedKey[]): Uint8Array };
}

const decoder = new TextDecoder();
const json = (value: Uint8Array): unknown => {
  try {
    return JSON.parse(decoder.decode(value));
  } catch (error) {
    throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the record is not JSON', { cause: error });
  }
};
const checked = <T>(schema: z.ZodType<T>, value: unknown, what: string): T => {
  const result = schema.safeParse(value);
  if (!result.success) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, `${what} fails its schema`);
  return result.data;
};
const encoded = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** A sealed value as JSON text (room sessions' participants): its wrapped key, and the text with it replaced. */
function sealedText(text: string): { wrapped: WrappedKey[]; replace(rewrapped: WrappedKey[]): string } {
  if (!text) return { wrapped: [], replace: () => text };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the sealed value is not JSON', { cause: error });
  }
  const sealed = checked(sealedValueSchema, parsed, 'a sealed value');
  return { wrapped: [sealed.wrapped], replace: ([wrapped]) => JSON.stringify({ ...sealed, wrapped }) };
}

export const keySites: readonly KeySite[] = [
  {
    name: buckets.dataKeys,
    bucket: buckets.dataKeys,
    read(value) {
      const record = checked(dataKeyRecordSchema, json(value), 'a data-key record');
      return { wrapped: [record.wrapped], replace: ([wrapped]) => encoded({ ...record, wrapped }) };
    },
  },
  {
    name: buckets.chatKeys,
    bucket: buckets.chatKeys,
    read(value) {
      const record = decodeChecked(ChatKeyRecord, value, chatKeyRecordSchema, 'a chat key record');
      return {
        wrapped: [{ kekId: record.kekId, value: record.wrappedKey }],
        replace: ([wrapped]) => ChatKeyRecord.encode({ ...record, kekId: wrapped!.kekId, wrappedKey: wrapped!.value }).finish(),
      };
    },
  },
  {
    name: buckets.connectors,
    bucket: buckets.connectors,
    read(value) {
      const record = checked(connectorRecordSchema, json(value), 'a connector record');
      return { wrapped: [record.secrets.wrapped], replace: ([wrapped]) => encoded({ ...record, secrets: { ...record.secrets, wrapped } }) };
    },
  },
  {
    name: buckets.apiKeys,
    bucket: buckets.apiKeys,
    read(value) {
      const record = checked(apiKeyRecordSchema, json(value), 'an API key record');
      const sealed = record.secrets;
      return { wrapped: sealed ? [sealed.wrapped] : [], replace: ([wrapped]) => encoded(sealed ? { ...record, secrets: { ...sealed, wrapped } } : record) };
    },
  },
  {
    name: buckets.roomSessions,
    bucket: buckets.roomSessions,
    read(value) {
      const record = decodeChecked(RoomSessionRecord, value, roomSessionRecordSchema, 'a room session record');
      const sealed = sealedText(record.sealedParticipants);
      return { wrapped: sealed.wrapped, replace: (rewrapped) => RoomSessionRecord.encode({ ...record, sealedParticipants: sealed.replace(rewrapped) }).finish() };
    },
  },
];

export interface RewrapPass {
  /** Records re-wrapped, by bucket. */
  rewrapped: Record<string, number>;
  /** Records that failed their checks (left as they are, logged). */
  unreadable: number;
  /** The KEKs records were found under, other than the current one. */
  oldKekIds: Set<string>;
}

const ATTEMPTS = 5;

/** Re-wraps every wrapped key of the tenant in KV that is not under `current`. */
export async function rewrapTenant(nc: NatsConnection, keyring: ManagedKeyring, tenant: string, current: string, log: Logger): Promise<RewrapPass> {
  const pass: RewrapPass = { rewrapped: {}, unreadable: 0, oldKekIds: new Set() };
  for (const site of keySites) {
    const kv = await openBucket(nc, site.bucket);
    let count = 0;
    for (const { key } of await listEntries(kv, `${tenant}.>`)) {
      const outcome = await rewrapRecord(kv, site, keyring, tenant, key, current, pass.oldKekIds);
      if (outcome === 'rewrapped') count++;
      if (outcome === 'unreadable') {
        pass.unreadable++;
        log.warn({ bucket: site.bucket, tenant }, 'a record with a wrapped key is unreadable; left as it is');
      }
    }
    pass.rewrapped[site.name] = count;
  }
  return pass;
}

async function rewrapRecord(
  kv: KV,
  site: KeySite,
  keyring: ManagedKeyring,
  tenant: string,
  key: string,
  current: string,
  oldKekIds: Set<string>,
): Promise<'rewrapped' | 'current' | 'gone' | 'unreadable'> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const entry = await kv.get(key);
    if (!isLiveEntry(entry)) return 'gone';
    let record: ReturnType<KeySite['read']>;
    try {
      record = site.read(entry.value);
    } catch (error) {
      if (GatewayError.from(error).code === ErrorCode.MALFORMED_MESSAGE) return 'unreadable';
      throw error;
    }
    if (record.wrapped.every((w) => w.kekId === current)) return 'current';
    const rewrapped: WrappedKey[] = [];
    for (const wrapped of record.wrapped) {
      if (wrapped.kekId === current) rewrapped.push(wrapped);
      else {
        rewrapped.push(await keyring.rewrap(tenant, wrapped));
        oldKekIds.add(wrapped.kekId);
      }
    }
    try {
      await kv.update(key, record.replace(rewrapped), entry.revision);
      return 'rewrapped';
    } catch {
      // Changed (or deleted) meanwhile: read it again.
    }
  }
  throw new GatewayError(ErrorCode.UNAVAILABLE, `a record of ${site.bucket} kept changing while it was re-wrapped`);
}

/** The tenant's `session.ended` events waiting for delivery whose participants are sealed under another KEK than `current`. */
export async function sealedEventsNotUnder(nc: NatsConnection, jsm: JetStreamManager, tenant: string, current: string): Promise<{ count: number; kekIds: Set<string> }> {
  const found = { count: 0, kekIds: new Set<string>() };
  for await (const message of readSubject(jetstream(nc), jsm, streams.sessions.name, subjects.sessionEnded(tenant))) {
    let kekId: string;
    try {
      const event = decodeChecked(SessionEnded, message.data, sessionEndedSchema, 'session.ended');
      kekId = sealedText(event.sealedParticipants).wrapped[0]?.kekId ?? current;
    } catch {
      // Malformed: crm-sync terminates it; nothing it holds can be opened anyway.
      continue;
    }
    if (kekId !== current) {
      found.count++;
      found.kekIds.add(kekId);
    }
  }
  return found;
}

/** Every KEK the tenant's records and pending events are wrapped under (what offboarding destroys). */
export async function kekIdsInUse(nc: NatsConnection, jsm: JetStreamManager, tenant: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const site of keySites) {
    const kv = await openBucket(nc, site.bucket);
    for (const { value } of await listEntries(kv, `${tenant}.>`)) {
      try {
        for (const wrapped of site.read(value).wrapped) ids.add(wrapped.kekId);
      } catch {
        // Unreadable: it names no key we could trust.
      }
    }
  }
  for (const kekId of (await sealedEventsNotUnder(nc, jsm, tenant, '')).kekIds) ids.add(kekId);
  return ids;
}
