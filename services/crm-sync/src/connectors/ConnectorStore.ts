import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { ErrorCode, GatewayError, assertSubjectToken, listJson, openJson, sealJson, type Keyring, type Logger, type SealedValue } from '@gateway/common';
import { destinationTypes as connectorTypes, type DestinationType, type DestinationTypeName as ConnectorType } from '../destinations/index.js';
import { assertPublicHost, assertPublicHosts, type DestinationNetwork } from '../destinations/network.js';
import type { Destination } from '../destinations/types.js';
import type { KvContactMaps } from './ContactMap.js';

export type { ConnectorType };

export const connectorInputSchema = z.object({
  type: z.enum(Object.keys(connectorTypes) as [ConnectorType, ...ConnectorType[]]),
  config: z.record(z.string(), z.unknown()),
  secrets: z.record(z.string(), z.unknown()),
});

/** What the admin API shows of a connector: never its secrets. */
export interface ConnectorView {
  name: string;
  type: ConnectorType;
  config: Record<string, unknown>;
  updatedAtMs: number;
}

interface StoredConnector extends ConnectorView {
  secrets: SealedValue;
}

/**
 * Tenants' destinations, in KV. Secrets are sealed with the tenant's key (bound to the tenant
 * and the connector's name) and are only opened to build a destination.
 */
export class ConnectorStore {
  constructor(
    private readonly kv: KV,
    private readonly keyring: Keyring,
    private readonly contactMaps: KvContactMaps,
    private readonly log: Logger,
    private readonly network: DestinationNetwork,
  ) {}

  private key(tenant: string, name: string): string {
    return `${assertSubjectToken('tenant', tenant)}.${assertSubjectToken('connector name', name)}`;
  }

  /** Validates and stores a connector (replacing one of the same name). */
  async put(tenant: string, name: string, input: unknown): Promise<ConnectorView> {
    const parsed = connectorInputSchema.safeParse(input);
    if (!parsed.success) throw new GatewayError(ErrorCode.BAD_REQUEST, issues(parsed.error));
    const { type } = parsed.data;
    const config = connectorTypes[type].config.safeParse(parsed.data.config);
    if (!config.success) throw new GatewayError(ErrorCode.BAD_REQUEST, `config: ${issues(config.error)}`);
    const secrets = connectorTypes[type].secrets.safeParse(parsed.data.secrets);
    if (!secrets.success) throw new GatewayError(ErrorCode.BAD_REQUEST, `secrets: ${issues(secrets.error)}`);
    await assertPublicHosts((connectorTypes[type] as DestinationType<z.ZodType, z.ZodType>).hosts(config.data), this.network);
    const stored: StoredConnector = {
      name,
      type,
      config: config.data,
      updatedAtMs: Date.now(),
      secrets: await sealJson(this.keyring, tenant, `connector:${name}`, secrets.data),
    };
    await this.kv.put(this.key(tenant, name), JSON.stringify(stored));
    return view(stored);
  }

  async get(tenant: string, name: string): Promise<ConnectorView> {
    return view(await this.stored(tenant, name));
  }

  async list(tenant: string): Promise<ConnectorView[]> {
    return (await listJson<StoredConnector>(this.kv, `${assertSubjectToken('tenant', tenant)}.*`)).map((e) => view(e.value));
  }

  /** Removes the connector and every contact mapping made through it. */
  async remove(tenant: string, name: string): Promise<void> {
    await this.stored(tenant, name);
    await this.kv.purge(this.key(tenant, name));
    await this.contactMaps.removeAll(tenant, name);
  }

  /** A live client of the connector's destination; the caller closes it. */
  async open(tenant: string, name: string): Promise<Destination> {
    const stored = await this.stored(tenant, name);
    const secrets = await openJson<Record<string, unknown>>(this.keyring, tenant, `connector:${name}`, stored.secrets);
    // Each entry's create() matches its own schemas; indexed by a runtime name, TypeScript sees their union.
    const type = connectorTypes[stored.type] as DestinationType<z.ZodType, z.ZodType>;
    const config = type.config.parse(stored.config);
    // Checked again at each use: a name may resolve elsewhere than when it was configured.
    await assertPublicHosts(type.hosts(config), this.network);
    return type.create(config, type.secrets.parse(secrets), {
      contacts: this.contactMaps.for(tenant, name),
      log: this.log.child({ connector: name, adapter: stored.type }),
      checkHost: (host) => assertPublicHost(host, this.network),
    });
  }

  private async stored(tenant: string, name: string): Promise<StoredConnector> {
    const entry = await this.kv.get(this.key(tenant, name));
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such connector');
    return entry.json<StoredConnector>();
  }
}

function view({ name, type, config, updatedAtMs }: StoredConnector): ConnectorView {
  return { name, type, config, updatedAtMs };
}

function issues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
}
