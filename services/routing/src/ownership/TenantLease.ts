import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isLiveEntry, TypedEmitter } from '@gateway/common';

/** What a lease record says: who holds it, since when. */
const leaseSchema = z.object({ replicaId: z.string().min(1).max(128), acquiredAtMs: z.number().int().min(0) });
export type LeaseHolder = z.infer<typeof leaseSchema>;

export interface TenantLeaseOptions {
  /** How often the holder rewrites its lease; well under the bucket's age limit, which ends a lease not rewritten. */
  refreshMs: number;
  /**
   * The bucket's age limit: a refresh that fails for another reason than the lease being taken
   * (a timeout on a busy server) is tried again until this has passed since the last one that
   * worked; only then is the lease given up (default: three refreshes).
   */
  ttlMs?: number;
}

type LeaseEvents = {
  /** The lease was lost: it expired or another replica holds it now. The holder must stop deciding at once. */
  lost: [];
};

/**
 * The right to decide for one tenant (docs/routing.md: one writer per tenant), held by one
 * routing replica at a time in a KV bucket whose age limit ends a lease its holder stops
 * rewriting (a replica that died). Taking it is a `create` (only one succeeds); keeping it is an
 * `update` on the revision last written, so a holder whose lease expired and was taken finds out
 * at its next refresh (and says so: `lost`). The revision is the fencing token: records written
 * under a lease are compare-and-set on their own revisions, so a holder that lost its lease
 * without knowing yet cannot overwrite the new holder's decisions (docs/routing.md).
 */
export class TenantLease extends TypedEmitter<LeaseEvents> {
  private revision = 0;
  private acquiredAtMs = 0;
  private refreshedAtMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly kv: KV,
    readonly tenant: string,
    readonly replicaId: string,
    private readonly options: TenantLeaseOptions,
  ) {
    super();
  }

  get held(): boolean {
    return this.revision > 0;
  }

  /** Takes the lease if nobody holds it; true when this replica holds it now. */
  async acquire(): Promise<boolean> {
    if (this.held) return true;
    this.acquiredAtMs = Date.now();
    try {
      this.revision = await this.kv.create(this.tenant, this.record());
    } catch {
      return false; // Held by someone (or taken at this moment).
    }
    this.refreshedAtMs = Date.now();
    this.stopped = false;
    this.schedule();
    return true;
  }

  /** Who holds the tenant's lease now, if anyone (a record that does not read is nobody). */
  async holder(): Promise<LeaseHolder | undefined> {
    const entry = await this.kv.get(this.tenant);
    if (!isLiveEntry(entry)) return undefined;
    try {
      const parsed = leaseSchema.safeParse(JSON.parse(new TextDecoder().decode(entry.value)));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Lets the lease go (a replica stopping hands its tenants over at once). Safe to repeat. */
  async release(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const revision = this.revision;
    this.revision = 0;
    // Deleted only if still ours: a lease already taken by another is theirs.
    if (revision > 0) await this.kv.delete(this.tenant, { previousSeq: revision }).catch(() => undefined);
  }

  private schedule(delayMs = this.options.refreshMs): void {
    this.timer = setTimeout(() => void this.refresh(), delayMs);
    this.timer.unref();
  }

  private async refresh(): Promise<void> {
    if (this.stopped || !this.held) return;
    try {
      this.revision = await this.kv.update(this.tenant, this.record(), this.revision);
      this.refreshedAtMs = Date.now();
    } catch (error) {
      // Taken by another (the revision moved), or unanswered until the lease's age limit passed:
      // either way not ours to use. Anything else (a timeout) is tried again while it may still hold.
      let taken = /wrong last sequence|key exists/i.test(String((error as Error)?.message ?? error));
      if (taken) {
        // An update that timed out here may have been written there: a record that is still ours
        // (this replica, this acquisition) is kept, at its revision.
        const mine = await this.ownRevision().catch(() => undefined);
        if (mine) {
          this.revision = mine;
          this.refreshedAtMs = Date.now();
          this.schedule();
          return;
        }
        taken = true;
      }
      const ttlMs = this.options.ttlMs ?? this.options.refreshMs * 3;
      if (taken || Date.now() - this.refreshedAtMs >= ttlMs - this.options.refreshMs / 2) {
        this.revision = 0;
        this.safeEmit('lost');
        return;
      }
      this.schedule(Math.min(500, this.options.refreshMs));
      return;
    }
    this.schedule();
  }

  /** The revision of the lease record when it is still this replica's, from this acquisition. */
  private async ownRevision(): Promise<number | undefined> {
    const entry = await this.kv.get(this.tenant);
    if (!isLiveEntry(entry)) return undefined;
    const parsed = leaseSchema.safeParse(JSON.parse(new TextDecoder().decode(entry.value)));
    return parsed.success && parsed.data.replicaId === this.replicaId && parsed.data.acquiredAtMs === this.acquiredAtMs ? entry.revision : undefined;
  }

  private record(): string {
    return JSON.stringify({ replicaId: this.replicaId, acquiredAtMs: this.acquiredAtMs } satisfies LeaseHolder);
  }
}
