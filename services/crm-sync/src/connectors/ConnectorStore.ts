import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isLiveEntry, ErrorCode, GatewayError, assertSubjectToken, listEntries, openJson, schemas, sealJson, type Keyring, type Logger, type SealedValue } from '@gateway/common';
import { destinationTypes as connectorTypes, type DestinationType, type DestinationTypeName as ConnectorType } from '../destinations/index.js';
import { assertPublicHost, assertPublicHosts, destinationConnections, type DestinationConnections, type DestinationNetwork } from '../destinations/network.js';
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

/** A connector record as read back from KV: checked before it is shown or used. */
const storedConnectorSchema = z.object({
  name: schemas.subjectToken(),
  type: z.enum(Object.keys(connectorTypes) as [ConnectorType, ...ConnectorType[]]),
  config: z.record(z.string(), z.unknown()),
  updatedAtMs: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  secrets: z.object({
    wrapped: z.object({ kekId: z.string().min(1).max(256), value: z.string().min(1).max(1024) }),
    value: z
      .string()
      .min(1)
      .max(64 * 1024),
  }),
});

export interface ConnectorStoreOptions {
  /** The operator's cap on any one request to a destination, whatever the tenant set. */
  maxRequestTimeoutMs?: number;
}

/**
 * Tenants' destinations, in KV. Secrets are sealed with the tenant's key (bound to the tenant
 * and the connector's name) and are only opened to build a destination.
 */
export class ConnectorStore {
  /** Shared by every destination: connections that go only to addresses checked when they were made. */
  private readonly connections: DestinationConnections;
  private readonly maxRequestTimeoutMs: number;

  constructor(
    private readonly kv: KV,
    private readonly keyring: Keyring,
    private readonly contactMaps: KvContactMaps,
    private readonly log: Logger,
    private readonly network: DestinationNetwork,
    options: ConnectorStoreOptions = {},
  ) {
    this.connections = destinationConnections(network);
    this.maxRequestTimeoutMs = options.maxRequestTimeoutMs ?? 120_000;
  }

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

  /** The tenant's connectors; a record that is not what it should be is left out, with a log line. */
  async list(tenant: string): Promise<ConnectorView[]> {
    const views: ConnectorView[] = [];
    for (const entry of await listEntries(this.kv, `${assertSubjectToken('tenant', tenant)}.*`)) {
      const stored = this.check(entry.key, entry.value);
      if (stored) views.push(view(stored));
    }
    return views;
  }

  private check(key: string, value: Uint8Array): StoredConnector | undefined {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(value));
    } catch {
      parsed = undefined;
    }
    const result = storedConnectorSchema.safeParse(parsed);
    // The record's name must be its key's: a record copied under another key is not that connector.
    if (result.success && key === `${key.split('.')[0]}.${result.data.name}`) return result.data;
    this.log.error({ key }, 'a connector record is unreadable; left out');
    return undefined;
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
    const config = type.config.safeParse(stored.config);
    const opened = type.secrets.safeParse(secrets);
    if (!config.success || !opened.success) throw new GatewayError(ErrorCode.INTERNAL, 'the connector record is unreadable');
    // Checked again at each use, early; every connection is checked again as it is made (the
    // address it goes to is the one checked then).
    await assertPublicHosts(type.hosts(config.data), this.network);
    return type.create(config.data, opened.data, {
      contacts: this.contactMaps.for(tenant, name),
      log: this.log.child({ connector: name, adapter: stored.type }),
      checkHost: (host) => assertPublicHost(host, this.network),
      network: this.network,
      connections: this.connections,
      maxRequestTimeoutMs: this.maxRequestTimeoutMs,
    });
  }

  private async stored(tenant: string, name: string): Promise<StoredConnector> {
    const key = this.key(tenant, name);
    const entry = await this.kv.get(key);
    if (!isLiveEntry(entry)) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such connector');
    const stored = this.check(key, entry.value);
    if (!stored) throw new GatewayError(ErrorCode.INTERNAL, 'the connector record is unreadable');
    return stored;
  }

  async close(): Promise<void> {
    await this.connections.close();
  }
}

function view({ name, type, config, updatedAtMs }: StoredConnector): ConnectorView {
  return { name, type, config, updatedAtMs };
}

function issues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
}
