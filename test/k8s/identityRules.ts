import { nkeys } from '@nats-io/transport-node';
import type { ServiceName } from './services.js';
import { objectId, resolveEnv, secretKeys, workloads, type Json, type K8sObject, type Rule, type Violation, type Workload } from './objects.js';

/** The rules for who a workload is to its peers: its gRPC certificate, its NATS credentials, and its Kubernetes service account. */

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
  const ours = new Set(['signaling', 'recorder', 'crm-sync', 'routing', 'nats-provision', 'residue', 'nats']);
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

/** What the SFU's service account is for: patching its own Pod's deletion cost. */
const sfuGrant = { apiGroups: [''], resources: ['pods'], verbs: ['patch'] };

/**
 * Who may speak to the Kubernetes API. Only the SFU has a token mounted (automountServiceAccountToken,
 * from the pod or else its ServiceAccount, true by default): it keeps its Pod's deletion cost. It
 * runs as its own ServiceAccount, named by the downward API (POD_NAME, POD_NAMESPACE), and that
 * account is bound, in its own namespace only, to patching pods and nothing more: no other verb,
 * resource, API group, subresource or wildcard, and no ClusterRoleBinding.
 */
export const serviceAccountRules: Rule = (objects) => {
  const found: Violation[] = [];
  const accountOf = (namespace: string, name: string) => objects.find((o) => o.kind === 'ServiceAccount' && (o.metadata.namespace ?? 'default') === namespace && o.metadata.name === name);
  for (const w of workloads(objects)) {
    const add = (message: string) => found.push({ rule: 'service-accounts', object: objectId(w.object), message });
    const accountName: string = w.pod.serviceAccountName ?? 'default';
    const account = accountOf(w.namespace, accountName);
    const mounted = w.pod.automountServiceAccountToken ?? account?.automountServiceAccountToken ?? true;
    if (w.service !== 'sfu') {
      if (mounted) add(`an API token is mounted (automountServiceAccountToken): only the SFU speaks to the Kubernetes API`);
      continue;
    }
    if (!mounted) add('no API token is mounted: the SFU cannot keep its Pod deletion cost');
    if (accountName === 'default' || !account)
      add(`runs as ${accountName === 'default' ? 'the default ServiceAccount' : `ServiceAccount ${accountName}, which is not in the manifests`}: the SFU needs its own`);
    const container = (w.pod.containers ?? []).find((c: Json) => c.name === 'sfu') ?? w.pod.containers?.[0] ?? {};
    const env = resolveEnv(container, w.namespace, objects, w.pod.hostNetwork === true);
    for (const [variable, fieldPath] of [
      ['POD_NAME', 'metadata.name'],
      ['POD_NAMESPACE', 'metadata.namespace'],
    ] as const) {
      if (env.entries.get(variable)?.fieldPath !== fieldPath) add(`${variable} does not come from the downward API (${fieldPath}): the SFU would not know its own Pod`);
    }
    const isSubject = (binding: K8sObject) =>
      (binding.subjects ?? []).some((s: Json) => s.kind === 'ServiceAccount' && s.name === accountName && (s.namespace ?? binding.metadata.namespace) === w.namespace);
    const bindings = objects.filter((o) => (o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding') && isSubject(o));
    let canPatch = false;
    for (const binding of bindings) {
      if (binding.kind === 'ClusterRoleBinding') {
        add(`${objectId(binding)} grants it ${binding.roleRef?.name} across the cluster: its grant belongs in its own namespace`);
        continue;
      }
      if (binding.metadata.namespace !== w.namespace) add(`${objectId(binding)} grants it rights in namespace ${binding.metadata.namespace}, not its own`);
      const roleKind: string = binding.roleRef?.kind;
      const role = objects.find((o) => o.kind === roleKind && o.metadata.name === binding.roleRef?.name && (roleKind === 'ClusterRole' || o.metadata.namespace === binding.metadata.namespace));
      if (!role) {
        add(`${objectId(binding)} names ${roleKind} ${binding.roleRef?.name}, which is not in the manifests: what it grants cannot be checked`);
        continue;
      }
      for (const [index, rule] of ((role.rules ?? []) as Json[]).entries()) {
        const beyond = (field: keyof typeof sfuGrant) => ((rule[field] ?? []) as string[]).filter((value) => !sfuGrant[field].includes(value));
        const extra = [...beyond('apiGroups').map((g) => `API group "${g}"`), ...beyond('resources').map((r) => `resource ${r}`), ...beyond('verbs').map((v) => `verb ${v}`)];
        if (rule.nonResourceURLs) extra.push(`non-resource URLs ${rule.nonResourceURLs.join(', ')}`);
        if (extra.length > 0) add(`${objectId(role)} rule ${index} grants more than patching pods: ${extra.join(', ')}`);
        else if ((rule.verbs ?? []).includes('patch') && (rule.resources ?? []).includes('pods')) canPatch = true;
      }
      if (role.aggregationRule) add(`${objectId(role)} aggregates other roles: what it grants cannot be checked`);
    }
    if (!canPatch) add(`no Role in ${w.namespace} lets ServiceAccount ${accountName} patch pods: the SFU cannot keep its Pod deletion cost`);
  }
  return found;
};
