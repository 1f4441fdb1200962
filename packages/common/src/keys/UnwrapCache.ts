import { createHash } from 'node:crypto';
import type { WrappedKey } from './keyring.js';

/**
 * Unwrapped data keys held for a bounded time and number, so a KMS is not asked once per chat
 * message or per segment read. Entries expire `ttlMs` after they were unwrapped (each has its
 * own timer: an idle process keeps nothing past it), the oldest go first when `maxEntries` is
 * reached, and a tenant's or a KEK's entries can be dropped at once. Keys are wiped when they go;
 * callers get copies (they wipe theirs after use).
 */
export class UnwrapCache {
  private readonly entries = new Map<string, { tenant: string; kekId: string; key: Buffer; timer: NodeJS.Timeout }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {}

  private static id(tenant: string, wrapped: WrappedKey): string {
    return createHash('sha256').update(`${tenant}\0${wrapped.kekId}\0${wrapped.value}`).digest('base64');
  }

  get(tenant: string, wrapped: WrappedKey): Buffer | undefined {
    const entry = this.entries.get(UnwrapCache.id(tenant, wrapped));
    return entry ? Buffer.from(entry.key) : undefined;
  }

  set(tenant: string, wrapped: WrappedKey, key: Buffer): void {
    if (this.ttlMs <= 0 || this.maxEntries <= 0) return;
    const id = UnwrapCache.id(tenant, wrapped);
    this.drop(id);
    while (this.entries.size >= this.maxEntries) this.drop(this.entries.keys().next().value!);
    const timer = setTimeout(() => this.drop(id), this.ttlMs);
    timer.unref();
    this.entries.set(id, { tenant, kekId: wrapped.kekId, key: Buffer.from(key), timer });
  }

  get size(): number {
    return this.entries.size;
  }

  forgetTenant(tenant: string): void {
    for (const [id, entry] of this.entries) if (entry.tenant === tenant) this.drop(id);
  }

  forgetKek(kekId: string): void {
    for (const [id, entry] of this.entries) if (entry.kekId === kekId) this.drop(id);
  }

  clear(): void {
    for (const id of [...this.entries.keys()]) this.drop(id);
  }

  private drop(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.key.fill(0);
    this.entries.delete(id);
  }
}
