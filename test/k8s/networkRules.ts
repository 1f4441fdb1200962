import { serviceSpecs } from './services.js';
import { containersOf, envValues, isTurnServer, objectId, resolveEnv, selects, workloads, type Json, type K8sObject, type Rule, type Violation } from './objects.js';

/** The rules for what is reachable, and from where: Services, the Ingress, host ports and NetworkPolicies. */

const monitoringNamespace = 'monitoring';

const publicSources = new Set(['0.0.0.0/0', '::/0']);

/** The port of signaling's Service that leads to its http container port. */
const signalingHttpPort = (objects: K8sObject[]): number | undefined =>
  objects.find((o) => o.kind === 'Service' && o.metadata.name === 'signaling')?.spec?.ports?.find((p: Json) => p.name === 'http')?.port;

/** The port of a Service (crm-sync, routing) that leads to its tenants' admin API. */
const adminPort = (objects: K8sObject[], service: string): number | undefined =>
  objects.find((o) => o.kind === 'Service' && o.metadata.name === service)?.spec?.ports?.find((p: Json) => p.name === 'http')?.port;

/** The services whose admin API (their http port, under /v1/ only) may face the tenants' backends. */
const adminApis = ['crm-sync', 'routing'];

/** Whether an Ingress backend is signaling's http port, or an admin API port under /v1/ only. */
function publicBackend(objects: K8sObject[], backend: Json, path: string | undefined): boolean {
  const port = backend.service?.port;
  const is = (name: string, number: number | undefined) => backend.service?.name === name && (port?.name === 'http' || (number !== undefined && port?.number === number));
  if (is('signaling', signalingHttpPort(objects))) return true;
  return adminApis.some((service) => is(service, adminPort(objects, service))) && path?.startsWith('/v1/') === true;
}

/** Only signaling and the admin APIs of crm-sync and routing (through Ingresses), the SFU's media ports and coturn face the internet; gRPC and ops ports never. */
export const exposureRules: Rule = (objects) => {
  const found: Violation[] = [];
  const add = (o: K8sObject, message: string) => found.push({ rule: 'exposure', object: objectId(o), message });
  for (const o of objects) {
    if (o.kind === 'Service') {
      if (o.spec?.type === 'LoadBalancer' || o.spec?.type === 'NodePort') add(o, `a ${o.spec.type} Service`);
      if ((o.spec?.externalIPs ?? []).length > 0) add(o, 'has external IPs');
    }
    if (o.kind === 'Ingress') {
      const routes: Array<{ backend: Json; path?: string }> = [
        ...(o.spec?.defaultBackend ? [{ backend: o.spec.defaultBackend }] : []),
        ...(o.spec?.rules ?? []).flatMap((r: Json) => (r.http?.paths ?? []).map((p: Json) => ({ backend: p.backend, path: p.path }))),
      ];
      for (const { backend, path } of routes) {
        if (!publicBackend(objects, backend, path))
          add(
            o,
            `routes ${path ?? 'everything'} to ${backend.service?.name ?? 'a resource'} port ${backend.service?.port?.name ?? backend.service?.port?.number}: only signaling's http port and the admin APIs (/v1/) are public`,
          );
      }
    }
  }
  for (const w of workloads(objects)) {
    for (const c of containersOf(w.pod)) {
      const hostPorts = (c.ports ?? []).filter((p: Json) => p.hostPort !== undefined);
      if (w.service !== 'sfu') {
        // coturn too: its TURN ports and relay range (turnRules); and the media nodes' tuning,
        // whose sysctls are the node's network namespace's (no ports: the loop below holds it to that).
        const nodeTuning = w.podLabels['app.kubernetes.io/name'] === 'media-node-tuning' && containersOf(w.pod).every((x: Json) => (x.ports ?? []).length === 0);
        if (w.pod.hostNetwork && !isTurnServer(w) && !nodeTuning) add(w.object, "on the host network: only the SFU, coturn and the media nodes' tuning (no ports) may be");
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

/**
 * Where services that talk to NATS alone may go: NATS's client port, DNS, and the trace
 * collector. Any other egress a policy gives their pods is a way out they do not need.
 */
const natsOnly = ['routing'];

/** NodeLocal DNSCache's link-local address, where pods on nodes that run it send DNS. */
const nodeLocalDnsCidr = '169.254.20.10/32';

function allowedNatsOnlyEgress(rule: Json): boolean {
  const to: Json[] = rule.to ?? [];
  const ports: Json[] = rule.ports ?? [];
  if (to.length === 0 || ports.length === 0) return false;
  const toNats = to.every((t) => t.podSelector?.matchLabels?.['app.kubernetes.io/name'] === 'nats' && !t.namespaceSelector && !t.ipBlock);
  const toDns = to.every(
    (t) =>
      (t.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'kube-system' && t.podSelector?.matchLabels?.['k8s-app'] === 'kube-dns') ||
      (t.ipBlock?.cidr === nodeLocalDnsCidr && !t.ipBlock.except),
  );
  const toCollector = to.every((t) => t.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'observability' && !t.podSelector && !t.ipBlock);
  const only = (port: number, protocols: string[]) => ports.every((p) => p.port === port && p.endPort === undefined && protocols.includes(p.protocol ?? 'TCP'));
  return (toNats && only(4222, ['TCP'])) || (toDns && only(53, ['UDP', 'TCP'])) || (toCollector && only(4318, ['TCP']));
}

/** routing talks to NATS only: its pods' egress goes to NATS, DNS and the trace collector, nowhere else. */
export const egressRules: Rule = (objects) => {
  const found: Violation[] = [];
  for (const w of workloads(objects)) {
    if (!w.service || !natsOnly.includes(w.service)) continue;
    const policies = objects.filter((o) => o.kind === 'NetworkPolicy' && o.metadata.namespace === w.namespace && selects(o.spec?.podSelector, w.podLabels));
    if (!policies.some((p) => (p.spec?.policyTypes ?? []).includes('Egress'))) found.push({ rule: 'egress', object: objectId(w.object), message: 'no NetworkPolicy limits its egress' });
    for (const p of policies) {
      for (const [index, rule] of (p.spec?.egress ?? []).entries()) {
        if (!allowedNatsOnlyEgress(rule))
          found.push({ rule: 'egress', object: objectId(w.object), message: `${objectId(p)} egress rule ${index} lets it reach more than NATS, DNS and the trace collector` });
      }
    }
  }
  return found;
};

/** signaling's Ingress keeps WebSockets open, has no sticky sessions, and matches signaling's WebAuthn origins; every Ingress with TLS redirects plain HTTP. */
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
    const backends = (o.spec?.rules ?? []).flatMap((r: Json) => (r.http?.paths ?? []).map((p: Json) => p.backend?.service?.name));
    if (!backends.includes('signaling')) {
      // The admin API: credentials in every request, so with TLS plain HTTP is only a redirect.
      if ((o.spec?.tls ?? []).length > 0 && annotations['nginx.ingress.kubernetes.io/force-ssl-redirect'] !== 'true') add('TLS without nginx.ingress.kubernetes.io/force-ssl-redirect');
      continue;
    }
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

/** Whether an HTTPRoute rule's timeout (a Gateway API duration; 0s: none) is at least this many seconds. */
function routeTimeoutAtLeast(duration: string | undefined, seconds: number): boolean {
  if (duration === undefined) return false;
  const parts = [...duration.matchAll(/(\d+)(h|ms|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== duration) return false;
  const total = parts.reduce((sum, [, n, unit]) => sum + Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit as 'h' | 'm' | 's' | 'ms'], 0);
  return total === 0 || total >= seconds;
}

/**
 * The Gateway API edge (HTTPRoutes): only signaling's http port and the admin APIs under /v1/
 * are routed; signaling's route keeps a call's WebSocket for the hour the Ingress allowed (its
 * request timeouts at least 3600 s, or none) on hosts that are signaling's WebAuthn origins.
 */
export const routeRules: Rule = (objects) => {
  const found: Violation[] = [];
  const signaling = workloads(objects).find((w) => w.service === 'signaling');
  // As signaling reads it (a comma-separated list); configRules checks the value itself.
  const origins = signaling ? resolveEnv(signaling.pod.containers[0], signaling.namespace, objects).entries.get('SIGNALING_WEBAUTHN_ORIGINS')?.value?.split(',') : undefined;
  for (const o of objects.filter((x) => x.kind === 'HTTPRoute')) {
    const add = (message: string) => found.push({ rule: 'route', object: objectId(o), message });
    if ((o.spec?.parentRefs ?? []).length === 0) add('attached to no Gateway (parentRefs)');
    let routesSignaling = false;
    for (const [index, rule] of (o.spec?.rules ?? []).entries()) {
      const paths: Array<string | undefined> = (rule.matches ?? [{}]).map((m: Json) => (m.path?.type === 'RegularExpression' ? undefined : (m.path?.value ?? '/')));
      for (const backend of rule.backendRefs ?? []) {
        const toSignaling = backend.name === 'signaling' && backend.port === signalingHttpPort(objects) && (backend.kind ?? 'Service') === 'Service';
        const toAdmin = adminApis.some((service) => backend.name === service && backend.port === adminPort(objects, service) && (backend.kind ?? 'Service') === 'Service');
        if (toSignaling) routesSignaling = true;
        for (const path of paths) {
          if (toSignaling || (toAdmin && path?.startsWith('/v1/'))) continue;
          add(`rule ${index} routes ${path ?? 'a regular expression'} to ${backend.name} port ${backend.port}: only signaling's http port and the admin APIs (/v1/) are public`);
        }
        if (toSignaling && !(routeTimeoutAtLeast(rule.timeouts?.request, 3600) && routeTimeoutAtLeast(rule.timeouts?.backendRequest ?? rule.timeouts?.request, 3600)))
          add(`rule ${index}: signaling's request timeouts (${rule.timeouts?.request ?? 'the implementation default'}) are under 3600 s: a call's WebSocket would be cut`);
      }
    }
    if (routesSignaling && origins) {
      for (const host of o.spec?.hostnames ?? []) {
        if (!origins.some((origin) => URL.canParse(origin) && new URL(origin).hostname === host)) add(`host ${host} is not in SIGNALING_WEBAUTHN_ORIGINS (${origins.join(', ')})`);
      }
    }
  }
  return found;
};

/** The SFU's flows that network policies must let through from and to its node's address. */
const nodeFlows = [
  { from: 'signaling', direction: 'egress', port: 50051, protocol: 'TCP', what: "signaling to the SFU's gRPC" },
  { from: 'recorder', direction: 'egress', port: 50051, protocol: 'TCP', what: "the recorder to the SFU's gRPC" },
  { from: 'recorder', direction: 'ingress', port: 40000, protocol: 'UDP', what: 'the recording taps from the SFU' },
  { from: 'nats', direction: 'ingress', port: 4222, protocol: 'TCP', what: 'the SFU to NATS' },
] as const;

/** Whether a port list (NetworkPolicy or Cilium) covers this port and protocol. */
const portsCover = (ports: Json[], port: number, protocol: string) =>
  ports.some((p) => {
    const start = Number(p.port);
    return start <= port && port <= (p.endPort ?? start) && [protocol, 'ANY'].includes(p.protocol ?? (p.port === undefined ? 'ANY' : 'TCP'));
  });

/**
 * The SFU is on the host network: its traffic has the node's address, which a NetworkPolicy
 * names by ipBlock (generic CNIs, Calico) and Cilium only by entity (host, remote-node), never by
 * CIDR. Each of its flows is allowed one way or the other, and with Cilium there are no ipBlock
 * rules for them that would silently match nothing.
 */
export const nodeFlowRules: Rule = (objects) => {
  const found: Violation[] = [];
  const cilium = objects.filter((o) => o.kind === 'CiliumNetworkPolicy');
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const sfuRuns = workloads(objects).some((w) => w.service === 'sfu' && w.pod.hostNetwork);
  if (!sfuRuns) return found;
  for (const flow of nodeFlows) {
    const labels = { 'app.kubernetes.io/name': flow.from, ...(flow.from === 'nats' ? { 'app.kubernetes.io/instance': 'nats' } : {}) };
    const byCidr = policies.some(
      (p) =>
        p.metadata.namespace === 'gateway' &&
        selects(p.spec?.podSelector, labels) &&
        (p.spec?.[flow.direction] ?? []).some(
          (r: Json) =>
            (r[flow.direction === 'egress' ? 'to' : 'from'] ?? []).some((peer: Json) => peer.ipBlock && !publicSources.has(peer.ipBlock.cidr) && !peer.ipBlock.except) &&
            portsCover(r.ports ?? [], flow.port, flow.protocol),
        ),
    );
    const entityKey = flow.direction === 'egress' ? 'toEntities' : 'fromEntities';
    const byEntity = cilium.some(
      (p) =>
        p.metadata.namespace === 'gateway' &&
        selects(p.spec?.endpointSelector, labels) &&
        (p.spec?.[flow.direction] ?? []).some(
          (r: Json) =>
            ['host', 'remote-node'].every((e) => (r[entityKey] ?? []).includes(e)) &&
            portsCover(
              (r.toPorts ?? []).flatMap((t: Json) => t.ports ?? []),
              flow.port,
              flow.protocol,
            ),
        ),
    );
    if (cilium.length > 0 && byCidr)
      found.push({ rule: 'node-flows', object: `flow ${flow.what}`, message: 'allowed by ipBlock beside CiliumNetworkPolicies: Cilium matches node addresses by entity, never by CIDR' });
    if (!byCidr && !byEntity) found.push({ rule: 'node-flows', object: `flow ${flow.what}`, message: `no policy lets it through from the nodes (port ${flow.port}/${flow.protocol})` });
  }
  return found;
};
