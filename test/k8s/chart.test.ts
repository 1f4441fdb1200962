import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { chartDir, runHelm, staleBaseFiles } from '../../scripts/k8s-base.js';
import { additions, staleComponentFiles } from '../../scripts/k8s-components.js';
import { chartObjectsOf, renderChart, renderValueSets, valueSetFile, valueSets } from './chart.js';
import { configRules } from './containerRules.js';
import { sfuRules } from './mediaRules.js';
import { nodeFlowRules, routeRules } from './networkRules.js';
import { objectId, resolveEnv, type Json, type K8sObject, type Rule } from './objects.js';
import { container, find, messages, renderWithComponents } from './overlays.js';
import { checkManifests, checkSchemas } from './rules.js';
import { repoRoot, schemaVariables, serviceNames } from './services.js';

/**
 * The Helm chart (deploy/helm/gateway): every value set of its ci/ folder (one per cloud and
 * CNI, the Ingress, images by digest) lints and renders objects that follow the deployment rules
 * (rules.ts) as the kustomize overlays do; the values that pick a cluster's choices show in the
 * objects; values.schema.json refuses the bad value files of test/k8s/values at the offending
 * path; and k8s/base is what the chart renders for the overlays.
 */

beforeAll(renderValueSets);

/**
 * The variables of the SFU's address discovery (docs/kubernetes.md, "Announced address"): until
 * the SFU reads them, the config rule reports them for the value sets that set them; once it
 * does, nothing is excused.
 */
const pendingSfuVariables = ['SFU_ANNOUNCED_ADDRESS_SOURCE', 'SFU_STUN_SERVERS'].filter((name) => !schemaVariables('sfu').has(name));
const pending = (message: string) => pendingSfuVariables.some((name) => message === `[config] Deployment gateway-media/sfu: ${name} is not a variable sfu reads`);

const env = (objects: K8sObject[]) => new Map<string, Json>(container(objects, 'sfu').env.map((e: Json) => [e.name, e]));
const ofKind = (objects: K8sObject[], kind: string) => objects.filter((o) => o.kind === kind);
const ipBlocks = (policy: K8sObject): string[] =>
  [...(policy.spec?.ingress ?? []).flatMap((r: Json) => r.from ?? []), ...(policy.spec?.egress ?? []).flatMap((r: Json) => r.to ?? [])].flatMap((peer: Json) =>
    peer.ipBlock ? [peer.ipBlock.cidr] : [],
  );

/**
 * What production's parts put into a rendering, as the chart and the prod overlay should both
 * carry it: the ExternalSecrets and which placeholder Secrets are left, the gRPC Certificates, the
 * admission policy, the ServiceAccounts, and on each service its gRPC TLS and KMS settings,
 * mounts and ServiceAccount. Labels the chart adds to everything are left out.
 */
function productionParts(objects: K8sObject[]) {
  const bare = (o: K8sObject) => {
    const copy = structuredClone(o);
    delete copy.metadata.labels?.['app.kubernetes.io/part-of'];
    if (copy.metadata.labels && Object.keys(copy.metadata.labels).length === 0) delete copy.metadata.labels;
    return copy;
  };
  const byId = (list: K8sObject[]) => Object.fromEntries(list.map((o) => [objectId(o), bare(o)]));
  const placeholder = (o: K8sObject) => o.kind === 'Secret' && (['gateway-tenants', 'turn-secret'].includes(o.metadata.name) || o.metadata.name.startsWith('nats-'));
  const services = serviceNames.map((service) => {
    const deployment = find(objects, 'Deployment', service);
    const pod = deployment.spec.template.spec;
    const env = resolveEnv(pod.containers[0], deployment.metadata.namespace ?? 'gateway', objects).entries;
    const settings = Object.fromEntries([...env].filter(([name]) => name.startsWith('GRPC_TLS_') || name.startsWith('GATEWAY_KMS_') || name === 'GATEWAY_KEYRING').map(([name, e]) => [name, e.value]));
    const mounts = pod.containers[0].volumeMounts.filter((m: Json) => m.name === 'grpc-tls');
    return [service, { settings, mounts, volumes: pod.volumes.filter((v: Json) => v.name === 'grpc-tls'), serviceAccountName: pod.serviceAccountName }];
  });
  return {
    externalSecrets: byId(ofKind(objects, 'ExternalSecret')),
    placeholders: objects.filter(placeholder).map(objectId).sort(),
    certificates: byId(ofKind(objects, 'Certificate').filter((o) => o.metadata.name.endsWith('-grpc'))),
    policies: byId(ofKind(objects, 'ClusterPolicy')),
    serviceAccounts: byId(ofKind(objects, 'ServiceAccount')),
    services: Object.fromEntries(services),
  };
}

describe('the Helm chart', () => {
  it('has a value set for each cloud and CNI, the Ingress and images by digest', () => {
    expect(valueSets).toEqual(expect.arrayContaining(['eks', 'gke', 'aks', 'kind-calico', 'kind-cilium', 'ingress', 'digests', 'production']));
  });

  for (const valueSet of valueSets) {
    describe(valueSet, () => {
      it('passes helm lint --strict', () => {
        expect(runHelm(['lint', '--strict', chartDir, '-f', valueSetFile(valueSet)])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      });

      it('validates against the Kubernetes, Gateway API, Cilium and operators’ schemas', () => {
        expect(messages(checkSchemas(chartObjectsOf(valueSet)))).toEqual([]);
      });

      it('follows every deployment rule', () => {
        expect(messages(checkManifests(chartObjectsOf(valueSet))).filter((m) => !pending(m))).toEqual([]);
      });
    });
  }

  it('generic and calico: the host-network flows by the nodes’ CIDRs from the values, no Cilium policy', () => {
    for (const [valueSet, cidrs] of [
      ['eks', ['10.0.64.0/20', '10.0.80.0/20', '10.0.96.0/20']],
      ['kind-calico', ['172.18.0.0/16']],
    ] as const) {
      const objects = chartObjectsOf(valueSet);
      expect(ofKind(objects, 'CiliumNetworkPolicy')).toEqual([]);
      for (const name of ['signaling', 'recorder', 'nats']) expect(ipBlocks(find(objects, 'NetworkPolicy', name)), `${valueSet} ${name}`).toEqual(expect.arrayContaining([...cidrs]));
      // The range of the kustomize base never leaks into a chart installation.
      expect(objects.filter((o) => o.kind === 'NetworkPolicy').flatMap(ipBlocks)).not.toContain('10.0.0.0/8');
    }
  });

  it('cilium: the host-network flows by node entity, no ipBlock that would match nothing', () => {
    for (const valueSet of ['gke', 'aks', 'kind-cilium']) {
      const objects = chartObjectsOf(valueSet);
      for (const name of ['recorder', 'nats']) expect(ipBlocks(find(objects, 'NetworkPolicy', name)), `${valueSet} ${name}`).toEqual([]);
      // signaling's only ranges are the edge's proxies outside the cluster (GKE's front ends).
      expect(ipBlocks(find(objects, 'NetworkPolicy', 'signaling')).filter((cidr) => !['35.191.0.0/16', '130.211.0.0/22'].includes(cidr))).toEqual([]);
      const nats = find(objects, 'CiliumNetworkPolicy', 'nats-nodes');
      expect(nats.apiVersion).toBe('cilium.io/v2');
      expect(nats.spec.ingress[0].fromEntities).toEqual(['host', 'remote-node']);
    }
  });

  it('NodeLocal DNSCache allowed where it is set, and only there', () => {
    const dnsPeers = (objects: K8sObject[]) => ipBlocks(find(objects, 'NetworkPolicy', 'dns'));
    expect(dnsPeers(chartObjectsOf('eks'))).toEqual(['169.254.20.10/32']);
    expect(dnsPeers(chartObjectsOf('kind-calico'))).toEqual([]);
    expect(find(chartObjectsOf('aks'), 'CiliumNetworkPolicy', 'node-local-dns').spec.egress[0].toEntities).toEqual(['host']);
  });

  it('the edge: HTTPRoutes on the named Gateway by default, the Ingress when asked', () => {
    const gke = chartObjectsOf('gke');
    expect(ofKind(gke, 'Ingress')).toEqual([]);
    const route = find(gke, 'HTTPRoute', 'signaling');
    expect(route.spec.parentRefs).toEqual([{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'external-http', namespace: 'gateway-edge', sectionName: 'https' }]);
    expect(route.spec.rules[0].timeouts).toEqual({ request: '3600s', backendRequest: '3600s' });
    const fromEdge = find(gke, 'NetworkPolicy', 'signaling').spec.ingress[0].from;
    expect(fromEdge[0].namespaceSelector.matchLabels['kubernetes.io/metadata.name']).toBe('gateway-edge');
    // GKE's Gateway proxies are Google's front ends, outside the cluster.
    expect(fromEdge.slice(1).map((peer: Json) => peer.ipBlock.cidr)).toEqual(['35.191.0.0/16', '130.211.0.0/22']);
    const ingress = chartObjectsOf('ingress');
    expect(ofKind(ingress, 'HTTPRoute')).toEqual([]);
    expect(find(ingress, 'Ingress', 'signaling').spec.tls).toEqual([{ hosts: ['gateway.example.com'], secretName: 'signaling-tls' }]);
    expect(find(ingress, 'Ingress', 'crm-sync-admin').metadata.annotations?.['nginx.ingress.kubernetes.io/force-ssl-redirect']).toBe('true');
  });

  it('images: registry and tag, or the digest, which wins over the tag', () => {
    expect(container(chartObjectsOf('eks'), 'sfu').image).toBe('registry.example.com/gateway/sfu:0.1.0');
    const digests = chartObjectsOf('digests');
    expect(container(digests, 'sfu').image).toBe('registry.example.com/gateway/sfu@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
    expect(find(digests, 'Job', 'nats-provision').spec.template.spec.containers[0].image).toMatch(/^registry\.example\.com\/gateway\/crm-sync@sha256:3123/);
    expect(find(digests, 'Deployment', 'coturn').spec.template.spec.containers[0].image).toMatch(/^registry\.example\.com\/gateway\/coturn@sha256:5123/);
  });

  it("the SFU's announced address: the node's, told, or found from the cloud's metadata or by STUN", () => {
    expect(env(chartObjectsOf('kind-calico')).get('SFU_ANNOUNCED_ADDRESS').valueFrom.fieldRef.fieldPath).toBe('status.hostIP');
    expect(env(chartObjectsOf('kind-calico')).has('SFU_ANNOUNCED_ADDRESS_SOURCE')).toBe(false);
    expect(env(chartObjectsOf('kind-cilium')).get('SFU_ANNOUNCED_ADDRESS').value).toBe('172.18.0.2');
    for (const [valueSet, source] of [
      ['eks', 'aws'],
      ['gke', 'gcp'],
      ['aks', 'azure'],
    ]) {
      expect(env(chartObjectsOf(valueSet)).get('SFU_ANNOUNCED_ADDRESS_SOURCE').value).toBe(source);
      expect(env(chartObjectsOf(valueSet)).has('SFU_ANNOUNCED_ADDRESS')).toBe(false);
    }
    const stun = env(chartObjectsOf('ingress'));
    expect(stun.get('SFU_ANNOUNCED_ADDRESS_SOURCE').value).toBe('stun');
    expect(stun.get('SFU_STUN_SERVERS').value).toBe('stun.l.google.com:19302,stun.cloudflare.com:3478');
  });

  it('replicas, workers, zones, TURN and the monitoring release from the values', () => {
    const eks = chartObjectsOf('eks');
    expect(find(eks, 'ScaledObject', 'sfu').spec).toMatchObject({ minReplicaCount: 3, maxReplicaCount: 50, fallback: { replicas: 6 } });
    expect(
      container(eks, 'sfu')
        .ports.filter((p: Json) => p.name.startsWith('rtc-udp-'))
        .map((p: Json) => p.containerPort),
    ).toEqual([40000, 40001, 40002, 40003, 40004, 40005, 40006, 40007]);
    expect(find(eks, 'ConfigMap', 'sfu-config').data.SFU_WORKERS).toBe('8');
    expect(find(eks, 'Deployment', 'signaling').spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable).toBe('DoNotSchedule');
    expect(find(chartObjectsOf('gke'), 'Deployment', 'signaling').spec.template.spec.topologySpreadConstraints[0].whenUnsatisfiable).toBe('ScheduleAnyway');
    expect(find(eks, 'ConfigMap', 'turn-config').data.TURN_EXTERNAL_IP).toBe('aws');
    const noTurn = chartObjectsOf('kind-calico');
    expect(noTurn.filter((o) => o.metadata.name.startsWith('turn') || o.metadata.name === 'coturn').map((o) => `${o.kind} ${o.metadata.name}`)).toEqual([]);
    expect(find(noTurn, 'ConfigMap', 'signaling-config').data.SIGNALING_TURN_URLS).toBeUndefined();
    const gke = chartObjectsOf('gke');
    for (const o of gke.filter((x) => x.kind === 'ServiceMonitor' || x.kind === 'PrometheusRule')) expect(o.metadata.labels?.release, `${o.kind} ${o.metadata.name}`).toBe('prometheus');
  });

  describe('values.schema.json refuses each bad value file at the offending path', () => {
    const badDir = path.join(repoRoot, 'test/k8s/values');
    for (const file of readdirSync(badDir).filter((f) => f.endsWith('.yaml'))) {
      it(file, () => {
        const expectedPath = /^# Rejected at ([\w.]+):/.exec(readFileSync(path.join(badDir, file), 'utf8'))?.[1];
        expect(expectedPath, 'the file names the path it is rejected at').toBeTruthy();
        let error = '';
        try {
          renderChart([path.join(badDir, file)]);
        } catch (e) {
          error = (e as Error).message;
        }
        expect(error).toMatch(/values don't meet the specifications of the schema/);
        const paths = [...error.matchAll(/^- ([\w.]+): /gm)].map((m) => m[1]);
        expect(paths).toContain(expectedPath);
        // Nothing else in the file is wrong: every error is at that path or one that holds it.
        for (const reported of paths) expect(`${expectedPath}.`.startsWith(`${reported}.`), `${file}: ${reported}`).toBe(true);
      });
    }
  });

  it('k8s/base is the chart rendered with k8s/base.values.yaml (make k8s-base)', () => {
    expect(staleBaseFiles(), 'stale: run `make k8s-base` and commit k8s/base').toEqual([]);
  });

  it('k8s/components are production’s parts of the chart (make k8s-base)', () => {
    expect(staleComponentFiles(), 'stale: run `make k8s-base` and commit k8s/components').toEqual([]);
  });

  it('a production part only adds to the base: a new field or list entry becomes a JSON patch, a change is refused', () => {
    const before = { spec: { template: { metadata: { annotations: { 'checksum/config': 'a' } }, spec: { containers: [{ env: [{ name: 'A', value: '1' }] }] } } } };
    const grown = structuredClone(before);
    grown.spec.template.metadata.annotations['checksum/config'] = 'b';
    grown.spec.template.spec.containers[0]!.env.push({ name: 'B', value: '2' });
    Object.assign(grown.spec.template.spec, { serviceAccountName: 'signaling' });
    expect(additions(before, grown, [], 'Deployment gateway/signaling')).toEqual([
      { op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name: 'B', value: '2' } },
      { op: 'add', path: '/spec/template/spec/serviceAccountName', value: 'signaling' },
    ]);
    const changed = structuredClone(before);
    changed.spec.template.spec.containers[0]!.env[0]!.value = '2';
    expect(() => additions(before, changed, [], 'Deployment gateway/signaling')).toThrow(/Deployment gateway\/signaling \/spec\/template\/spec\/containers\/0\/env\/0\/value changed/);
  });

  describe('production: every part on, as the prod overlay carries them', () => {
    const overlay = () => renderWithComponents('prod', ['kms']);

    it('the same ExternalSecrets, Certificates, policy, ServiceAccounts, and GRPC_TLS_*, KMS settings and mounts on each service', () => {
      const chart = productionParts(chartObjectsOf('production'));
      expect(chart.placeholders).toEqual([]);
      expect(Object.keys(chart.externalSecrets)).toHaveLength(11);
      expect(Object.keys(chart.certificates)).toEqual(['Certificate gateway-media/sfu-grpc', 'Certificate gateway/recorder-grpc', 'Certificate gateway/signaling-grpc']);
      for (const service of ['sfu', 'signaling', 'recorder'] as const) {
        expect(chart.services[service].settings.GRPC_TLS_CERT_FILE, service).toBe('/etc/gateway/grpc-tls/tls.crt');
        expect(chart.services[service].volumes[0].secret.secretName, service).toBe(`${service}-grpc-tls`);
      }
      for (const service of ['signaling', 'recorder', 'crm-sync', 'routing'] as const) {
        expect(chart.services[service]).toMatchObject({ serviceAccountName: service, settings: { GATEWAY_KEYRING: 'kms', GATEWAY_KMS_KEYS_FILE: '/etc/gateway/tenant-keys/GATEWAY_KMS_KEYS' } });
      }
      expect(chart).toEqual(productionParts(overlay()));
    });

    it('a part the overlay lacks shows', () => {
      const objects = overlay();
      const recorder = find(objects, 'Deployment', 'recorder').spec.template.spec;
      recorder.containers[0].volumeMounts = recorder.containers[0].volumeMounts.filter((m: Json) => m.name !== 'grpc-tls');
      expect(productionParts(objects)).not.toEqual(productionParts(chartObjectsOf('production')));
    });

    it('off by default: the placeholders, no ExternalSecret, Certificate for gRPC, policy or KMS', () => {
      const parts = productionParts(chartObjectsOf('eks'));
      expect(parts.placeholders.length).toBeGreaterThan(5);
      expect({ ...parts.externalSecrets, ...parts.certificates, ...parts.policies }).toEqual({});
      for (const service of serviceNames) expect(parts.services[service], service).toEqual({ settings: {}, mounts: [], volumes: [], serviceAccountName: service === 'sfu' ? 'sfu' : undefined });
    });
  });
});

describe('the chart-only rules reject what they are meant to', () => {
  const caught = (valueSet: string, rule: Rule, breakIt: (objects: K8sObject[]) => void, message: RegExp) => {
    const objects = chartObjectsOf(valueSet);
    expect(rule(objects)).toEqual([]);
    breakIt(objects);
    expect(messages(rule(objects)).join('\n')).toMatch(message);
  };

  it('KMS keys with no aliases in the secret store', () =>
    caught(
      'production',
      configRules,
      (o) => {
        const tenants = find(o, 'ExternalSecret', 'gateway-tenants').spec;
        tenants.data = tenants.data.filter((d: Json) => d.secretKey !== 'GATEWAY_KMS_KEYS');
      },
      /Deployment gateway\/signaling: GATEWAY_KMS_KEYS_FILE=\/etc\/gateway\/tenant-keys\/GATEWAY_KMS_KEYS: Secret gateway-tenants has no such key/,
    ));

  it("an HTTPRoute that would cut a call's WebSocket", () =>
    caught('gke', routeRules, (o) => (find(o, 'HTTPRoute', 'signaling').spec.rules[0].timeouts = { request: '60s' }), /request timeouts \(60s\) are under 3600 s/));

  it('an HTTPRoute that exposes an ops port', () => caught('gke', routeRules, (o) => (find(o, 'HTTPRoute', 'signaling').spec.rules[0].backendRefs[0].port = 9100), /routes \/ to signaling port 9100/));

  it('an admin route beyond /v1/', () => caught('gke', routeRules, (o) => (find(o, 'HTTPRoute', 'crm-sync-admin').spec.rules[0].matches[0].path.value = '/'), /routes \/ to crm-sync port 8090/));

  it("a route host that is not signaling's WebAuthn origin", () =>
    caught('gke', routeRules, (o) => (find(o, 'HTTPRoute', 'signaling').spec.hostnames = ['other.example.com']), /host other.example.com is not in SIGNALING_WEBAUTHN_ORIGINS/));

  it('a host-network flow left to an ipBlock under Cilium', () =>
    caught(
      'gke',
      nodeFlowRules,
      (o) => {
        o.splice(o.indexOf(find(o, 'CiliumNetworkPolicy', 'nats-nodes')), 1);
        find(o, 'NetworkPolicy', 'nats').spec.ingress[0].from.push({ ipBlock: { cidr: '10.128.0.0/20' } });
      },
      /flow the SFU to NATS: allowed by ipBlock beside CiliumNetworkPolicies/,
    ));

  it('a host-network flow no policy allows', () =>
    caught(
      'eks',
      nodeFlowRules,
      (o) => (find(o, 'NetworkPolicy', 'recorder').spec.ingress = find(o, 'NetworkPolicy', 'recorder').spec.ingress.filter((r: Json) => !r.from.some((p: Json) => p.ipBlock))),
      /flow the recording taps from the SFU: no policy lets it through/,
    ));

  const sfuEnv = (o: K8sObject[]): Json[] => container(o, 'sfu').env;

  it('an SFU told an address and to find one', () =>
    caught('eks', sfuRules, (o) => sfuEnv(o).push({ name: 'SFU_ANNOUNCED_ADDRESS', value: '203.0.113.7' }), /SFU_ANNOUNCED_ADDRESS is set while the address is found by aws/));

  it('an SFU to find its address by STUN with a server that is not host:port', () =>
    caught('ingress', sfuRules, (o) => (sfuEnv(o).find((e) => e.name === 'SFU_STUN_SERVERS').value = 'stun.example.com'), /SFU_STUN_SERVERS entry stun.example.com is not host:port/));

  it('an SFU with no address to announce', () =>
    caught(
      'kind-calico',
      sfuRules,
      (o) =>
        container(o, 'sfu').env.splice(
          sfuEnv(o).findIndex((e) => e.name === 'SFU_ANNOUNCED_ADDRESS'),
          1,
        ),
      /SFU_ANNOUNCED_ADDRESS is not set/,
    ));

  it('a CiliumNetworkPolicy Cilium would refuse', () => {
    const objects = chartObjectsOf('gke');
    const policy = find(objects, 'CiliumNetworkPolicy', 'signaling-nodes');
    policy.spec.egress[0].toEntities = ['nodes'];
    policy.spec.egress[0].toPorts[0].ports[0].port = 50051;
    const found = messages(checkSchemas([policy])).join('\n');
    expect(found).toMatch(/nodes is not a Cilium entity/);
    expect(found).toMatch(/port must be a port number as a string/);
  });
});
