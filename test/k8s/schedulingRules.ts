import { cpuCores, envValues, isTurnServer, objectId, resolveEnv, workloads, type Json, type K8sObject, type Rule, type Violation, type Workload } from './objects.js';
import { serviceSpecs } from './services.js';

/**
 * Scheduling as code (docs/kubernetes.md, "Scheduling and node tuning"): every workload names a
 * PriorityClass the rendering defines; what carries a call in progress (the SFU, coturn, the
 * recorder) is in the highest class of all, and work that can wait (delivery, the residue sweep,
 * provisioning) never preempts; the SFUs and crm-sync spread over zones; the SFU asks for one
 * whole core per worker and one for its Node.js process, so the static CPU manager does not put
 * that process on the workers' cores.
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
