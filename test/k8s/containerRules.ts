import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SECRET_VARIABLES } from '@gateway/common';
import { downwardHelpers, knownVariable, serviceSpecs, tenantNames, type ServiceSettings } from './services.js';
import { containersOf, cpuCores, envValues, objectId, resolveEnv, secretKeys, workloads, type Json, type Rule, type Violation } from './objects.js';

/** The rules for every container, its probes, and each service's configuration as its environment gives it. */

let standInDir: string | undefined;
/** A file holding a Secret's value, for a config reader that opens the file it is given. */
function secretStandInFile(value: string): string {
  standInDir ??= mkdtempSync(path.join(tmpdir(), 'gateway-k8s-'));
  const file = path.join(standInDir, createHash('sha256').update(value).digest('hex'));
  writeFileSync(file, value, { mode: 0o600 });
  return file;
}

/** Seconds a stopping recorder gets after its drain to assemble and store what still runs. */
const recorderAssemblyMargin = 300;

/**
 * The media nodes' tuning (templates/media-node-tuning.yaml): an init container named sysctls
 * running a shell script whose every write goes to /proc/sys/net/, read-only root, small limits.
 */
export function isNodeTuningSysctls(podLabels: Record<string, string>, c: Json): boolean {
  if (podLabels['app.kubernetes.io/name'] !== 'media-node-tuning' || c.name !== 'sysctls') return false;
  const [shell, flag, script] = c.command ?? [];
  if (shell !== 'sh' || flag !== '-c' || typeof script !== 'string') return false;
  const writes = [...script.matchAll(/>\s*("?)([^\s";]+)\1/g)].map((m) => m[2]!);
  return writes.length > 0 && writes.every((target) => target.startsWith('/proc/sys/net/')) && c.securityContext?.readOnlyRootFilesystem === true && c.resources?.limits?.cpu !== undefined;
}

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
      // The one privileged container allowed: the media nodes' sysctls (schedulingRules checks what it writes).
      if (isInit && isNodeTuningSysctls(w.podLabels, c)) continue;
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

/** The longest a failed liveness or startup probe may wait for its container to stop. */
const probeGraceLimitSeconds = 60;
/** What a Deployment's rollout is judged over when it does not say (progressDeadlineSeconds). */
const defaultProgressDeadlineSeconds = 600;

/**
 * Long grace periods are for draining, not for hung processes: where a pod's grace period is
 * longer than probeGraceLimitSeconds, its liveness and startup probes set their own shorter
 * terminationGracePeriodSeconds, so a process the probe finds hung is stopped within it instead
 * of holding its node for the drain's half hour or more. And a Deployment whose old pods drain
 * longer than the rollout is judged over (progressDeadlineSeconds) would report every rollout
 * failed: it must judge over longer than the grace period.
 */
export const graceRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    const id = objectId(w.object);
    const grace: number = w.pod.terminationGracePeriodSeconds ?? 30;
    if (grace > probeGraceLimitSeconds) {
      for (const c of w.pod.containers ?? []) {
        for (const kind of ['livenessProbe', 'startupProbe'] as const) {
          const probe = c[kind];
          if (!probe) continue;
          const probeGrace = probe.terminationGracePeriodSeconds;
          if (probeGrace === undefined || probeGrace > probeGraceLimitSeconds)
            found.push({
              rule: 'grace',
              object: id,
              message: `container ${c.name}: the ${kind} has ${probeGrace === undefined ? 'no terminationGracePeriodSeconds' : `terminationGracePeriodSeconds ${probeGrace}`}: a hung process would get the pod's ${grace} s (at most ${probeGraceLimitSeconds})`,
            });
        }
      }
    }
    if (w.object.kind === 'Deployment') {
      const deadline: number = w.object.spec?.progressDeadlineSeconds ?? defaultProgressDeadlineSeconds;
      if (deadline <= grace)
        found.push({
          rule: 'grace',
          object: id,
          message: `progressDeadlineSeconds ${deadline} is not longer than terminationGracePeriodSeconds ${grace}: rollouts would be reported failed while old pods drain`,
        });
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
    // A variable naming a file must name a key of a Secret mounted whole (the kubelet never
    // updates a subPath mount, so a rotated certificate or key would not reach the service).
    const mountedSecretFile = (name: string): { value: string | undefined } | undefined => {
      const file = env.entries.get(name)?.value ?? '';
      const mount = (container.volumeMounts ?? []).find((m: Json) => file === m.mountPath || file.startsWith(`${m.mountPath}/`));
      const volume = (w.pod.volumes ?? []).find((v: Json) => v.name === mount?.name);
      if (!volume?.secret) return void add(`${name}=${file} is not in a mounted Secret`);
      if (mount.subPath) return void add(`${name}=${file} is mounted with subPath: the kubelet never updates it, so a renewed file would not be seen`);
      const relative = file.slice(mount.mountPath.length + 1);
      const key = (volume.secret.items as Json[] | undefined)?.find((item) => item.path === relative)?.key ?? relative;
      const keys = secretKeys(objects, w.namespace, volume.secret.secretName);
      if (!keys?.has(key)) return void add(`${name}=${file}: Secret ${volume.secret.secretName} has no such key`);
      return { value: keys.get(key) };
    };
    // Keys and tenants' secrets never as variables: read once (a rotation would need a restart),
    // and inherited by any child process. The list is the services' own (SECRET_VARIABLES).
    for (const name of SECRET_VARIABLES) {
      if (env.entries.has(name)) add(`${name} is an environment variable: mount the Secret and set ${name}_FILE (taken up when it changes, never inherited by a child process)`);
    }
    // The service parses its configuration with the secret files' contents as the manifests give them.
    const values = envValues(env);
    const fileContents = new Map<string, string | undefined>();
    for (const name of SECRET_VARIABLES) {
      if (!env.entries.has(`${name}_FILE`)) continue;
      const file = mountedSecretFile(`${name}_FILE`);
      delete values[`${name}_FILE`];
      if (file?.value !== undefined) values[name] = file.value;
      // Where the secret store holds the KMS aliases, a stand-in of their shape with one for each
      // tenant the service knows (the built-in "demo" one where the store holds the tenants too):
      // the service needs them to start with GATEWAY_KEYRING=kms (a missing key is caught above).
      else if (file && name === 'GATEWAY_KMS_KEYS') {
        const tenants = (values.GATEWAY_TENANTS !== undefined ? tenantNames(values.GATEWAY_TENANTS) : undefined) ?? ['demo'];
        values[name] = JSON.stringify(Object.fromEntries(tenants.map((tenant) => [tenant, `alias/gateway/${tenant}`])));
      }
      fileContents.set(name, file?.value);
    }
    // Signaling reads the secret it shares with coturn as it parses: the Secret's value, or a
    // stand-in of the length it needs where the secret store holds it.
    if (env.entries.has('SIGNALING_TURN_SECRET_FILE')) {
      const file = mountedSecretFile('SIGNALING_TURN_SECRET_FILE');
      values.SIGNALING_TURN_SECRET_FILE = secretStandInFile(file?.value ?? 'x'.repeat(48));
    }
    let settings: ServiceSettings | undefined;
    try {
      settings = serviceSpecs[w.service].settings(values);
    } catch (error) {
      add(`${w.service} would refuse its configuration: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (env.entries.get('OTEL_SERVICE_NAME')?.value !== w.service) add(`OTEL_SERVICE_NAME is not "${w.service}"`);
    if (!env.entries.get('OTEL_EXPORTER_OTLP_ENDPOINT')?.value) add('OTEL_EXPORTER_OTLP_ENDPOINT is not set');
    const tlsFiles = ['GRPC_TLS_CA_FILE', 'GRPC_TLS_CERT_FILE', 'GRPC_TLS_KEY_FILE'];
    const tlsSet = tlsFiles.filter((name) => env.entries.has(name));
    if (tlsSet.length !== 0 && tlsSet.length !== 3) add(`gRPC TLS needs all of ${tlsFiles.join(', ')} or none; set: ${tlsSet.join(', ')}`);
    for (const name of tlsSet) mountedSecretFile(name);
    const tenants = fileContents.get('GATEWAY_TENANTS') ?? env.entries.get('GATEWAY_TENANTS')?.value;
    const keys = fileContents.get('GATEWAY_TENANT_KEYS') ?? env.entries.get('GATEWAY_TENANT_KEYS')?.value;
    if (tenants !== undefined && keys !== undefined) {
      let keyed: string[] = [];
      try {
        keyed = Object.keys(JSON.parse(keys) as object);
      } catch {
        // The service's own parse (above) reports a malformed value.
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
