import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { assertSubjectToken, listEntries, schemas, type Logger } from '@gateway/common';

/** A destination's confirmation of a delivery, as kept in KV and checked when read back. */
const confirmationSchema = z.object({
  tenant: schemas.subjectToken(),
  deliveryId: schemas.id(),
  connector: schemas.subjectToken(),
  confirmedAtMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});

/**
 * Which of a tenant's destinations have taken a delivery, kept until its event is settled
 * (KV gateway_crm_confirmations, key `<tenant>.<deliveryId>.<connector>`). Written right after a
 * destination confirms and before anything is purged, so that after a crash:
 *   - a destination that confirmed is not sent the delivery again;
 *   - an artifact found gone counts as delivered only if every destination confirmed (the crash
 *     came between purging and acknowledging); otherwise it is missing, and an alert.
 */
export class Confirmations {
  constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  private key(tenant: string, deliveryId: string, connector: string): string {
    return `${assertSubjectToken('tenant', tenant)}.${assertSubjectToken('delivery id', deliveryId)}.${assertSubjectToken('connector name', connector)}`;
  }

  async record(tenant: string, deliveryId: string, connector: string): Promise<void> {
    await this.kv.put(this.key(tenant, deliveryId, connector), JSON.stringify({ tenant, deliveryId, connector, confirmedAtMs: Date.now() }));
  }

  /** The connectors that confirmed the delivery; a record that is not what its key says does not count. */
  async confirmed(tenant: string, deliveryId: string): Promise<Set<string>> {
    const names = new Set<string>();
    const prefix = `${assertSubjectToken('tenant', tenant)}.${assertSubjectToken('delivery id', deliveryId)}.`;
    for (const entry of await listEntries(this.kv, `${prefix}*`)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder().decode(entry.value));
      } catch {
        parsed = undefined;
      }
      const result = confirmationSchema.safeParse(parsed);
      if (result.success && result.data.tenant === tenant && result.data.deliveryId === deliveryId && entry.key === `${prefix}${result.data.connector}`) {
        names.add(result.data.connector);
      } else {
        this.log.warn({ key: entry.key }, 'a delivery confirmation is unreadable; not counted');
      }
    }
    return names;
  }

  /**
   * The event is settled: the confirmations of these connectors have served. Only keys that
   * exist are named (a purge of a missing key would leave a marker behind).
   */
  async clearKnown(tenant: string, deliveryId: string, connectors: Iterable<string>): Promise<void> {
    for (const connector of connectors) await this.kv.purge(this.key(tenant, deliveryId, connector));
  }

  /** The event is settled: its confirmations have served. */
  async clear(tenant: string, deliveryId: string): Promise<void> {
    const prefix = `${assertSubjectToken('tenant', tenant)}.${assertSubjectToken('delivery id', deliveryId)}.`;
    for (const entry of await listEntries(this.kv, `${prefix}*`)) await this.kv.purge(entry.key);
  }
}
