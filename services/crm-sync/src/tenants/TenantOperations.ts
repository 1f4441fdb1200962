import { setTimeout as sleep } from 'node:timers/promises';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { TenantAudit } from '@gateway/proto/gateway/events/v1/events';
import {
  assertSubjectToken,
  catalog,
  ensureStream,
  liveKeys,
  newId,
  openBucket,
  streamNameOf,
  streams,
  subjects,
  type Logger,
  type ManagedKeyring,
  type NatsConnection,
  type RetiredKey,
} from '@gateway/common';
import { kekIdsInUse, rewrapTenant, sealedEventsNotUnder } from './WrappedKeys.js';

/**
 * Operations on a whole tenant, run by an operator (the `tenants` CLI, as the NATS admin identity
 * and with the KMS administration role): rotating its key-encryption key, and offboarding it.
 * They reach every service's records (participants, room sessions, chat keys, recordings...),
 * which no service identity may write: giving crm-sync, whose HTTP port faces tenants, write
 * access to participant records (whose grants a resume trusts) to delete them once in a
 * tenant's lifetime would widen what a compromised crm-sync can forge every day.
 */

export interface TenantOperationDeps {
  nc: NatsConnection;
  keyring: ManagedKeyring;
  log: Logger;
}

/** The streams crm-sync delivers from: what a last delivery waits for. */
const deliveryStreams = [streams.recordings, streams.transcripts, streams.sessions];

export interface RotationReport {
  tenant: string;
  requestId: string;
  /** The KEK new data keys are wrapped under. */
  current: string;
  /** Records re-wrapped, by bucket (summed over the passes). */
  rewrapped: Record<string, number>;
  unreadable: number;
  /** `session.ended` events still sealed under an old KEK when the wait ended (0: all delivered). */
  pendingUnderOldKeys: number;
  /** What was done to each old KEK; empty while events still need one (run again with `resume`). */
  retired: RetiredKey[];
}

/**
 * Rotates a tenant's KEK. A new key becomes current at once (KMS: a new key behind the tenant's
 * alias, so every replica wraps under it from its next call; static: the key the configuration
 * marks current, already rolled out), then every wrapped key in KV is re-wrapped under it while
 * the services go on, both keys readable. `session.ended` events cannot be rewritten in their
 * stream: the old key stays readable until they are delivered (polled every `pollMs`, for up to
 * `waitMs`). Then each old key is retired (KMS: DisableKey). With `resume` no new key is made:
 * an interrupted rotation is finished (and any record still under an old key moved).
 */
export async function rotateTenantKeys(deps: TenantOperationDeps, tenant: string, options: { resume?: boolean; waitMs: number; pollMs?: number }): Promise<RotationReport> {
  const { nc, keyring, log } = deps;
  assertSubjectToken('tenant', tenant);
  const jsm = await ensureStream(nc, streams.sessions);
  const { current, previous } = options.resume ? { current: await keyring.currentKekId(tenant), previous: [] } : await keyring.rotate(tenant);
  log.info({ tenant, resume: options.resume === true }, 'rotating the tenant key: re-wrapping');
  const old = new Set(previous);
  const rewrapped: Record<string, number> = {};
  let unreadable = 0;
  const deadline = Date.now() + options.waitMs;
  let pending = 0;
  for (;;) {
    // Again on every pass: a replica that wrapped with the old key just before it changed is caught.
    const pass = await rewrapTenant(nc, keyring, tenant, current, log);
    for (const [bucket, count] of Object.entries(pass.rewrapped)) rewrapped[bucket] = (rewrapped[bucket] ?? 0) + count;
    unreadable += pass.unreadable;
    for (const id of pass.oldKekIds) old.add(id);
    const events = await sealedEventsNotUnder(nc, jsm, tenant, current);
    for (const id of events.kekIds) old.add(id);
    pending = events.count;
    if (pending === 0 || Date.now() >= deadline) break;
    await sleep(Math.min(options.pollMs ?? 1_000, Math.max(0, deadline - Date.now())));
  }
  old.delete(current);
  const retired = pending === 0 ? await keyring.retire(tenant, [...old]) : [];
  const requestId = await audit(nc, tenant, 'rotate_keys', { ...rewrapped, retiredKeys: retired.filter((k) => k.outcome !== 'not-the-tenants').length });
  log.info({ tenant, requestId, rewrapped, pending, retired: retired.length }, pending === 0 ? 'tenant key rotated' : 'tenant key rotated; old keys kept until pending sessions are delivered');
  return { tenant, requestId, current, rewrapped, unreadable, pendingUnderOldKeys: pending, retired };
}

export interface OffboardingReport {
  tenant: string;
  requestId: string;
  lastDelivery: { attempted: boolean; pendingBefore: number; pendingAfter: number };
  /** What was removed, by stream, bucket and object store (messages, keys, objects). */
  removed: Record<string, number>;
  /** The tenant's KEKs, destroyed last. */
  keys: RetiredKey[];
}

/**
 * Ends a tenant. `deliver: 'last'` first gives crm-sync's deliveries (running as usual, with
 * their retries) up to `waitMs` to take what is pending to the tenant's destinations; `none`
 * deletes it undelivered (a wait longer than CRM_SYNC_RETRY_MAX_SECONDS gives each pending
 * event at least one more attempt). Then every event of the tenant is purged from every stream (but the
 * alert and audit streams, kept by design: ids and counts only), every key of the tenant from
 * every bucket (connectors, contact mappings, data keys, chat keys, sessions, Smart Actions,
 * device keys...), and every object of the tenant from every object store, purge markers
 * included; the tenant's KEKs are destroyed last (KMS: ScheduleKeyDeletion), so anything missed,
 * or copied elsewhere, is crypto-shredded. Safe to run again. Take the tenant out of
 * GATEWAY_TENANTS first, so that no new session starts meanwhile.
 */
export async function offboardTenant(deps: TenantOperationDeps, tenant: string, options: { deliver: 'last' | 'none'; waitMs: number; pollMs?: number }): Promise<OffboardingReport> {
  const { nc, keyring, log } = deps;
  assertSubjectToken('tenant', tenant);
  const jsm = await ensureStream(nc, streams.audit);
  const pendingBefore = await pendingEvents(jsm, tenant);
  let pendingAfter = pendingBefore;
  if (options.deliver === 'last') {
    log.info({ tenant, pending: pendingBefore }, 'offboarding the tenant: waiting for the last deliveries');
    const deadline = Date.now() + options.waitMs;
    while (pendingAfter > 0 && Date.now() < deadline) {
      await sleep(Math.min(options.pollMs ?? 1_000, Math.max(0, deadline - Date.now())));
      pendingAfter = await pendingEvents(jsm, tenant);
    }
  }
  log.info({ tenant, pendingBefore, pendingAfter }, 'offboarding the tenant: deleting');
  // The keys are gathered before their records go: they are what is destroyed at the end.
  const kekIds = await kekIdsInUse(nc, jsm, tenant);
  const removed: Record<string, number> = {};
  for (const entry of catalog) {
    if (entry.kind === 'stream') {
      if (entry.keep) continue;
      removed[entry.name] = (await jsm.streams.purge(entry.name, { filter: `gateway.${tenant}.>` })).purged;
    } else if (entry.kind === 'kv') {
      // Counted as live keys; the purge by subject also drops their history and delete markers.
      const count = (await liveKeys(await openBucket(nc, entry.bucket), `${tenant}.>`)).length;
      await jsm.streams.purge(streamNameOf(entry), { filter: `$KV.${entry.bucket}.${tenant}.>` });
      removed[entry.bucket] = count;
    } else {
      removed[entry.bucket] = await removeObjects(nc, jsm, entry.bucket, tenant);
    }
  }
  const keys = await keyring.destroy(tenant, [...kekIds]);
  keyring.forget(tenant);
  const requestId = await audit(nc, tenant, 'offboard', { ...removed, destroyedKeys: keys.filter((k) => k.outcome !== 'not-the-tenants').length });
  log.info({ tenant, requestId, removed, keys: keys.length }, 'tenant offboarded');
  return { tenant, requestId, lastDelivery: { attempted: options.deliver === 'last', pendingBefore, pendingAfter }, removed, keys };
}

/** The tenant's events waiting for delivery, counted by subject (no read of their contents). */
async function pendingEvents(jsm: JetStreamManager, tenant: string): Promise<number> {
  let count = 0;
  for (const stream of deliveryStreams) {
    const info = await jsm.streams.info(stream.name, { subjects_filter: `gateway.${tenant}.>` });
    count += Object.values(info.state.subjects ?? {}).reduce((sum, n) => sum + n, 0);
  }
  return count;
}

/** Deletes the tenant's objects (`<tenant>.<id>`) with their chunks, and purges their meta records, deleted ones included. */
async function removeObjects(nc: NatsConnection, jsm: JetStreamManager, bucket: string, tenant: string): Promise<number> {
  const store = await new Objm(nc).open(bucket, false);
  let count = 0;
  // `list` leaves deleted objects out; their meta records still name them, so those are read from the stream.
  const info = await jsm.streams.info(`OBJ_${bucket}`, { subjects_filter: `$O.${bucket}.M.>` });
  for (const subject of Object.keys(info.state.subjects ?? {})) {
    const name = Buffer.from(subject.slice(`$O.${bucket}.M.`.length), 'base64url').toString('utf8');
    if (!name.startsWith(`${tenant}.`)) continue;
    const object = await store.info(name);
    if (object && !object.deleted) {
      await store.delete(name);
      count++;
    }
    await jsm.streams.purge(`OBJ_${bucket}`, { filter: subject });
  }
  return count;
}

async function audit(nc: NatsConnection, tenant: string, action: 'rotate_keys' | 'offboard', counts: Record<string, number>): Promise<string> {
  const requestId = newId(action === 'offboard' ? 'OFB' : 'ROT');
  const record = TenantAudit.encode({ tenant, requestId, action, atMs: Date.now(), counts }).finish();
  await jetstream(nc).publish(subjects.audit(tenant, 'tenant'), record, { msgID: requestId });
  return requestId;
}
