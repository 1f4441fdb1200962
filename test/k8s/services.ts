import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminOriginsShape, grpcTlsShape, natsShape, opsDrainShape, tenantKeysShape, tenantsSchema, tenantsShape } from '@gateway/common';
import { deliveryConsumers } from '../../services/crm-sync/src/Deliveries.js';
import { readCrmSyncConfig } from '../../services/crm-sync/src/config.js';
import { readRecorderConfig } from '../../services/recorder/src/config.js';
import { readRoutingConfig } from '../../services/routing/src/config.js';
import { readSfuConfig } from '../../services/sfu/src/config.js';
import { readSignalingConfig, turnShape } from '../../services/signaling/src/config.js';

/**
 * What the deployment checks know of each service, taken from the services themselves: the
 * environment variables their config schemas read, and their configuration as they would parse
 * it from a given environment (ports, workers, drain, ...).
 */

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export type Env = Record<string, string | undefined>;

export interface ServiceSettings {
  /** Container port numbers by port name (ops, grpc, http), as the service will listen. */
  ports: Record<string, number>;
  sfu?: { workers: number; rtcPortMin: number; drainGraceSeconds: number; pipePortMin: number; pipePortMax: number };
  recorder?: { cpuBudget: number; workDir: string; drainGraceMs: number };
  signaling?: { webauthnRpId: string; webauthnOrigins: string[] | undefined };
}

export interface ServiceSpec {
  name: ServiceName;
  configFile: string;
  /** Parses an environment like the service does; throws naming the bad variable. */
  settings: (env: Env) => ServiceSettings;
}

export type ServiceName = 'sfu' | 'signaling' | 'recorder' | 'crm-sync' | 'routing';

// GRPC_TLS_* name files that the config readers open at once; the checks look at the names only.
const withoutTlsFiles = (env: Env): Env => Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('GRPC_TLS_')));

export const serviceSpecs: Record<ServiceName, ServiceSpec> = {
  sfu: {
    name: 'sfu',
    configFile: 'services/sfu/src/config.ts',
    settings: (env) => {
      const c = readSfuConfig(withoutTlsFiles(env));
      return {
        ports: { grpc: c.grpcPort, ops: c.opsPort },
        sfu: { workers: c.workers, rtcPortMin: c.rtcPortMin, drainGraceSeconds: c.drainGraceMs / 1000, pipePortMin: c.pipe.portMin, pipePortMax: c.pipe.portMax },
      };
    },
  },
  signaling: {
    name: 'signaling',
    configFile: 'services/signaling/src/config.ts',
    settings: (env) => {
      const c = readSignalingConfig(withoutTlsFiles(env));
      return { ports: { http: c.port, ops: c.opsPort }, signaling: { webauthnRpId: c.webauthn.rpId, webauthnOrigins: c.webauthn.origins } };
    },
  },
  recorder: {
    name: 'recorder',
    configFile: 'services/recorder/src/config.ts',
    settings: (env) => {
      const c = readRecorderConfig(withoutTlsFiles(env));
      return { ports: { grpc: c.grpcPort, ops: c.opsPort }, recorder: { cpuBudget: c.cpuBudget, workDir: c.workDir, drainGraceMs: c.drainGraceMs } };
    },
  },
  'crm-sync': {
    name: 'crm-sync',
    configFile: 'services/crm-sync/src/config.ts',
    settings: (env) => {
      const c = readCrmSyncConfig(env);
      return { ports: { http: c.port, ops: c.opsPort } };
    },
  },
  routing: {
    name: 'routing',
    configFile: 'services/routing/src/config.ts',
    settings: (env) => {
      const c = readRoutingConfig(env);
      return { ports: { http: routingAdminPort(c), ops: c.opsPort } };
    },
  },
};

/**
 * The port of routing's directory admin API: its config's `port` (ROUTING_PORT) once it reads
 * one, 8091 (the default it is planned with) until then.
 */
function routingAdminPort(config: object): number {
  return 'port' in config && typeof config.port === 'number' ? config.port : 8091;
}

export const serviceNames = Object.keys(serviceSpecs) as ServiceName[];

export function isServiceName(name: string | undefined): name is ServiceName {
  return name !== undefined && name in serviceSpecs;
}

const sharedShapes: Record<string, object> = { adminOriginsShape, tenantsShape, tenantKeysShape, grpcTlsShape, natsShape, opsDrainShape, turnShape };

/**
 * The variables a service's config schema reads: the keys of its `shape` object in config.ts,
 * with the shared shapes it spreads in.
 */
const variablesByService = new Map<ServiceName, Set<string>>();

export function schemaVariables(service: ServiceName): Set<string> {
  const known = variablesByService.get(service);
  if (known) return known;
  const source = readFileSync(path.join(repoRoot, serviceSpecs[service].configFile), 'utf8');
  const body = /const shape = \{([\s\S]*?)\n\};/.exec(source)?.[1];
  if (!body) throw new Error(`${serviceSpecs[service].configFile}: no \`const shape = { ... };\` found`);
  const names = new Set<string>();
  for (const match of body.matchAll(/^\s*([A-Z][A-Z0-9_]*):/gm)) names.add(match[1]);
  for (const match of body.matchAll(/\.\.\.(\w+)/g)) {
    const shape = sharedShapes[match[1]];
    if (!shape) throw new Error(`${serviceSpecs[service].configFile} spreads ${match[1]}, which these checks do not know`);
    for (const name of Object.keys(shape)) names.add(name);
  }
  variablesByService.set(service, names);
  return names;
}

/** Variables read by something other than the service's schema, and by which services. */
const otherReaders: Record<string, ServiceName[] | 'all'> = {
  // The OpenTelemetry SDK (packages/common/src/telemetry) reads the standard OTEL_ variables.
  OTEL_SERVICE_NAME: 'all',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'all',
  OTEL_EXPORTER_OTLP_PROTOCOL: 'all',
  OTEL_EXPORTER_OTLP_HEADERS: 'all',
  OTEL_RESOURCE_ATTRIBUTES: 'all',
  OTEL_TRACES_SAMPLER: 'all',
  OTEL_TRACES_SAMPLER_ARG: 'all',
  OTEL_SDK_DISABLED: 'all',
  NODE_ENV: 'all',
  NODE_OPTIONS: 'all',
  // mediasoup's library starts this worker binary.
  MEDIASOUP_WORKER_BIN: ['sfu'],
};

/** Variables that only feed `$(NAME)` references of other variables, filled by the downward API. */
export const downwardHelpers = new Set(['POD_IP', 'NODE_IP', 'NODE_NAME', 'POD_NAME']);

export function knownVariable(service: ServiceName, name: string): boolean {
  const readers = otherReaders[name];
  return schemaVariables(service).has(name) || readers === 'all' || (readers?.includes(service) ?? false);
}

/** crm-sync's durable consumers, as its code creates them. */
export function crmSyncDurableConsumers(): Array<{ stream: string; consumer: string }> {
  return deliveryConsumers.map(({ stream, durable }) => ({ stream, consumer: durable }));
}

/** Whether the recorder's code holds a JetStream consumer (it takes its jobs by gRPC today). */
export function recorderConsumesJetStream(): boolean {
  const dir = path.join(repoRoot, 'services/recorder/src');
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.ts') && !file.endsWith('.test.ts'));
  return files.some((file) => /consumers\.(add|get)\(|durable_name/.test(readFileSync(path.join(dir, file), 'utf8')));
}

/** Tenant names of a GATEWAY_TENANTS value, or undefined when it does not parse. */
export function tenantNames(value: string): string[] | undefined {
  const result = tenantsSchema.safeParse(value);
  return result.success ? result.data?.map((t) => t.name) : undefined;
}
