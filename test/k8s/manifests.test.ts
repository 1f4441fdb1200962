import { beforeAll, describe, expect, it } from 'vitest';
import { cpuCores, envValues, resolveEnv } from './objects.js';
import { container, find, messages, objectsOf, overlays, renderOverlays, renderWithComponents } from './overlays.js';
import { prometheusRelease } from './monitoringRules.js';
import { checkManifests, checkSchemas } from './rules.js';
import { serviceNames, serviceSpecs } from './services.js';

/**
 * The deployment, checked without a cluster: every kustomize overlay renders, and every object
 * validates against its schema and follows the rules in rules.ts. rules.test.ts shows each rule
 * rejecting a deliberately broken object; static.test.ts checks the Dockerfile, the compose file
 * and the NATS values.
 */

beforeAll(renderOverlays);

describe('Kubernetes manifests', () => {
  it('has the dev and prod overlays', () => {
    expect(overlays).toEqual(expect.arrayContaining(['dev', 'prod']));
  });

  for (const overlay of overlays) {
    describe(`overlay ${overlay}`, () => {
      it('validates against the Kubernetes, KEDA, prometheus-operator, cert-manager and External Secrets schemas', () => {
        expect(messages(checkSchemas(objectsOf(overlay)))).toEqual([]);
      });

      it('follows every deployment rule', () => {
        expect(messages(checkManifests(objectsOf(overlay)))).toEqual([]);
      });

      it('is found by a default kube-prometheus-stack: its release label on every ServiceMonitor and PrometheusRule', () => {
        const monitoring = objectsOf(overlay).filter((o) => o.kind === 'ServiceMonitor' || o.kind === 'PrometheusRule');
        expect(monitoring.length).toBeGreaterThan(5);
        for (const o of monitoring) expect(o.metadata.labels?.[prometheusRelease.label], `${o.kind} ${o.metadata.name}`).toBe(prometheusRelease.value);
      });

      it('runs every service, provisions JetStream and sweeps residue', () => {
        const objects = objectsOf(overlay);
        for (const service of serviceNames) expect(() => find(objects, 'Deployment', service)).not.toThrow();
        expect(find(objects, 'Job', 'nats-provision').spec.template.spec.containers[0].command).toContain('nats-provision.mjs');
        expect(find(objects, 'CronJob', 'residue').spec.jobTemplate.spec.template.spec.containers[0].command).toEqual(['node', '--enable-source-maps', 'residue.mjs', '--sweep']);
      });
    });
  }

  it('dev: one replica of each, small resources, no TLS on the Ingress', () => {
    const objects = objectsOf('dev');
    expect(find(objects, 'HorizontalPodAutoscaler', 'signaling').spec.minReplicas).toBe(1);
    for (const name of ['sfu', 'recorder', 'crm-sync']) expect(find(objects, 'ScaledObject', name).spec.minReplicaCount).toBe(1);
    // routing's count is fixed (no autoscaler); one replica takes every tenant's lease, and its budget still lets a node drain.
    expect(find(objects, 'Deployment', 'routing').spec.replicas).toBe(1);
    expect(find(objects, 'PodDisruptionBudget', 'routing').spec).toMatchObject({ maxUnavailable: 1 });
    expect(find(objects, 'Ingress', 'signaling').spec.tls).toBeUndefined();
    // A core each, the SFU one for its one worker and one for its Node.js process.
    for (const service of serviceNames) expect(cpuCores(container(objects, service).resources.limits.cpu)).toBeLessThanOrEqual(service === 'sfu' ? 2 : 1);
  });

  it('prod with the KMS component: each service that wraps keys runs under its own IAM role and reads the aliases from the secret store', () => {
    const objects = renderWithComponents('prod', ['kms']);
    expect(messages(checkSchemas(objects))).toEqual([]);
    expect(messages(checkManifests(objects))).toEqual([]);
    expect(find(objects, 'ConfigMap', 'gateway-common').data.GATEWAY_KEYRING).toBe('kms');
    expect(find(objects, 'ExternalSecret', 'gateway-tenants').spec.data.map((d: { secretKey: string }) => d.secretKey)).toContain('GATEWAY_KMS_KEYS');
    for (const service of ['signaling', 'recorder', 'crm-sync', 'routing'] as const) {
      const pod = find(objects, 'Deployment', service).spec.template.spec;
      expect(pod.serviceAccountName).toBe(service);
      expect(find(objects, 'ServiceAccount', service).metadata.annotations?.['eks.amazonaws.com/role-arn']).toMatch(/^arn:aws:iam::\d{12}:role\/./);
      const env = resolveEnv(pod.containers[0], 'gateway', objects);
      // The aliases are a file of the mounted Secret, never a variable.
      expect(env.entries.has('GATEWAY_KMS_KEYS')).toBe(false);
      expect(env.entries.get('GATEWAY_KMS_KEYS_FILE')?.value).toBe('/etc/gateway/tenant-keys/GATEWAY_KMS_KEYS');
      // With the aliases the secret store holds, each service takes its configuration (TURN's
      // secret file is the rules' concern: configRules reads it from its Secret).
      const {
        GATEWAY_KMS_KEYS_FILE: _file,
        GATEWAY_TENANT_KEYS_FILE: _keys,
        GATEWAY_TENANTS_FILE: _tenants,
        SIGNALING_TURN_SECRET_FILE: _turnSecret,
        SIGNALING_TURN_URLS: _turnUrls,
        ...values
      } = envValues(env);
      expect(() => serviceSpecs[service].settings({ ...values, GATEWAY_KMS_KEYS: JSON.stringify({ demo: 'alias/gateway/demo' }) })).not.toThrow();
    }
  });

  it('prod: more replicas and workers, TLS on the Ingress, mutual TLS on gRPC, tenants from the secret store', () => {
    const objects = objectsOf('prod');
    expect(find(objects, 'HorizontalPodAutoscaler', 'signaling').spec.minReplicas).toBeGreaterThanOrEqual(3);
    for (const name of ['sfu', 'recorder', 'crm-sync']) expect(find(objects, 'ScaledObject', name).spec.minReplicaCount).toBeGreaterThanOrEqual(2);
    // Two routing replicas on two nodes: each tenant's lease has a replica to go to while one is away.
    const routing = find(objects, 'Deployment', 'routing').spec;
    expect(routing.replicas).toBeGreaterThanOrEqual(2);
    expect(routing.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe('kubernetes.io/hostname');
    expect(find(objects, 'PodDisruptionBudget', 'routing').spec.minAvailable).toBe(1);
    expect(find(objects, 'Ingress', 'signaling').spec.tls?.[0]?.secretName).toBeTruthy();
    // Only signed images with an SBOM, by digest (docs/supply-chain.md; the rules check the policy itself).
    expect(find(objects, 'ClusterPolicy', 'verify-gateway-images').spec.rules.map((r: { name: string }) => r.name)).toEqual(['gateway-images-signed-with-sbom', 'other-images-by-digest']);
    expect(find(objects, 'ConfigMap', 'sfu-config').data.SFU_WORKERS).toBe('8');
    for (const name of ['sfu-config', 'signaling-config', 'recorder-config']) expect(find(objects, 'ConfigMap', name).data.GRPC_TLS_CA_FILE).toBeTruthy();
    for (const service of ['sfu', 'signaling', 'recorder']) expect(find(objects, 'Certificate', `${service}-grpc`).spec.dnsNames).toEqual([`${service}.gateway.internal`]);
    expect(objects.some((o) => o.kind === 'Secret' && o.metadata.name === 'gateway-tenants')).toBe(false);
    expect(find(objects, 'ExternalSecret', 'gateway-tenants').spec.target.name).toBe('gateway-tenants');
    // No placeholder NATS nkey: every identity's comes from the secret store.
    expect(objects.filter((o) => o.kind === 'Secret' && o.metadata.name.startsWith('nats-')).map((o) => o.metadata.name)).toEqual([]);
    for (const name of ['nats-signaling', 'nats-sfu', 'nats-recorder', 'nats-crm-sync', 'nats-routing', 'nats-residue', 'nats-admin', 'nats-user-keys'])
      expect(find(objects, 'ExternalSecret', name).spec.target.name).toBe(name);
  });
});
