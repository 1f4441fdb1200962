export interface TenantSlotLimits {
  /** Running at once, all tenants together. */
  concurrency: number;
  /** Running at once for one tenant. */
  tenantConcurrency: number;
  /** Waiting for a slot at most, for one tenant. */
  tenantWaitingLimit: number;
  /** Waiting for a slot at most, all tenants together. */
  waitingLimit: number;
}

/** What became of an offered item: it has a slot, it waits in the queue, or there is no room for it. */
export type Admission = 'run' | 'wait' | 'full';

/** An item given a slot as another freed one, with its tenant. */
export interface Started<T> {
  tenant: string;
  item: T;
}

/**
 * Fair scheduling of work by tenant. A tenant's destination may hang for as long as its timeouts
 * allow, so a tenant has at most `tenantConcurrency` items running, and only running items hold a
 * slot of `concurrency`. An item whose tenant (or everything) is at its limit waits for a slot in
 * a short queue, bounded per tenant and in all; beyond that queue it is refused, and the caller
 * hands it back for later, so it neither holds a slot nor waits past what the caller can keep
 * waiting. A tenant whose work hangs thus holds its own slots and nothing else: the others' items
 * are taken, and started, as they come. Slots that free up go to the waiting tenants in turn, and
 * a tenant's own items first in, first out.
 *
 * Nothing here runs anything or keeps time: `offer` and `release` say what to start, and the
 * caller starts it (and calls `release` once it is done).
 */
export class TenantSlots<T> {
  private readonly running = new Map<string, number>();
  private runningTotal = 0;
  /** Items waiting for a slot, by tenant; the map's order is the order tenants are served in. */
  private readonly waiting = new Map<string, T[]>();
  private waitingTotal = 0;

  constructor(private readonly limits: TenantSlotLimits) {}

  /** Items running, all tenants together. */
  get runningCount(): number {
    return this.runningTotal;
  }

  /** Items waiting for a slot, all tenants together. */
  get waitingCount(): number {
    return this.waitingTotal;
  }

  /**
   * Takes a slot for the item ('run': the caller starts it now), queues it ('wait': it comes back
   * from `release` when it has a slot), or leaves it to the caller ('full').
   */
  offer(tenant: string, item: T): Admission {
    if (this.hasSlot(tenant)) {
      this.take(tenant);
      return 'run';
    }
    const queue = this.waiting.get(tenant) ?? [];
    if (queue.length < this.limits.tenantWaitingLimit && this.waitingTotal < this.limits.waitingLimit) {
      queue.push(item);
      this.waiting.set(tenant, queue);
      this.waitingTotal++;
      return 'wait';
    }
    return 'full';
  }

  /**
   * Frees a slot of the tenant's, and gives free slots to waiting items, one tenant after another.
   * Returns the items that now hold a slot, in the order they should start.
   */
  release(tenant: string): Array<Started<T>> {
    this.runningTotal--;
    const left = (this.running.get(tenant) ?? 1) - 1;
    if (left > 0) this.running.set(tenant, left);
    else this.running.delete(tenant);
    return this.startWaiting();
  }

  /** Empties the queue (the caller is stopping): the items that were waiting, none of them holding a slot. */
  drain(): T[] {
    const items = [...this.waiting.values()].flat();
    this.waiting.clear();
    this.waitingTotal = 0;
    return items;
  }

  private hasSlot(tenant: string): boolean {
    return this.runningTotal < this.limits.concurrency && (this.running.get(tenant) ?? 0) < this.limits.tenantConcurrency;
  }

  private take(tenant: string): void {
    this.runningTotal++;
    this.running.set(tenant, (this.running.get(tenant) ?? 0) + 1);
  }

  private startWaiting(): Array<Started<T>> {
    const started: Array<Started<T>> = [];
    let more = true;
    while (more && this.runningTotal < this.limits.concurrency) {
      more = false;
      for (const tenant of [...this.waiting.keys()]) {
        if (!this.hasSlot(tenant)) continue;
        const queue = this.waiting.get(tenant)!;
        const item = queue.shift()!;
        this.waitingTotal--;
        // Served: to the back of the line.
        this.waiting.delete(tenant);
        if (queue.length > 0) this.waiting.set(tenant, queue);
        this.take(tenant);
        started.push({ tenant, item });
        more = true;
      }
    }
    return started;
  }
}
