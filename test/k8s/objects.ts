import { isServiceName, type Env, type ServiceName } from './services.js';

/**
 * Rendered Kubernetes objects as the deployment rules read them: the workloads and their pods,
 * and each container's environment resolved the way the kubelet builds it.
 */

// Rendered manifests are plain JSON of many kinds; the rules read them field by field.
export type Json = any;

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

/** A deployment rule: from the rendered objects to the violations found. */
export type Rule = (objects: K8sObject[]) => Violation[];

/** Where the downward API is pretended to point while checking values. */
export const samplePodIp = '10.244.7.9';
export const sampleHostIp = '10.0.7.21';

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

/** The TURN server's pods (coturn, k8s/base/turn.yaml): not one of our services, checked by turnRules. */
export const turnServerName = 'coturn';
export const isTurnServer = (w: Workload) => w.podLabels['app.kubernetes.io/name'] === turnServerName;

export const containersOf = (pod: Json): Json[] => [...(pod.initContainers ?? []), ...(pod.containers ?? [])];

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
export function secretKeys(objects: K8sObject[], namespace: string, name: string): Map<string, string | undefined> | undefined {
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

/** What the kubelet sets in every container besides the manifests' environment: the API server's address. */
const kubeletEnv: Readonly<Record<string, string>> = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };

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

/**
 * The values the manifests hold, with what the kubelet adds to every container, for the
 * service's own parser; values from outside are left to the defaults.
 */
export function envValues(env: ResolvedEnv): Env {
  const values: Env = { ...kubeletEnv };
  for (const [name, entry] of env.entries) if (entry.value !== undefined) values[name] = entry.value;
  return values;
}

/** Kubernetes quantities of CPU in cores. */
export function cpuCores(quantity: string | number | undefined): number | undefined {
  if (quantity === undefined) return undefined;
  const text = String(quantity);
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text);
}

/** Whether a label selector (matchLabels, matchExpressions) selects these labels. */
export const selects = (selector: Json, labels: Record<string, string>) =>
  Object.entries<string>(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
  (selector?.matchExpressions ?? []).every((e: Json) => (e.operator === 'In' ? e.values.includes(labels[e.key]) : e.operator === 'Exists' ? e.key in labels : true));
