import { schemaVariables, serviceSpecs, type ServiceName, type ServiceSettings } from './services.js';
import { envValues, objectId, resolveEnv, sampleHostIp, samplePodIp, workloads, type Json, type ResolvedEnv, type Rule, type Violation, type Workload } from './objects.js';

/** The rules for the media nodes: the SFU's placement, ports and drain, and the preStop hooks that drain the SFU and the recorder. */

/** The media node pool the SFU must run on, by label and taint. */
export const mediaPool = { key: 'gateway.io/pool', value: 'media' };
/** Where the SFU finds the address it announces at start-up, besides being told it (explicit, the default). */
const discoveredSources = ['aws', 'gcp', 'azure', 'stun'];

/**
 * The address browsers send media to: given (SFU_ANNOUNCED_ADDRESS: the node's from the downward
 * API, or an address or name), or found at start-up from the cloud's metadata or by STUN
 * (SFU_ANNOUNCED_ADDRESS_SOURCE, with SFU_STUN_SERVERS as host:port for stun), never both.
 */
function announcedAddressProblems(env: ResolvedEnv): string[] {
  const source = env.entries.get('SFU_ANNOUNCED_ADDRESS_SOURCE')?.value ?? 'explicit';
  const address = env.entries.get('SFU_ANNOUNCED_ADDRESS')?.value;
  if (source === 'explicit') return address ? [] : ['SFU_ANNOUNCED_ADDRESS is not set'];
  if (!discoveredSources.includes(source)) return [`SFU_ANNOUNCED_ADDRESS_SOURCE ${source} is none of explicit, ${discoveredSources.join(', ')}`];
  if (env.entries.has('SFU_ANNOUNCED_ADDRESS')) return [`SFU_ANNOUNCED_ADDRESS is set while the address is found by ${source}`];
  if (source !== 'stun') return [];
  const servers = (env.entries.get('SFU_STUN_SERVERS')?.value ?? '').split(',').filter(Boolean);
  if (servers.length === 0) return ['SFU_ANNOUNCED_ADDRESS_SOURCE stun without SFU_STUN_SERVERS'];
  return servers.filter((s) => !/^[A-Za-z0-9.-]+:\d{1,5}$/.test(s)).map((s) => `SFU_STUN_SERVERS entry ${s} is not host:port`);
}

/** Seconds beyond the drain the SFU needs to tell its clients to rejoin and exit. */
export const sfuShutdownMargin = 30;

/**
 * What the SFU and coturn share as pods of the media pool: its label and taint, and one pod per
 * node (required anti-affinity) where a Deployment could place two on one node's host ports.
 */
export function mediaPoolPlacement(w: Workload, what: string): string[] {
  const problems: string[] = [];
  if (w.pod.nodeSelector?.[mediaPool.key] !== mediaPool.value) problems.push(`no nodeSelector ${mediaPool.key}=${mediaPool.value}`);
  const tolerated = (w.pod.tolerations ?? []).some(
    (t: Json) => t.key === mediaPool.key && (t.operator === 'Exists' || t.value === mediaPool.value) && (t.effect === undefined || t.effect === 'NoSchedule'),
  );
  if (!tolerated) problems.push(`does not tolerate the media pool's taint ${mediaPool.key}=${mediaPool.value}:NoSchedule`);
  if (w.object.kind === 'Deployment') {
    const name = w.podLabels['app.kubernetes.io/name'];
    const antiAffinity = (w.pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []).some(
      (term: Json) => term.topologyKey === 'kubernetes.io/hostname' && term.labelSelector?.matchLabels?.['app.kubernetes.io/name'] === name,
    );
    if (!antiAffinity) problems.push(`a Deployment without required anti-affinity per node: two ${what}s on one node would want the same ports`);
  }
  return problems;
}

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
    mediaPoolPlacement(w, 'SFU').forEach(add);
    announcedAddressProblems(env).forEach(add);
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
