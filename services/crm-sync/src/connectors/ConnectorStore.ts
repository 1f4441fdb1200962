import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isLiveEntry, ErrorCode, GatewayError, assertSubjectToken, listEntries, openJson, schemas, sealJson, type Keyring, type Logger, type SealedValue } from '@gateway/common';
import { destinationTypes as connectorTypes, type DestinationType, type DestinationTypeName as ConnectorType } from '../destinations/index.js';
import { assertPublicHost, assertPublicHosts, destinationConnections, type DestinationConnections, type DestinationNetwork } from '../destinations/network.js';
import type { Destination } from '../destinations/types.js';
import type { KvContactMaps } from './ContactMap.js';
import { DestinationClients } from './DestinationClients.js';

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

/** A connector as deliveries see it: its checked record, and a hash of that record (a change of settings or credentials is a new client). */
export interface DeliveryConnector {
  name: string;
  type: ConnectorType;
  revision: string;
  readonly stored: StoredConnector;
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
  /** How long deliveries use a tenant's list of connectors before reading it again (a change made on another replica applies within this). */
  listTtlMs?: number;
  /** A destination client nobody used for this long is closed. */
  clientIdleMs?: number;
  /** A destination client is made again after this (its host resolved and checked again). */
  clientMaxAgeMs?: number;
}

/**
 * Deliveries read a tenant's connectors at most this often: a listing is a stream info and a get
 * per connector, and at hundreds of deliveries a second it was most of crm-sync's NATS requests.
 * A change made through this replica applies at once; one made through another, within this.
 */
const CONNECTOR_LIST_TTL_MS = 2_000;
const CLIENT_IDLE_MS = 5 * 60_000;
const CLIENT_MAX_AGE_MS = 30 * 60_000;

/**
 * Tenants' destinations, in KV. Secrets are sealed with the tenant's key (bound to the tenant
 * and the connector's name) and are only opened to build a destination.
 */
export class ConnectorStore {
  /** Shared by every destination: connections that go only to addresses checked when they were made. */
  private readonly connections: DestinationConnections;
  private readonly maxRequestTimeoutMs: number;
  private readonly listTtlMs: number;
  /** Each tenant's connectors as deliveries last read them. */
  private readonly lists = new Map<string, { readAtMs: number; connectors: Promise<DeliveryConnector[]> }>();
  /** Destination clients kept between deliveries, by `<tenant>.<connector>`. */
  private readonly clients: DestinationClients;

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
    this.listTtlMs = options.listTtlMs ?? CONNECTOR_LIST_TTL_MS;
    this.clients = new DestinationClients({ idleMs: options.clientIdleMs ?? CLIENT_IDLE_MS, maxAgeMs: options.clientMaxAgeMs ?? CLIENT_MAX_AGE_MS }, log);
  }

  /** A connector changed or went through this replica: deliveries read the tenant's list again, and its client goes. */
  private changed(tenant: string, name: string): void {
    this.lists.delete(tenant);
    this.clients.forget(this.key(tenant, name));
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
    this.changed(tenant, name);
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

  /**
   * The tenant's connectors for a delivery: read from KV (each record checked by schema) at most
   * every `listTtlMs`, shared by the deliveries meanwhile.
   */
  forDelivery(tenant: string): Promise<DeliveryConnector[]> {
    const cached = this.lists.get(tenant);
    if (cached && Date.now() - cached.readAtMs < this.listTtlMs) return cached.connectors;
    const read = { readAtMs: Date.now(), connectors: this.readForDelivery(tenant) };
    this.lists.set(tenant, read);
    // A listing that failed is not kept: the next delivery reads again.
    read.connectors.catch(() => {
      if (this.lists.get(tenant) === read) this.lists.delete(tenant);
    });
    return read.connectors;
  }

  private async readForDelivery(tenant: string): Promise<DeliveryConnector[]> {
    const connectors: DeliveryConnector[] = [];
    for (const entry of await listEntries(this.kv, `${assertSubjectToken('tenant', tenant)}.*`)) {
      const stored = this.check(entry.key, entry.value);
      if (stored) connectors.push({ name: stored.name, type: stored.type, revision: createHash('sha256').update(entry.value).digest('hex'), stored });
    }
    return connectors;
  }

  /**
   * Runs `work` with the connector's destination client, kept between deliveries (made at the
   * first, again when the connector's record changes; connectors/DestinationClients.ts).
   */
  withDestination<T>(tenant: string, connector: DeliveryConnector, work: (destination: Destination) => Promise<T>): Promise<T> {
    return this.clients.use(this.key(tenant, connector.name), connector.revision, () => this.create(tenant, connector.stored), work);
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
    this.changed(tenant, name);
    await this.contactMaps.removeAll(tenant, name);
  }

  /** A new client of the connector's destination (a connector test); the caller closes it. */
  async open(tenant: string, name: string): Promise<Destination> {
    return this.create(tenant, await this.stored(tenant, name));
  }

  private async create(tenant: string, stored: StoredConnector): Promise<Destination> {
    const name = stored.name;
    const secrets = await openJson<Record<string, unknown>>(this.keyring, tenant, `connector:${name}`, stored.secrets);
    // Each entry's create() matches its own schemas; indexed by a runtime name, TypeScript sees their union.
    const type = connectorTypes[stored.type] as DestinationType<z.ZodType, z.ZodType>;
    const config = type.config.safeParse(stored.config);
    const opened = type.secrets.safeParse(secrets);
    if (!config.success || !opened.success) throw new GatewayError(ErrorCode.INTERNAL, 'the connector record is unreadable');
    // Checked again at each new client, early; every connection is checked again as it is made
    // (the address it goes to is the one checked then).
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

  /** Closes the destination clients, then the connections. */
  async close(): Promise<void> {
    await this.clients.close();
    await this.connections.close();
  }
}

function view({ name, type, config, updatedAtMs }: StoredConnector): ConnectorView {
  return { name, type, config, updatedAtMs };
}

function issues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
}
