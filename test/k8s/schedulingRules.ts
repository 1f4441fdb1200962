import { cpuCores, envValues, isTurnServer, objectId, resolveEnv, workloads, type Json, type K8sObject, type Rule, type Violation, type Workload } from './objects.js';
import { serviceSpecs } from './services.js';
import { parseTurnConfig } from './turnRules.js';

/**
 * Scheduling as code (docs/kubernetes.md, "Scheduling and node tuning"): every workload names a
 * PriorityClass the rendering defines; what carries a call in progress (the SFU, coturn, the
 * recorder) is in the highest class of all, and work that can wait (delivery, the residue sweep,
 * provisioning) never preempts; the SFUs and crm-sync spread over zones; the SFU asks for one
 * whole core per worker and one for its Node.js process, so the static CPU manager does not put
 * that process on the workers' cores. Where SFUs run, the media nodes' kernel settings are set
 * there too: socket buffers and the media, pipe and relay ports out of the ephemeral range.
 */

const carriesCalls = (w: Workload) => w.service === 'sfu' || w.service === 'recorder' || isTurnServer(w);
const canWait = (w: Workload) => w.service === 'crm-sync' || w.object.kind === 'CronJob' || w.object.kind === 'Job';

export const schedulingRules: Rule = (objects: K8sObject[]) => {
  const found: Violation[] = [];
  const classes = new Map(objects.filter((o) => o.kind === 'PriorityClass').map((o) => [o.metadata.name, o as Json]));
  const highest = Math.max(...[...classes.values()].map((c) => Number(c.value ?? 0)), 0);
  for (const w of workloads(objects)) {
    const id = objectId(w.object);
    const add = (message: string) => found.push({ rule: 'scheduling', object: id, message });
    const name: string | undefined = w.pod.priorityClassName;
    const priority = name ? classes.get(name) : undefined;
    if (!name) add('names no priorityClassName: the scheduler may evict it for anything');
    else if (!priority) add(`priorityClassName ${name} is not defined here`);
    else {
      if (carriesCalls(w) && Number(priority.value) < highest) add(`carries calls in progress but is in ${name} (${priority.value}), below the highest class (${highest})`);
      if (canWait(w) && priority.preemptionPolicy !== 'Never') add(`can wait for room but ${name} preempts others (preemptionPolicy ${priority.preemptionPolicy ?? 'PreemptLowerPriority'})`);
    }
    if (w.service === 'sfu' || w.service === 'crm-sync') {
      const zoneSpread = (w.pod.topologySpreadConstraints ?? []).some(
        (c: Json) => c.topologyKey === 'topology.kubernetes.io/zone' && c.labelSelector?.matchLabels?.['app.kubernetes.io/name'] === w.service,
      );
      if (!zoneSpread) add('no topology spread over zones: a zone outage could take all of them');
    }
    if (w.service === 'sfu') {
      const container = (w.pod.containers ?? []).find((c: Json) => c.name === 'sfu') ?? {};
      let workers: number | undefined;
      try {
        workers = serviceSpecs.sfu.settings(envValues(resolveEnv(container, w.namespace, objects, w.pod.hostNetwork === true))).sfu?.workers;
      } catch {
        // configRules reports it.
      }
      const requested = cpuCores(container.resources?.requests?.cpu);
      const limit = cpuCores(container.resources?.limits?.cpu);
      if (workers !== undefined && (requested !== workers + 1 || limit !== workers + 1)) {
        add(
          `asks for ${requested ?? 'no'} cores (limit ${limit ?? 'none'}) for ${workers} workers: one whole core per worker and one for the Node.js process, requested and limited alike (${workers + 1})`,
        );
      }
    }
  }
  return found;
};

/** Port ranges in ip_local_reserved_ports' form ("40000-40063,42000-42999") as [first, last] pairs. */
function parsePortRanges(text: string): Array<[number, number]> {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const [first, last = first] = part.split('-').map(Number);
      return [first!, last!] as [number, number];
    });
}
const covers = (ranges: Array<[number, number]>, first: number, last: number) => ranges.some(([a, b]) => a <= first && last <= b);
const minimumSocketBuffer = 4 * 1024 * 1024;

export const nodeTuningRules: Rule = (objects: K8sObject[]) => {
  const found: Violation[] = [];
  const all = workloads(objects);
  const sfus = all.filter((w) => w.service === 'sfu');
  if (sfus.length === 0) return found;
  const tuning = all.find((w) => w.podLabels['app.kubernetes.io/name'] === 'media-node-tuning');
  if (!tuning) return [{ rule: 'node-tuning', object: 'media pool', message: "SFUs run, but nothing sets the media nodes' socket buffers and reserved ports (media-node-tuning)" }];
  const id = objectId(tuning.object);
  const add = (message: string) => found.push({ rule: 'node-tuning', object: id, message });
  if (tuning.object.kind !== 'DaemonSet') add(`is a ${tuning.object.kind}, not a DaemonSet: some media nodes would keep the defaults`);
  if (tuning.pod.hostNetwork !== true) add("not on the host network: its sysctls would change the pod's own network namespace, not the node's");
  const sfuPool = sfus[0]!.pod.nodeSelector?.['gateway.io/pool'];
  if (tuning.pod.nodeSelector?.['gateway.io/pool'] !== sfuPool) add(`runs on pool ${tuning.pod.nodeSelector?.['gateway.io/pool'] ?? '(any)'}, not the SFUs' (${sfuPool})`);
  if (!(tuning.pod.tolerations ?? []).some((t: Json) => t.key === 'gateway.io/pool' && t.effect === 'NoSchedule')) add("does not tolerate the media pool's taint");
  const init = (tuning.pod.initContainers ?? []).find((c: Json) => c.name === 'sysctls');
  if (!init) {
    add('no sysctls init container');
    return found;
  }
  const env = envValues(resolveEnv(init, tuning.namespace, objects, true));
  const buffer = Number(env.SOCKET_BUFFER_BYTES);
  if (!(buffer >= minimumSocketBuffer))
    add(`socket buffers of ${env.SOCKET_BUFFER_BYTES ?? '(unset)'} bytes: below ${minimumSocketBuffer}, a burst of video to many subscribers is dropped before the worker reads it`);
  const reserved = parsePortRanges(env.RESERVED_PORTS ?? '');
  for (const w of sfus) {
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === 'sfu') ?? {};
    let sfu: { rtcPortMin: number; workers: number; pipePortMin: number; pipePortMax: number } | undefined;
    try {
      sfu = serviceSpecs.sfu.settings(envValues(resolveEnv(container, w.namespace, objects, true))).sfu;
    } catch {
      // configRules reports it.
    }
    if (!sfu) continue;
    if (!covers(reserved, sfu.rtcPortMin, sfu.rtcPortMin + sfu.workers - 1))
      add(`the SFU's media ports ${sfu.rtcPortMin}-${sfu.rtcPortMin + sfu.workers - 1} are not all reserved (RESERVED_PORTS ${env.RESERVED_PORTS ?? 'unset'})`);
    if (!covers(reserved, sfu.pipePortMin, sfu.pipePortMax)) add(`the SFU's pipe ports ${sfu.pipePortMin}-${sfu.pipePortMax} are not all reserved`);
  }
  if (all.some(isTurnServer)) {
    const config = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.namespace === sfus[0]!.namespace && typeof o.data?.['turnserver.conf'] === 'string');
    const options = config ? parseTurnConfig(config.data['turnserver.conf']) : undefined;
    const min = Number(options?.get('min-port')?.at(-1) ?? 49152);
    const max = Number(options?.get('max-port')?.at(-1) ?? 65535);
    if (!covers(reserved, min, max)) add(`coturn's relay ports ${min}-${max} are not all reserved`);
  }
  return found;
};
