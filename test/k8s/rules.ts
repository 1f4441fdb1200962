import * as certManagerV1 from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import * as externalSecretsV1 from '@kubernetes-models/external-secrets/external-secrets.io/v1';
import * as kedaV1alpha1 from '@kubernetes-models/keda/keda.sh/v1alpha1';
import * as monitoringV1 from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as autoscalingV2 from 'kubernetes-models/autoscaling/v2';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as coreV1 from 'kubernetes-models/v1';
import * as batchV1 from 'kubernetes-models/batch/v1';
import { nkeys } from '@nats-io/transport-node';
import {
  crmSyncDurableConsumers,
  downwardHelpers,
  isServiceName,
  knownVariable,
  recorderConsumesJetStream,
  schemaVariables,
  serviceSpecs,
  tenantNames,
  type Env,
  type ServiceName,
  type ServiceSettings,
} from './services.js';

/**
 * The rules every rendered Kubernetes environment (k8s/overlays/*) must follow, as functions
 * from the rendered objects to the violations found. Each rule names itself in its violations,
 * so a test can show that a broken object is caught by the rule meant for it.
 */

// Rendered manifests are plain JSON of many kinds; the rules read them field by field.
type Json = any;

/** Seconds a stopping recorder gets after its drain to assemble and store what still runs. */
const recorderAssemblyMargin = 300;

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: Json;
}

export interface Violation {
  rule: string;
  object: string;
  message: string;
}

export const objectId = (o: K8sObject) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

/** The media node pool the SFU must run on, by label and taint. */
export const mediaPool = { key: 'gateway.io/pool', value: 'media' };
/** Seconds beyond the drain the SFU needs to tell its clients to rejoin and exit. */
export const sfuShutdownMargin = 30;
/** Where the downward API is pretended to point while checking values. */
export const samplePodIp = '10.244.7.9';
export const sampleHostIp = '10.0.7.21';
const monitoringNamespace = 'monitoring';

// ---------------------------------------------------------------------------------------------
// Schemas

const models: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'batch/v1': batchV1,
  'autoscaling/v2': autoscalingV2,
  'policy/v1': policyV1,
  'networking.k8s.io/v1': networkingV1,
  'keda.sh/v1alpha1': kedaV1alpha1,
  'monitoring.coreos.com/v1': monitoringV1,
  'cert-manager.io/v1': certManagerV1,
  'external-secrets.io/v1': externalSecretsV1,
};

type Model = new (data: unknown) => { validate(): void };

/** Validates each object against the JSON schema of its kind (kubernetes-models and the CRD models). */
export function checkSchemas(objects: K8sObject[]): Violation[] {
  const found: Violation[] = [];
  for (const o of objects) {
    const model = models[o.apiVersion]?.[o.kind] as Model | undefined;
    if (typeof model !== 'function') {
      found.push({ rule: 'schema', object: objectId(o), message: `no schema known for ${o.apiVersion} ${o.kind}` });
      continue;
    }
    try {
      new model(o).validate();
    } catch (error) {
      found.push({ rule: 'schema', object: objectId(o), message: error instanceof Error ? error.message : String(error) });
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Workloads and their environment

export interface Workload {
  object: K8sObject;
  service: ServiceName | undefined;
  namespace: string;
  podLabels: Record<string, string>;
  pod: Json;
}

const podTemplatePath: Record<string, (o: K8sObject) => Json> = {
  Deployment: (o) => o.spec?.template,
  DaemonSet: (o) => o.spec?.template,
  StatefulSet: (o) => o.spec?.template,
  ReplicaSet: (o) => o.spec?.template,
  Job: (o) => o.spec?.template,
  CronJob: (o) => o.spec?.jobTemplate?.spec?.template,
  Pod: (o) => ({ metadata: o.metadata, spec: o.spec }),
};

export function workloads(objects: K8sObject[]): Workload[] {
  return objects
    .filter((o) => o.kind in podTemplatePath)
    .map((o) => {
      const template = podTemplatePath[o.kind](o) ?? {};
      const podLabels: Record<string, string> = template.metadata?.labels ?? {};
      const name = podLabels['app.kubernetes.io/name'];
      return { object: o, service: isServiceName(name) ? name : undefined, namespace: o.metadata.namespace ?? 'default', podLabels, pod: template.spec ?? {} };
    });
}

const containersOf = (pod: Json): Json[] => [...(pod.initContainers ?? []), ...(pod.containers ?? [])];

/** One variable of a container's environment: its value when the manifests hold it. */
interface EnvEntry {
  value: string | undefined;
  source: 'literal' | 'configMap' | 'secret' | 'fieldRef' | 'external';
  fieldPath?: string;
}

export interface ResolvedEnv {
  entries: Map<string, EnvEntry>;
  problems: string[];
}

/** Keys of the Secrets the manifests hold or have made (External Secrets, cert-manager): undefined values are not in the manifests. */
function secretKeys(objects: K8sObject[], namespace: string, name: string): Map<string, string | undefined> | undefined {
  for (const o of objects) {
    if ((o.metadata.namespace ?? 'default') !== namespace) continue;
    if (o.kind === 'Secret' && o.metadata.name === name) {
      const keys = new Map<string, string | undefined>();
      for (const [k, v] of Object.entries<string>(o.data ?? {})) keys.set(k, Buffer.from(v, 'base64').toString('utf8'));
      for (const [k, v] of Object.entries<string>(o.stringData ?? {})) keys.set(k, v);
      return keys;
    }
    if (o.kind === 'ExternalSecret' && (o.spec?.target?.name ?? o.metadata.name) === name) {
      return new Map((o.spec?.data ?? []).map((d: Json) => [d.secretKey, undefined]));
    }
    if (o.kind === 'Certificate' && o.spec?.secretName === name) {
      return new Map(['tls.crt', 'tls.key', 'ca.crt'].map((k) => [k, undefined]));
    }
  }
  return undefined;
}

function configMapData(objects: K8sObject[], namespace: string, name: string): Record<string, string> | undefined {
  return objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name && (o.metadata.namespace ?? 'default') === namespace)?.data ?? undefined;
}

const sampleFieldValues: Record<string, string> = {
  'status.podIP': samplePodIp,
  'status.hostIP': sampleHostIp,
  'metadata.name': 'pod-0',
  'metadata.namespace': 'gateway',
  'spec.nodeName': 'node-0',
};

/** A container's environment as the kubelet builds it: envFrom first, then env with $(NAME) references expanded. */
export function resolveEnv(container: Json, namespace: string, objects: K8sObject[], hostNetwork = false): ResolvedEnv {
  const entries = new Map<string, EnvEntry>();
  const problems: string[] = [];
  for (const from of container.envFrom ?? []) {
    if (from.configMapRef) {
      const data = configMapData(objects, namespace, from.configMapRef.name);
      if (!data) problems.push(`envFrom names ConfigMap ${from.configMapRef.name}, which is not in the manifests`);
      for (const [k, v] of Object.entries(data ?? {})) entries.set(`${from.prefix ?? ''}${k}`, { value: v, source: 'configMap' });
    }
    if (from.secretRef) {
      const keys = secretKeys(objects, namespace, from.secretRef.name);
      if (!keys) problems.push(`envFrom names Secret ${from.secretRef.name}, which nothing in the manifests provides`);
      for (const [k, v] of keys ?? []) entries.set(`${from.prefix ?? ''}${k}`, { value: v, source: v === undefined ? 'external' : 'secret' });
    }
  }
  const expand = (value: string) => value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => entries.get(name)?.value ?? whole);
  for (const e of container.env ?? []) {
    if (typeof e.value === 'string') {
      entries.set(e.name, { value: expand(e.value), source: 'literal' });
    } else if (e.valueFrom?.fieldRef) {
      const fieldPath: string = e.valueFrom.fieldRef.fieldPath;
      // On the host network the pod's address is the node's.
      const value = hostNetwork && fieldPath === 'status.podIP' ? sampleHostIp : sampleFieldValues[fieldPath];
      entries.set(e.name, { value, source: 'fieldRef', fieldPath });
    } else if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef;
      const keys = secretKeys(objects, namespace, name);
      if (!keys) problems.push(`${e.name} comes from Secret ${name}, which nothing in the manifests provides`);
      else if (!keys.has(key)) problems.push(`${e.name} comes from key ${key} of Secret ${name}, which it does not have`);
      const value = keys?.get(key);
      entries.set(e.name, { value, source: value === undefined ? 'external' : 'secret' });
    } else if (e.valueFrom?.configMapKeyRef) {
      const { name, key } = e.valueFrom.configMapKeyRef;
      const value = configMapData(objects, namespace, name)?.[key];
      if (value === undefined) problems.push(`${e.name} comes from key ${key} of ConfigMap ${name}, which is not in the manifests`);
      entries.set(e.name, { value, source: 'configMap' });
    } else {
      entries.set(e.name, { value: '', source: 'literal' });
    }
  }
  return { entries, problems };
}

/** The values the manifests hold, for the service's own parser; values from outside are left to the defaults. */
export function envValues(env: ResolvedEnv): Env {
  const values: Env = {};
  for (const [name, entry] of env.entries) if (entry.value !== undefined) values[name] = entry.value;
  return values;
}

/** Kubernetes quantities of CPU in cores. */
export function cpuCores(quantity: string | number | undefined): number | undefined {
  if (quantity === undefined) return undefined;
  const text = String(quantity);
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text);
}

// ---------------------------------------------------------------------------------------------
// The rules

export type Rule = (objects: K8sObject[]) => Violation[];

/** Every container: requests and limits, probes, a non-root user without privilege escalation, a read-only root, a pinned image. */
export const containerRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    const id = objectId(w.object);
    const add = (container: Json, message: string) => found.push({ rule: 'containers', object: id, message: `container ${container.name}: ${message}` });
    const podSecurity = w.pod.securityContext ?? {};
    for (const c of containersOf(w.pod)) {
      for (const kind of ['requests', 'limits'] as const) {
        for (const resource of ['cpu', 'memory']) if (c.resources?.[kind]?.[resource] === undefined) add(c, `no ${resource} ${kind.slice(0, -1)}`);
      }
      const isInit = (w.pod.initContainers ?? []).includes(c);
      // A Job's container runs to completion: nothing to probe.
      const runsToCompletion = w.object.kind === 'Job' || w.object.kind === 'CronJob';
      if (!isInit && !runsToCompletion) {
        if (!c.livenessProbe) add(c, 'no liveness probe');
        if (!c.readinessProbe) add(c, 'no readiness probe');
      }
      const security = c.securityContext ?? {};
      const runAsNonRoot = security.runAsNonRoot ?? podSecurity.runAsNonRoot;
      const runAsUser = security.runAsUser ?? podSecurity.runAsUser;
      if (runAsNonRoot !== true) add(c, 'runAsNonRoot is not true');
      if (runAsUser === undefined || runAsUser === 0) add(c, `runs as ${runAsUser === 0 ? 'root (uid 0)' : 'the image user (no runAsUser)'}`);
      if (security.allowPrivilegeEscalation !== false) add(c, 'allowPrivilegeEscalation is not false');
      if (security.privileged === true) add(c, 'is privileged');
      if (security.readOnlyRootFilesystem !== true) add(c, 'the root filesystem is writable');
      if (!(security.capabilities?.drop ?? []).includes('ALL')) add(c, 'does not drop ALL capabilities');
      const seccomp = security.seccompProfile?.type ?? podSecurity.seccompProfile?.type;
      if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') add(c, 'no RuntimeDefault or Localhost seccomp profile');
      const image: string = c.image ?? '';
      const tag = image.includes('@') ? 'digest' : /:([^/:]+)$/.exec(image)?.[1];
      if (!tag || tag === 'latest') add(c, `image ${image} is not pinned to a tag or digest`);
    }
  }
  return found;
};

/** Our services' probes ask their ops server: liveness /healthz, readiness /readyz. */
export const probeRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    if (!w.service) continue;
    for (const c of w.pod.containers ?? []) {
      const opsPort = (c.ports ?? []).find((p: Json) => p.name === 'ops')?.containerPort;
      const check = (probe: Json, kind: string, path: string) => {
        const get = probe?.httpGet;
        if (!get || get.path !== path || (get.port !== 'ops' && get.port !== opsPort))
          found.push({ rule: 'probes', object: objectId(w.object), message: `container ${c.name}: the ${kind} probe is not GET ${path} on the ops port` });
      };
      check(c.livenessProbe, 'liveness', '/healthz');
      check(c.readinessProbe, 'readiness', '/readyz');
    }
  }
  return found;
};

/**
 * Each service's environment: only variables its config schema (or the OpenTelemetry SDK,
 * mediasoup, Node) reads, values the service accepts, ports that match its config, the
 * OpenTelemetry variables, and gRPC TLS files all or none.
 */
export const configRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    if (!w.service) continue;
    const id = objectId(w.object);
    const add = (message: string) => found.push({ rule: 'config', object: id, message });
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === w.service) ?? w.pod.containers?.[0];
    if (!container) continue;
    const env = resolveEnv(container, w.namespace, objects, w.pod.hostNetwork === true);
    env.problems.forEach(add);
    for (const [name, entry] of env.entries) {
      const helper = downwardHelpers.has(name) && entry.source === 'fieldRef';
      if (!helper && !knownVariable(w.service, name)) add(`${name} is not a variable ${w.service} reads`);
      if (entry.value?.includes('$(')) add(`${name}=${entry.value} refers to a variable not defined before it`);
    }
    let settings: ServiceSettings | undefined;
    try {
      settings = serviceSpecs[w.service].settings(envValues(env));
    } catch (error) {
      add(`${w.service} would refuse its configuration: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (env.entries.get('OTEL_SERVICE_NAME')?.value !== w.service) add(`OTEL_SERVICE_NAME is not "${w.service}"`);
    if (!env.entries.get('OTEL_EXPORTER_OTLP_ENDPOINT')?.value) add('OTEL_EXPORTER_OTLP_ENDPOINT is not set');
    const tlsFiles = ['GRPC_TLS_CA_FILE', 'GRPC_TLS_CERT_FILE', 'GRPC_TLS_KEY_FILE'];
    const tlsSet = tlsFiles.filter((name) => env.entries.has(name));
    if (tlsSet.length !== 0 && tlsSet.length !== 3) add(`gRPC TLS needs all of ${tlsFiles.join(', ')} or none; set: ${tlsSet.join(', ')}`);
    for (const name of tlsSet) {
      const file = env.entries.get(name)?.value ?? '';
      const mount = (container.volumeMounts ?? []).find((m: Json) => file.startsWith(`${m.mountPath}/`));
      const volume = (w.pod.volumes ?? []).find((v: Json) => v.name === mount?.name);
      if (!volume?.secret) add(`${name}=${file} is not in a mounted Secret`);
      else if (!secretKeys(objects, w.namespace, volume.secret.secretName)?.has(file.slice(mount.mountPath.length + 1))) add(`${name}=${file}: Secret ${volume.secret.secretName} has no such key`);
    }
    const tenants = env.entries.get('GATEWAY_TENANTS')?.value;
    const keys = env.entries.get('GATEWAY_TENANT_KEYS')?.value;
    if (tenants !== undefined && keys !== undefined) {
      let keyed: string[] = [];
      try {
        keyed = Object.keys(JSON.parse(keys) as object);
      } catch {
        // The service's own parse (below) reports a malformed value.
      }
      for (const tenant of tenantNames(tenants) ?? []) if (!keyed.includes(tenant)) add(`tenant ${tenant} has no key in GATEWAY_TENANT_KEYS`);
    }
    if (!settings) continue;
    for (const [portName, port] of Object.entries(settings.ports)) {
      const declared = (container.ports ?? []).find((p: Json) => p.name === portName);
      if (!declared) add(`no container port named ${portName} (${w.service} listens on ${port})`);
      else if (declared.containerPort !== port) add(`container port ${portName} is ${declared.containerPort}, ${w.service} listens on ${port}`);
    }
    const cpuLimit = cpuCores(container.resources?.limits?.cpu);
    if (settings.sfu && cpuLimit !== undefined && settings.sfu.workers > cpuLimit) add(`SFU_WORKERS=${settings.sfu.workers} workers on a CPU limit of ${cpuLimit} cores`);
    if (settings.recorder) {
      if (cpuLimit !== undefined && settings.recorder.cpuBudget > cpuLimit) add(`RECORDER_CPU_BUDGET=${settings.recorder.cpuBudget} is above the CPU limit (${cpuLimit})`);
      const workDir = settings.recorder.workDir;
      const mount = (container.volumeMounts ?? []).find((m: Json) => workDir === m.mountPath || workDir.startsWith(`${m.mountPath}/`));
      const volume = (w.pod.volumes ?? []).find((v: Json) => v.name === mount?.name);
      if (volume?.emptyDir?.medium !== 'Memory') add(`RECORDER_WORK_DIR=${workDir} is not on an emptyDir of medium Memory`);
      // A stopping recorder drains, then assembles what still runs: the pod must get that long.
      const grace = w.pod.terminationGracePeriodSeconds ?? 30;
      const neededSeconds = settings.recorder.drainGraceMs / 1000 + recorderAssemblyMargin;
      if (grace < neededSeconds) add(`terminationGracePeriodSeconds ${grace} is shorter than the drain (RECORDER_DRAIN_GRACE_SECONDS) plus ${recorderAssemblyMargin} s to store what still runs`);
    }
  }
  // gRPC between the services: mutual TLS on all of them or on none.
  const tlsByService = new Map<string, boolean>();
  for (const w of workloads(objects)) {
    if (w.service !== 'sfu' && w.service !== 'signaling' && w.service !== 'recorder') continue;
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === w.service) ?? w.pod.containers?.[0];
    tlsByService.set(w.service, resolveEnv(container, w.namespace, objects).entries.has('GRPC_TLS_CA_FILE'));
  }
  if (new Set(tlsByService.values()).size > 1) {
    const with_ = [...tlsByService].filter(([, tls]) => tls).map(([s]) => s);
    found.push({ rule: 'config', object: 'gRPC', message: `mutual TLS on ${with_.join(', ')} only: a client and a server that disagree cannot talk` });
  }
  return found;
};

/** The SFU: host network, one media port per worker, on the tainted media pool, a drain it can finish, a preStop hook, its own scaling. */
export const sfuRules: Rule = (objects) => {
  const found: Violation[] = [];
  const sfus = workloads(objects).filter((w) => w.service === 'sfu');
  if (sfus.length === 0) return [{ rule: 'sfu', object: 'SFU', message: 'no SFU workload' }];
  for (const w of sfus) {
    const id = objectId(w.object);
    const add = (message: string) => found.push({ rule: 'sfu', object: id, message });
    if (w.object.kind !== 'Deployment' && w.object.kind !== 'DaemonSet') add(`is a ${w.object.kind}, not a Deployment or DaemonSet`);
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === 'sfu') ?? w.pod.containers?.[0] ?? {};
    const hostNetwork = w.pod.hostNetwork === true;
    const env = resolveEnv(container, w.namespace, objects, hostNetwork);
    let settings: ServiceSettings['sfu'];
    try {
      settings = serviceSpecs.sfu.settings(envValues(env)).sfu;
    } catch {
      // configRules reports it.
    }
    const ports: Json[] = container.ports ?? [];
    const mediaPorts = ports.filter((p) => p.name?.startsWith('rtc-'));
    if (!hostNetwork && !mediaPorts.every((p) => p.hostPort === p.containerPort)) add('neither on the host network nor with host ports for its media ports');
    if (hostNetwork && w.pod.dnsPolicy !== 'ClusterFirstWithHostNet') add('on the host network without dnsPolicy ClusterFirstWithHostNet (cluster names would not resolve)');
    if (!env.entries.has('SFU_WORKERS')) add("SFU_WORKERS is not set: the default (the node's cores) would not match the declared ports");
    if (settings) {
      const expected = Array.from({ length: settings.workers }, (_, i) => settings.rtcPortMin + i);
      for (const port of expected) {
        for (const protocol of ['UDP', 'TCP']) {
          if (!mediaPorts.some((p) => p.containerPort === port && (p.protocol ?? 'TCP') === protocol)) add(`no ${protocol} media port ${port} for worker ${port - settings.rtcPortMin}`);
        }
      }
      const extra = mediaPorts.filter((p) => !expected.includes(p.containerPort));
      if (extra.length > 0) add(`media ports ${extra.map((p) => p.containerPort).join(', ')} belong to no worker (SFU_WORKERS=${settings.workers}, SFU_RTC_PORT_MIN=${settings.rtcPortMin})`);
      const preStopExec: string[] = container.lifecycle?.preStop?.exec?.command ?? [];
      const preStopSleep = Number(preStopExec[0] === 'sleep' ? preStopExec[1] : (container.lifecycle?.preStop?.sleep?.seconds ?? 0)) || 0;
      const grace = w.pod.terminationGracePeriodSeconds ?? 30;
      const needed = settings.drainGraceSeconds + preStopSleep + sfuShutdownMargin;
      if (grace < needed)
        add(
          `terminationGracePeriodSeconds ${grace} is shorter than the drain (SFU_DRAIN_GRACE_SECONDS=${settings.drainGraceSeconds}) plus the preStop pause (${preStopSleep}) and ${sfuShutdownMargin} s`,
        );
    }
    if (!container.lifecycle?.preStop) add('no preStop hook');
    if (w.pod.nodeSelector?.[mediaPool.key] !== mediaPool.value) add(`no nodeSelector ${mediaPool.key}=${mediaPool.value}`);
    const tolerated = (w.pod.tolerations ?? []).some(
      (t: Json) => t.key === mediaPool.key && (t.operator === 'Exists' || t.value === mediaPool.value) && (t.effect === undefined || t.effect === 'NoSchedule'),
    );
    if (!tolerated) add(`does not tolerate the media pool's taint ${mediaPool.key}=${mediaPool.value}:NoSchedule`);
    if (w.object.kind === 'Deployment') {
      const antiAffinity = (w.pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []).some(
        (term: Json) => term.topologyKey === 'kubernetes.io/hostname' && term.labelSelector?.matchLabels?.['app.kubernetes.io/name'] === 'sfu',
      );
      if (!antiAffinity) add('a Deployment without required anti-affinity per node: two SFUs on one node would want the same ports');
    }
    const announced = env.entries.get('SFU_ANNOUNCED_ADDRESS');
    if (!announced?.value) add('SFU_ANNOUNCED_ADDRESS is not set');
    // On the host network every address the SFU binds is the node's: all but the media ports
    // must listen on its internal address (the ops port too, once the SFU can be told so).
    const internalOnly = ['SFU_GRPC_HOST', 'SFU_TAP_LISTEN_IP', ...(schemaVariables('sfu').has('SFU_OPS_HOST') ? ['SFU_OPS_HOST'] : [])];
    for (const name of internalOnly) {
      const value = env.entries.get(name)?.value;
      if (value !== samplePodIp && value !== sampleHostIp) add(`${name} is ${value ?? 'unset (0.0.0.0 or loopback)'}, not the pod's own address from the downward API`);
    }
    const advertised = env.entries.get('SFU_GRPC_ADVERTISED_ADDRESS')?.value;
    const grpcPort = ports.find((p) => p.name === 'grpc')?.containerPort;
    if (advertised !== `${sampleHostIp}:${grpcPort}` && advertised !== `${samplePodIp}:${grpcPort}`)
      add(`SFU_GRPC_ADVERTISED_ADDRESS is ${advertised ?? 'unset'}, not the pod's address and gRPC port`);
    if (container.readinessProbe?.httpGet?.path !== '/readyz') add('the readiness probe is not /readyz (false while draining)');
    if (w.object.kind === 'Deployment') {
      const scaler = objects.find((o) => o.kind === 'ScaledObject' && o.metadata.namespace === w.namespace && o.spec?.scaleTargetRef?.name === w.object.metadata.name);
      const query = (scaler?.spec?.triggers ?? []).map((t: Json) => t.metadata?.query ?? '').join(' ');
      if (!query.includes('gateway_sfu_consumers') || !query.includes('gateway_sfu_workers')) add('no ScaledObject scaling it on gateway_sfu_consumers per gateway_sfu_workers');
    }
  }
  return found;
};

/** Services whose ops port has /drain, and the variable of the address it listens on. */
const drainedServices: Partial<Record<ServiceName, { opsHost?: string }>> = { sfu: { opsHost: 'SFU_OPS_HOST' }, recorder: {} };
const loopbackUrl = /\/\/(?:127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]/;

/**
 * The SFU's and the recorder's preStop hooks drain the node: /drain takes only the node itself
 * (loopback) or a caller with the drain token, so the hook runs inside the container (exec): an
 * httpGet hook comes from the kubelet's address and cannot carry the token. A hook that calls
 * the ops port on loopback needs the port to listen there; any other address needs the token,
 * read from OPS_DRAIN_TOKEN_FILE.
 */
export const drainRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    const spec = w.service ? drainedServices[w.service] : undefined;
    if (!w.service || !spec) continue;
    const add = (message: string) => found.push({ rule: 'drain', object: objectId(w.object), message });
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === w.service) ?? w.pod.containers?.[0] ?? {};
    const preStop = container.lifecycle?.preStop;
    if (!preStop) {
      add('no preStop hook drains the node before SIGTERM');
      continue;
    }
    if (preStop.httpGet) {
      add("the preStop hook is an httpGet: the kubelet calls from the node's address without the drain token, and /drain refuses it; use an exec hook");
      continue;
    }
    const script = (preStop.exec?.command ?? []).join(' ');
    if (!script.includes('/drain') || !/\bPOST\b/.test(script)) {
      add('the preStop hook does not POST /drain');
      continue;
    }
    const env = resolveEnv(container, w.namespace, objects, w.pod.hostNetwork === true);
    const opsHost = spec.opsHost ? env.entries.get(spec.opsHost)?.value : undefined;
    const opsOnLoopback = opsHost === undefined || opsHost === '0.0.0.0' || opsHost === '::' || opsHost.startsWith('127.');
    if (loopbackUrl.test(script)) {
      if (!opsOnLoopback) add(`the preStop hook calls /drain on loopback, but the ops port listens on ${spec.opsHost}=${opsHost} only`);
    } else if (!env.entries.has('OPS_DRAIN_TOKEN_FILE') || !script.includes('OPS_DRAIN_TOKEN_FILE') || !/authorization/i.test(script)) {
      add('the preStop hook calls /drain on an address other than loopback without the drain token (OPS_DRAIN_TOKEN_FILE, sent as a bearer token)');
    }
  }
  return found;
};

/** The gRPC services and the DNS name each one's certificate must carry (and no other service's). */
const grpcIdentities: Partial<Record<ServiceName, string>> = { sfu: 'sfu.gateway.internal', recorder: 'recorder.gateway.internal', signaling: 'signaling.gateway.internal' };

/**
 * Each service's gRPC certificate (a cert-manager Certificate behind GRPC_TLS_CERT_FILE) names
 * that service and no other: peers check these names, and a certificate with another service's
 * name would let its holder pass for that service.
 */
export const grpcIdentityRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    const identity = w.service ? grpcIdentities[w.service] : undefined;
    if (!identity) continue;
    const add = (message: string) => found.push({ rule: 'identity', object: objectId(w.object), message });
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === w.service) ?? w.pod.containers?.[0] ?? {};
    const file = resolveEnv(container, w.namespace, objects).entries.get('GRPC_TLS_CERT_FILE')?.value;
    if (!file) continue;
    const mount = (container.volumeMounts ?? []).find((m: Json) => file.startsWith(`${m.mountPath}/`));
    const secretName = (w.pod.volumes ?? []).find((v: Json) => v.name === mount?.name)?.secret?.secretName;
    const certificate = objects.find((o) => o.kind === 'Certificate' && (o.metadata.namespace ?? 'default') === w.namespace && o.spec?.secretName === secretName);
    if (!certificate) {
      add(`GRPC_TLS_CERT_FILE=${file} comes from no cert-manager Certificate in the manifests`);
      continue;
    }
    const names: string[] = certificate.spec?.dnsNames ?? [];
    if (!names.includes(identity)) add(`its gRPC certificate (${objectId(certificate)}) does not carry ${identity}`);
    const others = names.filter((name) => Object.values(grpcIdentities).includes(name) && name !== identity);
    if (others.length > 0) add(`its gRPC certificate (${objectId(certificate)}) also carries ${others.join(', ')}: it could pass for that service`);
    if (certificate.spec?.commonName && certificate.spec.commonName !== identity) add(`its gRPC certificate's common name is ${certificate.spec.commonName}, not ${identity}`);
    const usages: string[] = certificate.spec?.usages ?? [];
    if (!usages.includes('client auth')) add('its gRPC certificate lacks the client auth usage');
    if (w.service !== 'signaling' && !usages.includes('server auth')) add('its gRPC certificate lacks the server auth usage');
  }
  return found;
};

const publicSources = new Set(['0.0.0.0/0', '::/0']);

/** The port of signaling's Service that leads to its http container port. */
const signalingHttpPort = (objects: K8sObject[]): number | undefined =>
  objects.find((o) => o.kind === 'Service' && o.metadata.name === 'signaling')?.spec?.ports?.find((p: Json) => p.name === 'http')?.port;

/** Only signaling (through the Ingress) and the SFU's media ports face the internet; gRPC never. */
export const exposureRules: Rule = (objects) => {
  const found: Violation[] = [];
  const add = (o: K8sObject, message: string) => found.push({ rule: 'exposure', object: objectId(o), message });
  for (const o of objects) {
    if (o.kind === 'Service') {
      if (o.spec?.type === 'LoadBalancer' || o.spec?.type === 'NodePort') add(o, `a ${o.spec.type} Service`);
      if ((o.spec?.externalIPs ?? []).length > 0) add(o, 'has external IPs');
    }
    if (o.kind === 'Ingress') {
      const backends: Json[] = [o.spec?.defaultBackend, ...(o.spec?.rules ?? []).flatMap((r: Json) => (r.http?.paths ?? []).map((p: Json) => p.backend))].filter(Boolean);
      for (const b of backends) {
        const port = b.service?.port;
        if (b.service?.name !== 'signaling' || (port?.name !== 'http' && port?.number !== signalingHttpPort(objects)))
          add(o, `routes to ${b.service?.name ?? 'a resource'} port ${port?.name ?? port?.number}: only signaling's http port is public`);
      }
    }
  }
  for (const w of workloads(objects)) {
    for (const c of containersOf(w.pod)) {
      const hostPorts = (c.ports ?? []).filter((p: Json) => p.hostPort !== undefined);
      if (w.service !== 'sfu') {
        if (w.pod.hostNetwork) add(w.object, 'on the host network: only the SFU may be');
        for (const p of hostPorts) add(w.object, `host port ${p.hostPort}: only the SFU's media ports may be`);
      } else {
        for (const p of hostPorts) if (!p.name?.startsWith('rtc-')) add(w.object, `host port ${p.hostPort} (${p.name}) is not a media port`);
      }
    }
  }
  return found;
};

/** Ports of a policy rule as numbers, resolving names against the pods' container ports. */
function rulePorts(rule: Json, podPorts: Json[]): Array<{ port: number; endPort: number; protocol: string }> | 'all' {
  if (!rule.ports || rule.ports.length === 0) return 'all';
  return rule.ports.map((p: Json) => {
    const number = typeof p.port === 'number' ? p.port : (podPorts.find((c) => c.name === p.port)?.containerPort ?? -1);
    return { port: number, endPort: p.endPort ?? number, protocol: p.protocol ?? 'TCP' };
  });
}

const selects = (selector: Json, labels: Record<string, string>) =>
  Object.entries<string>(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
  (selector?.matchExpressions ?? []).every((e: Json) => (e.operator === 'In' ? e.values.includes(labels[e.key]) : e.operator === 'Exists' ? e.key in labels : true));

/** Default deny in every namespace we run in; nothing open to all sources; gRPC only from our pods; ops ports only to Prometheus. */
export const networkPolicyRules: Rule = (objects) => {
  const found: Violation[] = [];
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const namespaces = new Set(workloads(objects).map((w) => w.namespace));
  for (const ns of namespaces) {
    const denies = policies.some(
      (p) =>
        p.metadata.namespace === ns &&
        Object.keys(p.spec?.podSelector ?? {}).length === 0 &&
        ['Ingress', 'Egress'].every((t) => (p.spec?.policyTypes ?? []).includes(t)) &&
        !p.spec?.ingress &&
        !p.spec?.egress,
    );
    if (!denies) found.push({ rule: 'network', object: `Namespace ${ns}`, message: 'no default-deny NetworkPolicy for Ingress and Egress' });
  }
  for (const p of policies) {
    const add = (message: string) => found.push({ rule: 'network', object: objectId(p), message });
    const targets = workloads(objects).filter((w) => w.namespace === p.metadata.namespace && selects(p.spec?.podSelector, w.podLabels));
    for (const [index, rule] of (p.spec?.ingress ?? []).entries()) {
      const sources: Json[] = rule.from ?? [];
      if (sources.length === 0 || sources.some((s) => publicSources.has(s.ipBlock?.cidr))) add(`ingress rule ${index} admits every source`);
      for (const w of targets) {
        const podPorts = containersOf(w.pod).flatMap((c) => c.ports ?? []);
        const opened = rulePorts(rule, podPorts);
        for (const named of podPorts.filter((c) => c.name === 'grpc' || c.name === 'ops')) {
          const covered = opened === 'all' || opened.some((r) => named.containerPort >= r.port && named.containerPort <= r.endPort && r.protocol === (named.protocol ?? 'TCP'));
          if (!covered) continue;
          if (named.name === 'grpc' && (sources.length === 0 || !sources.every((s) => s.podSelector && !s.namespaceSelector && !s.ipBlock)))
            add(`ingress rule ${index} opens ${w.service ?? w.object.metadata.name}'s gRPC port to more than our own pods`);
          if (named.name === 'ops' && (sources.length === 0 || !sources.every((s) => s.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === monitoringNamespace && !s.ipBlock)))
            add(`ingress rule ${index} opens ${w.service ?? w.object.metadata.name}'s ops port to more than Prometheus (namespace ${monitoringNamespace})`);
        }
      }
    }
  }
  return found;
};

/** Each service scales by something of its own, never to zero; crm-sync on the lag of the durable consumers its code holds. */
export const scalingRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    if (!w.service || w.object.kind !== 'Deployment') continue;
    const id = objectId(w.object);
    const add = (message: string) => found.push({ rule: 'scaling', object: id, message });
    const hpa = objects.find((o) => o.kind === 'HorizontalPodAutoscaler' && o.metadata.namespace === w.namespace && o.spec?.scaleTargetRef?.name === w.object.metadata.name);
    const scaled = objects.find((o) => o.kind === 'ScaledObject' && o.metadata.namespace === w.namespace && o.spec?.scaleTargetRef?.name === w.object.metadata.name);
    if (!hpa && !scaled) add('nothing scales it (no HorizontalPodAutoscaler or ScaledObject)');
    if (hpa && scaled) add('both a HorizontalPodAutoscaler and a ScaledObject scale it');
    if (w.object.spec?.replicas !== undefined && (hpa || scaled)) add('sets spec.replicas while an autoscaler owns the count (every apply would reset it)');
    const minimum = hpa ? (hpa.spec?.minReplicas ?? 1) : (scaled?.spec?.minReplicaCount ?? 0);
    if ((hpa || scaled) && minimum < 1) add('may scale to zero replicas');
    if (w.service === 'crm-sync') {
      const triggers: Json[] = (scaled?.spec?.triggers ?? []).filter((t: Json) => t.type === 'nats-jetstream');
      for (const { stream, consumer } of crmSyncDurableConsumers()) {
        if (!triggers.some((t) => t.metadata?.stream === stream && t.metadata?.consumer === consumer)) add(`no nats-jetstream trigger on ${stream} / ${consumer}`);
      }
      for (const t of triggers) {
        if (!crmSyncDurableConsumers().some((d) => d.stream === t.metadata?.stream && d.consumer === t.metadata?.consumer))
          add(`a nats-jetstream trigger on ${t.metadata?.stream} / ${t.metadata?.consumer}, a consumer crm-sync does not hold`);
      }
    }
    if (w.service === 'recorder' && recorderConsumesJetStream() && !(scaled?.spec?.triggers ?? []).some((t: Json) => t.type === 'nats-jetstream'))
      add('the recorder holds a JetStream consumer now: scale it on its lag');
  }
  return found;
};

/** PodDisruptionBudgets and ServiceMonitors for every service, on pods and ops ports that exist. */
export const availabilityRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    if (!w.service) continue;
    const id = objectId(w.object);
    const inNamespace = (kind: string) => objects.filter((o) => o.kind === kind && o.metadata.namespace === w.namespace);
    if (!inNamespace('PodDisruptionBudget').some((pdb) => selects(pdb.spec?.selector, w.podLabels)))
      found.push({ rule: 'availability', object: id, message: 'no PodDisruptionBudget selects its pods' });
    const opsPort = (w.pod.containers ?? []).flatMap((c: Json) => c.ports ?? []).find((p: Json) => p.name === 'ops');
    const services = inNamespace('Service').filter((s) => s.spec?.selector && selects({ matchLabels: s.spec.selector }, w.podLabels));
    const opsServicePorts = services.flatMap((s) =>
      (s.spec?.ports ?? []).filter((p: Json) => p.targetPort === 'ops' || p.targetPort === opsPort?.containerPort).map((p: Json) => ({ service: s, port: p })),
    );
    const monitored = inNamespace('ServiceMonitor').some((m) =>
      opsServicePorts.some(
        ({ service, port }) => selects(m.spec?.selector, service.metadata.labels ?? {}) && (m.spec?.endpoints ?? []).some((e: Json) => e.port === port.name && (e.path ?? '/metrics') === '/metrics'),
      ),
    );
    if (!monitored) found.push({ rule: 'availability', object: id, message: 'no ServiceMonitor scrapes /metrics on its ops port' });
  }
  return found;
};

/** The Ingress keeps WebSockets open, has no sticky sessions, and matches signaling's WebAuthn origins. */
export const ingressRules: Rule = (objects) => {
  const found: Violation[] = [];
  const signaling = workloads(objects).find((w) => w.service === 'signaling');
  let origins: string[] | undefined;
  if (signaling) {
    const container = (signaling.pod.containers ?? [])[0];
    try {
      origins = serviceSpecs.signaling.settings(envValues(resolveEnv(container, signaling.namespace, objects))).signaling?.webauthnOrigins;
    } catch {
      // configRules reports it.
    }
  }
  for (const o of objects.filter((x) => x.kind === 'Ingress')) {
    const add = (message: string) => found.push({ rule: 'ingress', object: objectId(o), message });
    const annotations = o.metadata.annotations ?? {};
    for (const name of ['proxy-read-timeout', 'proxy-send-timeout']) {
      const value = Number(annotations[`nginx.ingress.kubernetes.io/${name}`]);
      if (!(value >= 3600)) add(`nginx.ingress.kubernetes.io/${name} is not at least 3600 (WebSockets would be cut)`);
    }
    if (annotations['nginx.ingress.kubernetes.io/affinity']) add('sticky sessions: sessions resume on any replica, connections need not stick');
    const tlsHosts = new Set((o.spec?.tls ?? []).flatMap((t: Json) => t.hosts ?? []));
    for (const rule of o.spec?.rules ?? []) {
      const origin = `${tlsHosts.has(rule.host) ? 'https' : 'http'}://${rule.host}`;
      if (origins && !origins.includes(origin)) add(`${origin} is not in SIGNALING_WEBAUTHN_ORIGINS (${origins.join(', ')})`);
    }
  }
  return found;
};

/** The Secret and key a file of a container comes from: a mounted Secret volume, or a Secret among a projected volume's sources. */
function fileSource(container: Json, pod: Json, file: string): { secret: string; key: string } | undefined {
  const mount = (container.volumeMounts ?? []).find((m: Json) => file.startsWith(`${m.mountPath}/`));
  const volume = (pod.volumes ?? []).find((v: Json) => v.name === mount?.name);
  if (!mount || !volume) return undefined;
  const path = file.slice(mount.mountPath.length + 1);
  const sources: Json[] = volume.secret ? [{ secret: { name: volume.secret.secretName, items: volume.secret.items } }] : (volume.projected?.sources ?? []);
  for (const source of sources) {
    if (!source.secret) continue;
    const items: Json[] | undefined = source.secret.items;
    if (!items) return { secret: source.secret.name, key: path };
    const item = items.find((i) => i.path === path);
    if (item) return { secret: source.secret.name, key: item.key };
  }
  return undefined;
}

/** The NATS identity each workload connects as. */
const natsIdentityOf = (w: Workload): string | undefined => w.service ?? ({ 'nats-provision': 'admin', residue: 'residue' } as Record<string, string>)[w.podLabels['app.kubernetes.io/name'] ?? ''];

/**
 * NATS is closed: every workload that connects reaches it over TLS (tls:// URLs), trusts the
 * internal CA, presents its client certificate and its own identity's nkey seed (Secret
 * nats-<identity>), each from a mounted Secret that has it; the public keys the servers know match
 * the seeds; the servers take connections from our workloads only.
 */
export const natsRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    const identity = natsIdentityOf(w);
    if (!identity) continue;
    const add = (message: string) => found.push({ rule: 'nats', object: objectId(w.object), message });
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === (w.service ?? w.podLabels['app.kubernetes.io/name'])) ?? w.pod.containers?.[0];
    if (!container) continue;
    const env = resolveEnv(container, w.namespace, objects, w.pod.hostNetwork === true);
    const url = env.entries.get('NATS_URL')?.value;
    if (!url) add('NATS_URL is not set');
    else if (!url.split(',').every((u) => u.trim().startsWith('tls://'))) add(`NATS_URL ${url} is not TLS (tls://)`);
    for (const variable of ['NATS_CA_FILE', 'NATS_TLS_CERT_FILE', 'NATS_TLS_KEY_FILE', 'NATS_NKEY_SEED_FILE']) {
      const file = env.entries.get(variable)?.value;
      if (!file) {
        add(`${variable} is not set: no NATS ${variable === 'NATS_NKEY_SEED_FILE' ? 'credentials' : 'TLS'}`);
        continue;
      }
      const source = fileSource(container, w.pod, file);
      if (!source) {
        add(`${variable}=${file} is not in a mounted Secret`);
        continue;
      }
      const keys = secretKeys(objects, w.namespace, source.secret);
      if (!keys?.has(source.key)) add(`${variable}=${file}: Secret ${source.secret} has no key ${source.key}`);
      if (variable === 'NATS_NKEY_SEED_FILE') {
        if (source.secret !== `nats-${identity}`) add(`${variable}=${file} comes from Secret ${source.secret}, not its own identity's (nats-${identity})`);
        const seed = keys?.get(source.key);
        const published = secretKeys(objects, 'gateway', 'nats-user-keys')?.get(identity);
        if (seed && published && nkeys.fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey() !== published.trim())
          add(`its nkey seed does not match the public key nats-user-keys gives the servers for ${identity}`);
      }
    }
  }
  const policy = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata.namespace === 'gateway' && o.spec?.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'nats');
  if (!policy) found.push({ rule: 'nats', object: 'NATS', message: 'no NetworkPolicy for the NATS pods' });
  const ours = new Set(['signaling', 'recorder', 'crm-sync', 'nats-provision', 'residue', 'nats']);
  for (const [index, rule] of (policy?.spec?.ingress ?? []).entries()) {
    // The client port (4222); monitoring ports serve KEDA and Prometheus.
    const clientPort = !rule.ports || (rule.ports as Json[]).some((p) => p.port === 4222 || p.port === 'client');
    if (!clientPort) continue;
    if (!rule.from || rule.from.length === 0) found.push({ rule: 'nats', object: objectId(policy!), message: `ingress rule ${index} admits every source to the client port` });
    for (const source of (rule.from ?? []) as Json[]) {
      if (source.namespaceSelector) found.push({ rule: 'nats', object: objectId(policy!), message: `ingress rule ${index} admits pods of other namespaces` });
      if (!source.podSelector) continue;
      const names: string[] =
        source.podSelector.matchLabels?.['app.kubernetes.io/name'] !== undefined
          ? [source.podSelector.matchLabels['app.kubernetes.io/name']]
          : (source.podSelector.matchExpressions ?? []).filter((e: Json) => e.key === 'app.kubernetes.io/name' && e.operator === 'In').flatMap((e: Json) => e.values);
      if (names.length === 0 || names.some((name) => !ours.has(name)))
        found.push({ rule: 'nats', object: objectId(policy!), message: `ingress rule ${index} admits pods that are not our services (${names.join(', ') || 'any'})` });
    }
  }
  return found;
};

export const allRules: Rule[] = [
  containerRules,
  probeRules,
  configRules,
  sfuRules,
  drainRules,
  grpcIdentityRules,
  exposureRules,
  networkPolicyRules,
  scalingRules,
  availabilityRules,
  ingressRules,
  natsRules,
];

export function checkManifests(objects: K8sObject[]): Violation[] {
  return [...checkSchemas(objects), ...allRules.flatMap((rule) => rule(objects))];
}
