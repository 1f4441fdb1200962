import { crmSyncDurableConsumers, recorderConsumesJetStream, type ServiceName } from './services.js';
import { objectId, selects, workloads, type Json, type Rule, type Violation } from './objects.js';

/** The rules for replicas: what scales each service, what keeps enough of them up, and what scrapes them. */

/**
 * Services run at a count fixed in their Deployment rather than by an autoscaler: routing decides
 * each tenant on one replica whatever the count, so load does not call for more replicas.
 */
const fixedCount: ServiceName[] = ['routing'];

/** Whether a pod's affinity keeps two pods of these labels off one node (required, on the node's hostname). */
const spreadOverNodes = (pod: Json, podLabels: Record<string, string>) =>
  (pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []).some(
    (term: Json) => term.topologyKey === 'kubernetes.io/hostname' && !term.namespaceSelector && selects(term.labelSelector, podLabels),
  );

/**
 * Each service scales by something of its own, never to zero; crm-sync on the lag of the durable
 * consumers its code holds. A service of fixed count sets its replicas, and more than one never
 * share a node.
 */
export const scalingRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    if (!w.service || w.object.kind !== 'Deployment') continue;
    const id = objectId(w.object);
    const add = (message: string) => found.push({ rule: 'scaling', object: id, message });
    if (fixedCount.includes(w.service)) {
      const autoscaled = objects.some(
        (o) => (o.kind === 'HorizontalPodAutoscaler' || o.kind === 'ScaledObject') && o.metadata.namespace === w.namespace && o.spec?.scaleTargetRef?.name === w.object.metadata.name,
      );
      if (autoscaled) add(`an autoscaler scales it: ${w.service} runs a fixed count`);
      const replicas = w.object.spec?.replicas;
      if (replicas === undefined || replicas < 1) add(`spec.replicas is ${replicas ?? 'not set'}: ${w.service} runs a fixed count of at least one`);
      if (replicas > 1 && !spreadOverNodes(w.pod, w.podLabels)) add(`${replicas} replicas without a required anti-affinity on kubernetes.io/hostname: one node could take them all`);
      continue;
    }
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

/** Services whose pods drain when removed (calls, recordings): a fallback must never scale them down. */
const drainedOnScaleDown: ServiceName[] = ['sfu', 'recorder'];

/**
 * KEDA without a word: a scaler whose source fails, or a Prometheus query that comes back empty
 * (read as zero by default), leaves a service at whatever count it had or at its minimum. Every
 * ScaledObject has a fallback (failureThreshold, replicas within its bounds); every trigger is
 * one the fallback takes (not cpu or memory, metricType AverageValue); every Prometheus trigger
 * treats an empty answer as an error (ignoreNullValues "false"), so the fallback applies. For
 * services that drain, the fallback never goes below the running count (currentReplicasIfHigher
 * or currentReplicas).
 */
export const autoscalerFallbackRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const o of objects.filter((x) => x.kind === 'ScaledObject')) {
    const add = (message: string) => found.push({ rule: 'fallback', object: objectId(o), message });
    const spec = o.spec ?? {};
    const fallback = spec.fallback;
    if (!fallback) add('no fallback: when its scaler fails the service stays where it was, or at its minimum');
    else {
      if (!(fallback.failureThreshold >= 1)) add(`fallback.failureThreshold is ${fallback.failureThreshold ?? 'not set'}`);
      const min = spec.minReplicaCount ?? 0;
      const max = spec.maxReplicaCount ?? 100;
      if (!(fallback.replicas >= Math.max(min, 1) && fallback.replicas <= max))
        add(`fallback.replicas ${fallback.replicas ?? '(not set)'} is not between minReplicaCount ${min} and maxReplicaCount ${max}`);
      const target = workloads(objects).find((w) => w.object.kind === 'Deployment' && w.namespace === o.metadata.namespace && w.object.metadata.name === spec.scaleTargetRef?.name);
      const behavior = fallback.behavior ?? 'static';
      if (target?.service && drainedOnScaleDown.includes(target.service) && behavior !== 'currentReplicasIfHigher' && behavior !== 'currentReplicas')
        add(`fallback.behavior ${behavior} may scale ${target.service} down, which drains calls on a guess: use currentReplicasIfHigher`);
    }
    for (const [i, t] of (spec.triggers ?? []).entries()) {
      const trigger = `trigger ${i} (${t.type})`;
      if (t.type === 'cpu' || t.type === 'memory') add(`${trigger}: KEDA's fallback does not take cpu or memory triggers (read the containers' CPU from Prometheus instead)`);
      else if (t.metricType !== 'AverageValue') add(`${trigger}: metricType is ${t.metricType ?? 'not set'}, not AverageValue, which the fallback needs`);
      if (t.type === 'prometheus' && t.metadata?.ignoreNullValues !== 'false')
        add(`${trigger}: ignoreNullValues is not "false": an empty answer would read as zero instead of failing over to the fallback`);
    }
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
    const budgets = inNamespace('PodDisruptionBudget').filter((pdb) => selects(pdb.spec?.selector, w.podLabels));
    if (budgets.length === 0) found.push({ rule: 'availability', object: id, message: 'no PodDisruptionBudget selects its pods' });
    // A fixed count at or under the budget's minimum: no pod may ever be evicted, no node drained.
    const replicas = w.object.spec?.replicas;
    for (const pdb of budgets) {
      if (typeof replicas === 'number' && typeof pdb.spec?.minAvailable === 'number' && pdb.spec.minAvailable >= replicas)
        found.push({ rule: 'availability', object: id, message: `${replicas} replica(s) under ${objectId(pdb)} with minAvailable ${pdb.spec.minAvailable}: no eviction is ever allowed` });
    }
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
