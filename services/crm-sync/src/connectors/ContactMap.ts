import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { isLiveEntry, liveKeys } from '@gateway/common';
import type { ContactMap } from '../destinations/types.js';

/** A CRM's id as read back: Salesforce ids, Zendesk's numbers. Anything else is not one of ours. */
const CRM_ID = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * CRM contact ids by external id, per tenant and connector, in KV. Keys hold a hash of the
 * external id, values only the CRM's id: nothing else about the end user is kept. A value read
 * back that is not a CRM id is taken as no mapping (the destination looks the contact up again).
 */
export class KvContactMaps {
  constructor(private readonly kv: KV) {}

  private prefix(tenant: string, connector: string): string {
    return `${tenant}.${connector}`;
  }

  private key(tenant: string, connector: string, externalId: string): string {
    return `${this.prefix(tenant, connector)}.${createHash('sha256').update(`${tenant}:${externalId}`).digest('hex').slice(0, 40)}`;
  }

  for(tenant: string, connector: string): ContactMap {
    return {
      get: async (externalId) => {
        const entry = await this.kv.get(this.key(tenant, connector, externalId));
        const value = isLiveEntry(entry) ? entry.string() : undefined;
        return value !== undefined && CRM_ID.test(value) ? value : undefined;
      },
      set: async (externalId, crmContactId) => {
        if (!CRM_ID.test(crmContactId)) return;
        await this.kv.put(this.key(tenant, connector, externalId), crmContactId);
      },
    };
  }

  /** Every mapping of the tenant that leads to the external id or to the CRM contact id. */
  async find(tenant: string, subject: { externalId?: string; crmContactId?: string }): Promise<Array<{ key: string; connector: string; crmContactId: string }>> {
    const hashed = subject.externalId ? createHash('sha256').update(`${tenant}:${subject.externalId}`).digest('hex').slice(0, 40) : undefined;
    const found: Array<{ key: string; connector: string; crmContactId: string }> = [];
    for (const key of await liveKeys(this.kv, `${tenant}.*.*`)) {
      const [, connector, keyHash] = key.split('.') as [string, string, string];
      if (hashed && keyHash !== hashed) continue;
      const entry = await this.kv.get(key);
      if (!isLiveEntry(entry)) continue;
      const crmContactId = entry.string();
      if (!CRM_ID.test(crmContactId)) continue;
      if (subject.crmContactId && crmContactId !== subject.crmContactId) continue;
      found.push({ key, connector, crmContactId });
    }
    return found;
  }

  async removeKeys(keys: string[]): Promise<void> {
    for (const key of keys) await this.kv.purge(key);
  }

  /** The tenant disconnected the destination: every mapping of it goes. */
  async removeAll(tenant: string, connector: string): Promise<number> {
    const keys = await liveKeys(this.kv, `${this.prefix(tenant, connector)}.*`);
    for (const key of keys) await this.kv.purge(key);
    return keys.length;
  }
}
