import { crmSyncDurableConsumers, recorderConsumesJetStream } from './services.js';
import { objectId, selects, workloads, type Json, type Rule, type Violation } from './objects.js';

/** The rules for replicas: what scales each service, what keeps enough of them up, and what scrapes them. */

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
