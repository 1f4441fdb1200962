import { describe, expect, it } from 'vitest';
import { TenantSlots, type TenantSlotLimits } from './TenantSlots.js';

const slots = (limits: Partial<TenantSlotLimits> = {}) => new TenantSlots<string>({ concurrency: 4, tenantConcurrency: 2, tenantWaitingLimit: 2, waitingLimit: 4, ...limits });

const names = (started: Array<{ item: string }>) => started.map((s) => s.item);

describe('TenantSlots', () => {
  it('lets a hanging tenant hold only its own slots: the others start as they come', () => {
    const s = slots();
    // Tenant a's destination hangs: none of its items ever finishes.
    expect(['a1', 'a2', 'a3', 'a4', 'a5'].map((item) => s.offer('a', item))).toEqual(['run', 'run', 'wait', 'wait', 'full']);
    expect(s.offer('b', 'b1')).toBe('run');
    expect(s.offer('b', 'b2')).toBe('run');
    expect(s.runningCount).toBe(4);
    // A freed slot of b goes to b's next, not to a, which is at its own limit.
    expect(s.offer('b', 'b3')).toBe('wait');
    expect(names(s.release('b'))).toEqual(['b3']);
    expect(s.runningCount).toBe(4);
    expect(s.waitingCount).toBe(2);
  });

  it('gives freed slots to the waiting tenants in turn, each first in, first out', () => {
    const s = slots({ concurrency: 2, tenantWaitingLimit: 10, waitingLimit: 10 });
    expect(s.offer('x', 'x1')).toBe('run');
    expect(s.offer('x', 'x2')).toBe('run');
    for (const item of ['a1', 'a2', 'a3']) expect(s.offer('a', item)).toBe('wait');
    for (const item of ['b1', 'b2']) expect(s.offer('b', item)).toBe('wait');
    expect(s.offer('c', 'c1')).toBe('wait');

    const order = [...s.release('x'), ...s.release('x')];
    expect(names(order)).toEqual(['a1', 'b1']);
    expect(order.map((o) => o.tenant)).toEqual(['a', 'b']);
    // Served tenants go to the back of the line: c is next, then a and b again.
    expect(names(s.release('a'))).toEqual(['c1']);
    expect(names(s.release('b'))).toEqual(['a2']);
    expect(names(s.release('c'))).toEqual(['b2']);
    expect(names(s.release('a'))).toEqual(['a3']);
    expect(s.waitingCount).toBe(0);
  });

  it('starts several waiting tenants when one release frees the way for them', () => {
    const s = slots({ concurrency: 3, tenantConcurrency: 1, tenantWaitingLimit: 5, waitingLimit: 5 });
    expect(s.offer('a', 'a1')).toBe('run');
    expect(s.offer('a', 'a2')).toBe('wait');
    expect(s.offer('a', 'a3')).toBe('wait');
    expect(s.offer('b', 'b1')).toBe('run');
    expect(s.offer('b', 'b2')).toBe('wait');
    // A slot of b is free, but a is still at its own limit: only b's next starts.
    expect(names(s.release('b'))).toEqual(['b2']);
    expect(names(s.release('a'))).toEqual(['a2']);
    expect(s.runningCount).toBe(2);
    expect(s.waitingCount).toBe(1);
  });

  it('bounds the queue per tenant and in all, and makes room again as items start', () => {
    const s = slots({ concurrency: 1, tenantConcurrency: 1, tenantWaitingLimit: 2, waitingLimit: 3 });
    expect(s.offer('a', 'a1')).toBe('run');
    expect(s.offer('a', 'a2')).toBe('wait');
    expect(s.offer('a', 'a3')).toBe('wait');
    // a's own queue is full; b still has room in all.
    expect(s.offer('a', 'a4')).toBe('full');
    expect(s.offer('b', 'b1')).toBe('wait');
    // The queue is full in all, though b's own has room.
    expect(s.offer('b', 'b2')).toBe('full');
    expect(s.offer('c', 'c1')).toBe('full');
    expect(s.waitingCount).toBe(3);

    expect(names(s.release('a'))).toEqual(['a2']);
    expect(s.offer('c', 'c1')).toBe('wait');
    expect(s.waitingCount).toBe(3);
  });

  it("holds a busy tenant's whole backlog within its bound and drains it, while another tenant's item takes the next free slot", () => {
    // As crm-sync runs it: a tenant's backlog held up to a bound far above its slots.
    const s = slots({ concurrency: 2, tenantConcurrency: 2, tenantWaitingLimit: 100, waitingLimit: 200 });
    const backlog = Array.from({ length: 102 }, (_, i) => `a${i}`);
    // Two run, a hundred wait: nothing is left to hand back.
    expect(backlog.map((item) => s.offer('a', item)).filter((admission) => admission === 'full')).toEqual([]);
    expect(s.waitingCount).toBe(100);
    // Another tenant's item comes while a's backlog waits: it is served at the next free slot.
    expect(s.offer('b', 'b1')).toBe('wait');
    expect(names(s.release('a'))).toEqual(['a2']);
    expect(names(s.release('a'))).toEqual(['b1']);
    // Then a's backlog drains in order, one freed slot after another.
    const drained = ['a2', ...names(s.release('b'))];
    while (s.waitingCount > 0) drained.push(...names(s.release('a')));
    expect(drained).toEqual(backlog.slice(2));
    expect(s.runningCount).toBe(2);
    expect(s.waitingCount).toBe(0);
  });

  it('hands back every waiting item on drain, and no slot goes to them afterwards', () => {
    const s = slots({ concurrency: 1 });
    expect(s.offer('a', 'a1')).toBe('run');
    expect(s.offer('a', 'a2')).toBe('wait');
    expect(s.offer('b', 'b1')).toBe('wait');
    expect(s.drain().sort()).toEqual(['a2', 'b1']);
    expect(s.waitingCount).toBe(0);
    expect(s.release('a')).toEqual([]);
    expect(s.runningCount).toBe(0);
  });
});
