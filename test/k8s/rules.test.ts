import { beforeAll, describe, expect, it } from 'vitest';
import { configRules, containerRules, graceRules, probeRules } from './containerRules.js';
import { grpcIdentityRules, natsRules, serviceAccountRules } from './identityRules.js';
import { drainRules, sfuRules } from './mediaRules.js';
import { egressRules, exposureRules, ingressRules, networkPolicyRules } from './networkRules.js';
import type { K8sObject, Rule } from './objects.js';
import { container, find, messages, objectsOf, renderOverlays } from './overlays.js';
import { checkSchemas } from './rules.js';
import { alertRules, monitoringSelectionRules } from './monitoringRules.js';
import { autoscalerFallbackRules, availabilityRules, scalingRules } from './scalingRules.js';
import { turnRules } from './turnRules.js';
import { imageSupplyRules } from './supplyChainRules.js';
import { nodeTuningRules, schedulingRules } from './schedulingRules.js';

/** Each deployment rule (rules.ts) shown to reject a deliberately broken copy of a rendered overlay. */

beforeAll(renderOverlays);

describe('each deployment rule rejects what it is meant to', () => {
  /** Breaks a copy of an environment and expects `rule` to report `message`. */
  const caughtIn = (overlay: string, rule: Rule, breakIt: (objects: K8sObject[]) => void, message: RegExp) => {
    const objects = objectsOf(overlay);
    expect(rule(objects)).toEqual([]);
    breakIt(objects);
    expect(messages(rule(objects)).join('\n')).toMatch(message);
  };
  const caught = (rule: Rule, breakIt: (objects: K8sObject[]) => void, message: RegExp) => caughtIn('dev', rule, breakIt, message);

  it('a container without limits', () => caught(containerRules, (o) => delete container(o, 'signaling').resources.limits, /signaling: no cpu limit/));

  it('a container running as root', () => caught(containerRules, (o) => (find(o, 'Deployment', 'recorder').spec.template.spec.securityContext.runAsUser = 0), /recorder: runs as root/));

  it('a container that may escalate its privileges', () =>
    caught(containerRules, (o) => delete container(o, 'crm-sync').securityContext.allowPrivilegeEscalation, /allowPrivilegeEscalation is not false/));

  it('a container without a readiness probe', () => caught(containerRules, (o) => delete container(o, 'crm-sync').readinessProbe, /no readiness probe/));

  it('a probe that does not ask the ops server', () =>
    caught(probeRules, (o) => (container(o, 'signaling').livenessProbe.httpGet.path = '/'), /signaling: the liveness probe is not GET \/healthz on the ops port/));

  it('a service without a disruption budget or a ServiceMonitor', () =>
    caught(
      availabilityRules,
      (o) => {
        o.splice(o.indexOf(find(o, 'PodDisruptionBudget', 'recorder')), 1);
        o.splice(o.indexOf(find(o, 'ServiceMonitor', 'crm-sync')), 1);
      },
      /^(?=[\s\S]*recorder: no PodDisruptionBudget)(?=[\s\S]*crm-sync: no ServiceMonitor)/,
    ));

  it('a tenant without a key', () =>
    caught(
      configRules,
      (o) => {
        const secret = find(o, 'Secret', 'gateway-tenants');
        secret.stringData = { ...secret.stringData, GATEWAY_TENANT_KEYS: '{}' };
      },
      /tenant example has no key in GATEWAY_TENANT_KEYS/,
    ));

  it('tenant keys given as an environment variable instead of a mounted file', () =>
    caught(
      configRules,
      (o) => {
        const env = container(o, 'recorder').env as Array<Record<string, unknown>>;
        env.splice(
          env.findIndex((e) => e.name === 'GATEWAY_TENANT_KEYS_FILE'),
          1,
          { name: 'GATEWAY_TENANT_KEYS', valueFrom: { secretKeyRef: { name: 'gateway-tenants', key: 'GATEWAY_TENANT_KEYS' } } },
        );
      },
      /recorder: GATEWAY_TENANT_KEYS is an environment variable: mount the Secret and set GATEWAY_TENANT_KEYS_FILE/,
    ));

  it('tenants (their API secrets) given as an environment variable instead of a mounted file', () =>
    caught(
      configRules,
      (o) => {
        const env = container(o, 'crm-sync').env as Array<Record<string, unknown>>;
        env.splice(
          env.findIndex((e) => e.name === 'GATEWAY_TENANTS_FILE'),
          1,
          { name: 'GATEWAY_TENANTS', valueFrom: { secretKeyRef: { name: 'gateway-tenants', key: 'GATEWAY_TENANTS' } } },
        );
      },
      /crm-sync: GATEWAY_TENANTS is an environment variable: mount the Secret and set GATEWAY_TENANTS_FILE/,
    ));

  it('a tenants file naming a key the Secret does not have', () =>
    caught(
      configRules,
      (o) => {
        const env = container(o, 'routing').env as Array<Record<string, unknown>>;
        env.find((e) => e.name === 'GATEWAY_TENANTS_FILE')!.value = '/etc/gateway/tenant-keys/TENANTS';
      },
      /routing: GATEWAY_TENANTS_FILE=\/etc\/gateway\/tenant-keys\/TENANTS: Secret gateway-tenants has no such key/,
    ));

  it('a keys file mounted with subPath, which the kubelet never updates', () =>
    caught(
      configRules,
      (o) => {
        const mount = (container(o, 'signaling').volumeMounts as Array<Record<string, unknown>>).find((m) => m.name === 'tenant-keys')!;
        mount.mountPath = '/etc/gateway/tenant-keys/GATEWAY_TENANT_KEYS';
        mount.subPath = 'GATEWAY_TENANT_KEYS';
      },
      /signaling: GATEWAY_TENANT_KEYS_FILE=.* is mounted with subPath/,
    ));

  it('an image tagged latest', () => caught(containerRules, (o) => (container(o, 'sfu').image = 'registry.example.com/gateway/sfu:latest'), /not pinned/));

  it('an SFU whose grace period is shorter than its drain', () =>
    caught(sfuRules, (o) => (find(o, 'Deployment', 'sfu').spec.template.spec.terminationGracePeriodSeconds = 60), /terminationGracePeriodSeconds 60 is shorter than the drain/));

  it('an SFU with more workers than media ports', () => caught(sfuRules, (o) => (find(o, 'ConfigMap', 'sfu-config').data.SFU_WORKERS = '2'), /no UDP media port 40001 for worker 1/));

  it('an SFU without a preStop hook', () => caught(sfuRules, (o) => delete container(o, 'sfu').lifecycle, /no preStop hook/));

  it('a preStop hook that calls /drain from the kubelet (httpGet)', () =>
    caught(
      drainRules,
      (o) => (container(o, 'recorder').lifecycle.preStop = { httpGet: { path: '/drain', port: 'ops', httpHeaders: [{ name: 'X-Gateway-Drain', value: '1' }] } }),
      /recorder: the preStop hook is an httpGet/,
    ));

  it('an SFU preStop hook without the drain token', () =>
    caught(
      drainRules,
      (o) => {
        const hook = container(o, 'sfu').lifecycle.preStop.exec.command as string[];
        hook[hook.length - 1] = "fetch('http://' + process.env.SFU_OPS_HOST + ':9101/drain', { method: 'POST' })";
      },
      /sfu: the preStop hook calls \/drain on an address other than loopback without the drain token/,
    ));

  it("an SFU preStop hook on loopback while its ops port is on the node's address", () =>
    caught(
      drainRules,
      (o) => {
        const hook = container(o, 'sfu').lifecycle.preStop.exec.command as string[];
        hook[hook.length - 1] = "fetch('http://127.0.0.1:9101/drain', { method: 'POST' })";
      },
      /sfu: the preStop hook calls \/drain on loopback, but the ops port listens on SFU_OPS_HOST=/,
    ));

  it("a recorder gRPC certificate that carries the SFU's name", () =>
    caughtIn(
      'prod',
      grpcIdentityRules,
      (o) => Object.assign(find(o, 'Certificate', 'recorder-grpc').spec, { commonName: 'sfu.gateway.internal', dnsNames: ['sfu.gateway.internal'] }),
      /recorder: its gRPC certificate \(Certificate gateway\/recorder-grpc\) does not carry recorder\.gateway\.internal[\s\S]*also carries sfu\.gateway\.internal/,
    ));

  it("a gRPC certificate with a second service's name", () =>
    caughtIn(
      'prod',
      grpcIdentityRules,
      (o) => find(o, 'Certificate', 'signaling-grpc').spec.dnsNames.push('sfu.gateway.internal'),
      /signaling: its gRPC certificate .* also carries sfu\.gateway\.internal/,
    ));

  it('an SFU off the media pool', () => caught(sfuRules, (o) => (find(o, 'Deployment', 'sfu').spec.template.spec.tolerations = []), /does not tolerate the media pool's taint/));

  it('an SFU without the host network or host ports', () =>
    caught(sfuRules, (o) => delete find(o, 'Deployment', 'sfu').spec.template.spec.hostNetwork, /neither on the host network nor with host ports/));

  it('an SFU whose gRPC listens on every address', () =>
    caught(sfuRules, (o) => (container(o, 'sfu').env = container(o, 'sfu').env.filter((e: { name: string }) => e.name !== 'SFU_GRPC_HOST')), /SFU_GRPC_HOST is unset/));

  it('a variable no service reads', () => caught(configRules, (o) => container(o, 'sfu').env.push({ name: 'SFU_WORKER', value: '2' }), /SFU_WORKER is not a variable sfu reads/));

  it('a value the service would refuse', () =>
    caught(configRules, (o) => (find(o, 'ConfigMap', 'recorder-config').data.RECORDER_CPU_BUDGET = 'lots'), /recorder would refuse its configuration: [\s\S]*RECORDER_CPU_BUDGET/));

  it('a recorder work folder on disk', () =>
    caught(
      configRules,
      (o) => delete find(o, 'Deployment', 'recorder').spec.template.spec.volumes.find((v: { name: string }) => v.name === 'work').emptyDir.medium,
      /RECORDER_WORK_DIR=.* is not on an emptyDir of medium Memory/,
    ));

  it('a recorder whose grace period is shorter than its drain', () =>
    caught(
      configRules,
      (o) => (find(o, 'Deployment', 'recorder').spec.template.spec.terminationGracePeriodSeconds = 600),
      /terminationGracePeriodSeconds 600 is shorter than the drain \(RECORDER_DRAIN_GRACE_SECONDS\)/,
    ));

  it('gRPC TLS on one side only', () =>
    caught(
      configRules,
      (o) => Object.assign(find(o, 'ConfigMap', 'sfu-config').data, { GRPC_TLS_CA_FILE: '/x/ca.crt', GRPC_TLS_CERT_FILE: '/x/tls.crt', GRPC_TLS_KEY_FILE: '/x/tls.key' }),
      /mutual TLS on sfu only/,
    ));

  it('a LoadBalancer Service', () => caught(exposureRules, (o) => (find(o, 'Service', 'recorder').spec.type = 'LoadBalancer'), /a LoadBalancer Service/));

  it('an Ingress to a gRPC port', () =>
    caught(exposureRules, (o) => (find(o, 'Ingress', 'signaling').spec.rules[0].http.paths[0].backend.service = { name: 'recorder', port: { name: 'grpc' } }), /routes \/ to recorder port grpc/));

  it("an Ingress to crm-sync's ops port, or to its admin port beyond /v1/", () => {
    caught(exposureRules, (o) => (find(o, 'Ingress', 'crm-sync-admin').spec.rules[0].http.paths[0].backend.service.port = { name: 'ops' }), /routes \/v1\/ to crm-sync port ops/);
    caught(exposureRules, (o) => (find(o, 'Ingress', 'crm-sync-admin').spec.rules[0].http.paths[0].path = '/'), /routes \/ to crm-sync port http/);
    // routing's directory API, beside it on the admin host: its ops port never.
    caught(exposureRules, (o) => (find(o, 'Ingress', 'crm-sync-admin').spec.rules[0].http.paths[1].backend.service.port = { name: 'ops' }), /routes \/v1\/directory to routing port ops/);
  });

  it('the admin Ingress with TLS that still serves plain HTTP', () =>
    caughtIn(
      'prod',
      ingressRules,
      (o) => delete find(o, 'Ingress', 'crm-sync-admin').metadata.annotations!['nginx.ingress.kubernetes.io/force-ssl-redirect'],
      /TLS without nginx.ingress.kubernetes.io\/force-ssl-redirect/,
    ));

  it('another workload on the host network', () =>
    caught(exposureRules, (o) => (find(o, 'Deployment', 'signaling').spec.template.spec.hostNetwork = true), /signaling: on the host network: only the SFU, coturn and the media nodes' tuning/));

  it("the media nodes' tuning with a port on the host network", () =>
    caught(exposureRules, (o) => (find(o, 'DaemonSet', 'media-node-tuning').spec.template.spec.containers[0].ports = [{ containerPort: 8080 }]), /media-node-tuning: on the host network/));

  it('no default deny', () => caught(networkPolicyRules, (o) => o.splice(o.indexOf(find(o, 'NetworkPolicy', 'default-deny')), 1), /no default-deny NetworkPolicy/));

  it('a gRPC port open to everyone', () =>
    caught(
      networkPolicyRules,
      (o) => find(o, 'NetworkPolicy', 'recorder').spec.ingress.push({ ports: [{ protocol: 'TCP', port: 50061 }] }),
      /admits every source[\s\S]*recorder's gRPC port to more than our own pods/,
    ));

  it('an ops port open beyond Prometheus', () =>
    caught(
      networkPolicyRules,
      (o) => find(o, 'NetworkPolicy', 'signaling').spec.ingress.push({ from: [{ namespaceSelector: {} }], ports: [{ protocol: 'TCP', port: 9100 }] }),
      /signaling's ops port to more than Prometheus/,
    ));

  it('routing reaching beyond NATS', () =>
    caught(
      egressRules,
      (o) => find(o, 'NetworkPolicy', 'routing').spec.egress.push({ to: [{ ipBlock: { cidr: '0.0.0.0/0' } }] }),
      /routing: NetworkPolicy gateway\/routing egress rule 1 lets it reach more than NATS, DNS and the trace collector/,
    ));

  it("an Ingress to routing's admin API beyond /v1/", () =>
    caught(
      exposureRules,
      (o) => {
        const ingress = find(o, 'Ingress', 'crm-sync-admin');
        ingress.spec.rules[0].http.paths.push({ path: '/v1/', pathType: 'Prefix', backend: { service: { name: 'routing', port: { name: 'http' } } } });
        expect(exposureRules(o)).toEqual([]);
        ingress.spec.rules[0].http.paths.at(-1).path = '/';
      },
      /routes \/ to routing port http/,
    ));

  it('crm-sync scaled on a consumer it does not hold', () =>
    caught(scalingRules, (o) => (find(o, 'ScaledObject', 'crm-sync').spec.triggers[0].metadata.consumer = 'crm-sync'), /no nats-jetstream trigger on GATEWAY_RECORDINGS \/ crm-sync-recordings/));

  it('a service that may scale to zero', () => caught(scalingRules, (o) => (find(o, 'ScaledObject', 'recorder').spec.minReplicaCount = 0), /may scale to zero/));

  it('routing under an autoscaler, or its replicas free to share a node', () => {
    caughtIn(
      'prod',
      scalingRules,
      (o) =>
        o.push({
          apiVersion: 'autoscaling/v2',
          kind: 'HorizontalPodAutoscaler',
          metadata: { name: 'routing', namespace: 'gateway' },
          spec: { scaleTargetRef: { kind: 'Deployment', name: 'routing' }, minReplicas: 2, maxReplicas: 4 },
        }),
      /routing: an autoscaler scales it: routing runs a fixed count/,
    );
    caughtIn('prod', scalingRules, (o) => delete find(o, 'Deployment', 'routing').spec.template.spec.affinity, /routing: 2 replicas without a required anti-affinity on kubernetes.io\/hostname/);
  });

  it('a disruption budget that refuses every eviction', () =>
    caught(
      availabilityRules,
      (o) => (find(o, 'PodDisruptionBudget', 'routing').spec = { minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'routing' } } }),
      /routing: 1 replica\(s\) under PodDisruptionBudget gateway\/routing with minAvailable 1: no eviction is ever allowed/,
    ));

  it('an Ingress that cuts WebSockets after a minute', () =>
    caught(ingressRules, (o) => (find(o, 'Ingress', 'signaling').metadata.annotations!['nginx.ingress.kubernetes.io/proxy-read-timeout'] = '60'), /proxy-read-timeout is not at least 3600/));

  it('a service without NATS credentials', () =>
    caught(
      natsRules,
      (o) => {
        const pod = find(o, 'Deployment', 'signaling').spec.template.spec;
        pod.volumes = pod.volumes.filter((v: { name: string }) => v.name !== 'nats');
      },
      /Deployment gateway\/signaling: NATS_NKEY_SEED_FILE=\/etc\/gateway\/nats\/seed is not in a mounted Secret/,
    ));

  it('a NATS URL without TLS', () =>
    caught(natsRules, (o) => (find(o, 'ConfigMap', 'sfu-config').data!.NATS_URL = 'nats://nats.gateway.svc.cluster.local:4222'), /Deployment gateway-media\/sfu: NATS_URL nats:\/\/\S+ is not TLS/));

  it("a service with another identity's nkey", () =>
    caught(
      natsRules,
      (o) => {
        const pod = find(o, 'Deployment', 'recorder').spec.template.spec;
        pod.volumes.find((v: { name: string }) => v.name === 'nats').projected.sources[1].secret.name = 'nats-crm-sync';
      },
      /recorder: NATS_NKEY_SEED_FILE=\S+ comes from Secret nats-crm-sync, not its own identity's \(nats-recorder\)/,
    ));

  it('an nkey seed the servers do not know', () =>
    caught(
      natsRules,
      (o) => (find(o, 'Secret', 'nats-user-keys').stringData!.signaling = 'UCNYFWFRUL4A2C64OOQGRKP3YVNN5TBRBYLDPA75PXJFAQ4D6TRMZ2IW'),
      /signaling: its nkey seed does not match the public key/,
    ));

  it('NATS open to pods that are not ours', () => caught(natsRules, (o) => find(o, 'NetworkPolicy', 'nats').spec.ingress[0].from.push({ podSelector: {} }), /admits pods that are not our services/));

  it("a liveness or startup probe that gives a hung process the pod's long grace period", () => {
    caught(
      graceRules,
      (o) => delete container(o, 'sfu').livenessProbe.terminationGracePeriodSeconds,
      /sfu: container sfu: the livenessProbe has no terminationGracePeriodSeconds: a hung process would get the pod's 190 s/,
    );
    caughtIn(
      'prod',
      graceRules,
      (o) => (container(o, 'recorder').startupProbe.terminationGracePeriodSeconds = 4200),
      /recorder: container recorder: the startupProbe has terminationGracePeriodSeconds 4200/,
    );
  });

  it('a rollout judged over less time than its old pods drain', () =>
    caughtIn('prod', graceRules, (o) => delete find(o, 'Deployment', 'sfu').spec.progressDeadlineSeconds, /sfu: progressDeadlineSeconds 600 is not longer than terminationGracePeriodSeconds 1900/));

  it('an autoscaler without a fallback, or with triggers the fallback does not cover', () => {
    caught(autoscalerFallbackRules, (o) => delete find(o, 'ScaledObject', 'crm-sync').spec.fallback, /ScaledObject gateway\/crm-sync: no fallback/);
    caught(autoscalerFallbackRules, (o) => delete find(o, 'ScaledObject', 'sfu').spec.triggers[0].metadata.ignoreNullValues, /sfu: trigger 0 \(prometheus\): ignoreNullValues is not "false"/);
    caught(
      autoscalerFallbackRules,
      (o) => (find(o, 'ScaledObject', 'recorder').spec.triggers[0] = { type: 'cpu', metricType: 'Utilization', metadata: { value: '60' } }),
      /recorder: trigger 0 \(cpu\): KEDA's fallback does not take cpu or memory triggers/,
    );
    caught(autoscalerFallbackRules, (o) => (find(o, 'ScaledObject', 'sfu').spec.triggers[0].metricType = 'Value'), /sfu: trigger 0 \(prometheus\): metricType is Value, not AverageValue/);
    caught(autoscalerFallbackRules, (o) => delete find(o, 'ScaledObject', 'sfu').spec.fallback.behavior, /sfu: fallback.behavior static may scale sfu down/);
    caught(autoscalerFallbackRules, (o) => (find(o, 'ScaledObject', 'recorder').spec.fallback.replicas = 9), /recorder: fallback.replicas 9 is not between minReplicaCount 1 and maxReplicaCount 2/);
  });

  it('a ServiceMonitor or PrometheusRule a default kube-prometheus-stack does not select', () => {
    caught(monitoringSelectionRules, (o) => delete find(o, 'ServiceMonitor', 'sfu').metadata.labels!.release, /ServiceMonitor gateway-media\/sfu: no label release/);
    caught(monitoringSelectionRules, (o) => (find(o, 'PrometheusRule', 'gateway-slo').metadata.labels!.release = 'monitoring'), /release labels differ \(kube-prometheus-stack, monitoring\)/);
  });

  it('an alert without a severity, or whose runbook is missing', () => {
    const alert = (o: K8sObject[], name: string) =>
      find(o, 'PrometheusRule', 'gateway-media')
        .spec.groups.flatMap((g: { rules: Array<{ alert?: string }> }) => g.rules)
        .find((r: { alert?: string }) => r.alert === name);
    caught(alertRules, (o) => delete alert(o, 'GatewaySfuWorkerDied').labels.severity, /GatewaySfuWorkerDied: severity is not set/);
    caught(alertRules, (o) => delete alert(o, 'GatewaySfuPodsPending').annotations.runbook_url, /GatewaySfuPodsPending: no runbook_url annotation/);
    caught(
      alertRules,
      (o) => (alert(o, 'GatewaySfuPodsPending').annotations.runbook_url = 'docs/runbooks.md#gatewaysfupodspendin'),
      /GatewaySfuPodsPending: runbook_url \S+: docs\/runbooks.md has no heading #gatewaysfupodspendin/,
    );
    caught(alertRules, (o) => (alert(o, 'GatewaySfuPodsPending').annotations.runbook_url = 'docs/runbook.md#gatewaysfupodspending'), /docs\/runbook.md does not exist/);
    caught(alertRules, (o) => (alert(o, 'GatewaySfuPodsPending').annotations.runbook_url = 'https://wiki.example.com/sfu'), /does not point to a heading of a Markdown file in docs\//);
    caught(alertRules, (o) => delete alert(o, 'GatewaySfuHighRoundTripTime').annotations.description, /GatewaySfuHighRoundTripTime: no description annotation/);
  });

  it('an SFU whose Role grants more than patching pods', () => {
    const role = (o: K8sObject[]) => find(o, 'Role', 'sfu-pod-deletion-cost');
    caught(serviceAccountRules, (o) => role(o).rules[0].verbs.push('delete'), /Role gateway-media\/sfu-pod-deletion-cost rule 0 grants more than patching pods: verb delete/);
    caught(serviceAccountRules, (o) => role(o).rules.push({ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }), /rule 1 grants more than patching pods: resource secrets, verb get/);
    caught(serviceAccountRules, (o) => (role(o).rules[0].resources = ['pods/exec']), /grants more than patching pods: resource pods\/exec/);
    caught(serviceAccountRules, (o) => (role(o).rules[0].verbs = ['*']), /grants more than patching pods: verb \*/);
  });

  it('an SFU granted rights across the cluster', () =>
    caught(
      serviceAccountRules,
      (o) =>
        o.push({
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRoleBinding',
          metadata: { name: 'sfu-view' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
          subjects: [{ kind: 'ServiceAccount', name: 'sfu', namespace: 'gateway-media' }],
        }),
      /ClusterRoleBinding sfu-view grants it view across the cluster/,
    ));

  it('an SFU that cannot patch its Pod, or does not know which Pod it is', () => {
    caught(serviceAccountRules, (o) => o.splice(o.indexOf(find(o, 'RoleBinding', 'sfu-pod-deletion-cost')), 1), /no Role in gateway-media lets ServiceAccount sfu patch pods/);
    caught(serviceAccountRules, (o) => (container(o, 'sfu').env = container(o, 'sfu').env.filter((e: { name: string }) => e.name !== 'POD_NAME')), /POD_NAME does not come from the downward API/);
    caught(serviceAccountRules, (o) => delete find(o, 'Deployment', 'sfu').spec.template.spec.serviceAccountName, /runs as the default ServiceAccount/);
    caught(serviceAccountRules, (o) => (find(o, 'Deployment', 'sfu').spec.template.spec.automountServiceAccountToken = false), /no API token is mounted/);
  });

  it('an API token mounted in a workload other than the SFU', () =>
    caught(serviceAccountRules, (o) => delete find(o, 'Deployment', 'signaling').spec.template.spec.automountServiceAccountToken, /Deployment gateway\/signaling: an API token is mounted/));

  describe('the TURN server', () => {
    const coturn = (o: K8sObject[]) => find(o, 'Deployment', 'coturn').spec.template.spec;
    /** Rewrites an option of the rendered turnserver.conf. */
    const setOption = (o: K8sObject[], name: string, value: string | undefined) => {
      const map = find(o, 'ConfigMap', 'turn-config-file');
      const lines = (map.data['turnserver.conf'] as string).split('\n').filter((line) => !line.startsWith(`${name}=`) && line !== name);
      map.data['turnserver.conf'] = [...lines, ...(value === undefined ? [] : [value === '' ? name : `${name}=${value}`])].join('\n');
    };

    it('signaling handing out TURN URLs with no coturn to answer', () =>
      caught(turnRules, (o) => o.splice(o.indexOf(find(o, 'Deployment', 'coturn')), 1), /signaling hands out TURN URLs, but no coturn workload runs/));

    it('no TURN over TLS on 443', () => {
      caught(turnRules, (o) => setOption(o, 'tls-listening-port', '5349'), /coturn: TLS listens on 5349, not 443/);
      caught(turnRules, (o) => setOption(o, 'no-tls', ''), /coturn: TLS listens on no port \(no-tls\), not 443/);
      caught(
        turnRules,
        (o) => {
          const config = find(o, 'ConfigMap', 'signaling-config');
          config.data.SIGNALING_TURN_URLS = config.data.SIGNALING_TURN_URLS.split(',')
            .filter((url: string) => !url.startsWith('turns:'))
            .join(',');
        },
        /no turns: URL on port 443/,
      );
    });

    it("a relay range over the SFU's media or pipe ports", () => {
      caught(turnRules, (o) => setOption(o, 'min-port', '40000'), /relay ports 40000-65535 overlap the SFU's media ports 40000-40000/);
      caught(turnRules, (o) => setOption(o, 'min-port', '41000'), /relay ports 41000-65535 overlap the SFU's pipe ports 42000-42999/);
    });

    it('the shared secret in an environment instead of a file', () => {
      caught(
        turnRules,
        (o) => (coturn(o).containers[0].env = [{ name: 'TURN_SECRET', valueFrom: { secretKeyRef: { name: 'turn-secret', key: 'secret' } } }]),
        /coturn: container coturn: the TURN secret is in the environment \(TURN_SECRET\)/,
      );
      caught(turnRules, (o) => setOption(o, 'static-auth-secret', 'in-the-config-map'), /static-auth-secret is in the ConfigMap/);
      caught(
        configRules,
        (o) => (container(o, 'signaling').volumeMounts = container(o, 'signaling').volumeMounts.filter((m: { name: string }) => m.name !== 'turn-secret')),
        /signaling: SIGNALING_TURN_SECRET_FILE=\/etc\/gateway\/turn\/secret is not in a mounted Secret/,
      );
    });

    it('coturn off the media pool, or two on one node', () => {
      caught(turnRules, (o) => delete coturn(o).nodeSelector, /coturn: no nodeSelector gateway.io\/pool=media/);
      caught(turnRules, (o) => (coturn(o).tolerations = []), /coturn: does not tolerate the media pool's taint/);
      caught(turnRules, (o) => delete coturn(o).affinity, /coturn: a Deployment without required anti-affinity per node: two coturns/);
    });

    it('relays into the private network, or to anything', () => {
      caught(turnRules, (o) => setOption(o, 'denied-peer-ip', '0.0.0.0-0.255.255.255'), /denied-peer-ip=10.0.0.0-10.255.255.255 is missing/);
      caught(turnRules, (o) => (find(o, 'ConfigMap', coturn(o).initContainers[0].envFrom[0].configMapRef.name).data.TURN_ALLOWED_PEER_RANGE = '10.0.0.0/8'), /TURN_ALLOWED_PEER_RANGE is 10.0.0.0\/8/);
      caught(turnRules, (o) => setOption(o, 'no-cli', undefined), /turnserver.conf lacks no-cli/);
    });

    it('coturn whose renewed certificate or rotated secret would wait for a restart', () => {
      const watcher = (o: K8sObject[]) => coturn(o).containers.find((c: { name: string }) => c.name === 'reload');
      caught(turnRules, (o) => (coturn(o).containers = coturn(o).containers.filter((c: { name: string }) => c.name !== 'reload')), /no reload container/);
      caught(turnRules, (o) => delete coturn(o).shareProcessNamespace, /does not share its process namespace/);
      caught(turnRules, (o) => (watcher(o).volumeMounts = watcher(o).volumeMounts.filter((m: { name: string }) => m.name !== 'tls')), /reload does not mount the certificate/);
      caught(turnRules, (o) => (watcher(o).volumeMounts = watcher(o).volumeMounts.filter((m: { name: string }) => m.name !== 'run')), /does not see turnserver's configuration/);
      caught(turnRules, (o) => (watcher(o).volumeMounts.find((m: { name: string }) => m.name === 'run').readOnly = true), /reload mounts \/run\/turn read-only/);
      caught(turnRules, (o) => (watcher(o).volumeMounts = watcher(o).volumeMounts.filter((m: { name: string }) => m.name !== 'secret')), /reload does not mount the shared secret/);
    });

    it('coturn with more than NET_BIND_SERVICE, started through a shell, or probed elsewhere', () => {
      caught(turnRules, (o) => coturn(o).containers[0].securityContext.capabilities.add.push('NET_ADMIN'), /container coturn adds capabilities NET_ADMIN/);
      caught(turnRules, (o) => delete coturn(o).containers[0].command, /container coturn starts the image's entrypoint, not turnserver/);
      caught(
        turnRules,
        (o) => (coturn(o).containers[0].volumeMounts = coturn(o).containers[0].volumeMounts.filter((m: { name: string }) => m.name !== 'tls')),
        /cert=\/etc\/turn\/tls\/tls.crt is not in a Secret mounted in container coturn/,
      );
      caught(turnRules, (o) => (coturn(o).containers[0].livenessProbe = { tcpSocket: { port: 443 } }), /the livenessProbe is not a TCP connection to 3478/);
    });
  });

  describe('scheduling', () => {
    const pod = (o: K8sObject[], name: string) => find(o, 'Deployment', name).spec.template.spec;
    it('a workload without a priority class, or with one not defined', () => {
      caught(schedulingRules, (o) => delete pod(o, 'signaling').priorityClassName, /Deployment gateway\/signaling: names no priorityClassName/);
      caught(schedulingRules, (o) => (pod(o, 'routing').priorityClassName = 'system-cluster-critical-typo'), /priorityClassName system-cluster-critical-typo is not defined here/);
    });
    it('a call carried below the highest class, or waiting work that preempts', () => {
      caught(schedulingRules, (o) => (pod(o, 'sfu').priorityClassName = 'gateway-control'), /gateway-media\/sfu: carries calls in progress but is in gateway-control/);
      caught(schedulingRules, (o) => (pod(o, 'coturn').priorityClassName = 'gateway-deferrable'), /coturn: carries calls in progress/);
      caught(schedulingRules, (o) => (pod(o, 'crm-sync').priorityClassName = 'gateway-control'), /crm-sync: can wait for room but gateway-control preempts others/);
    });
    it('SFUs or crm-sync not spread over zones', () => {
      caught(schedulingRules, (o) => delete pod(o, 'sfu').topologySpreadConstraints, /sfu: no topology spread over zones/);
      caught(schedulingRules, (o) => (pod(o, 'crm-sync').topologySpreadConstraints[0].topologyKey = 'kubernetes.io/hostname'), /crm-sync: no topology spread over zones/);
    });
    it('an SFU with a core per worker and none for its Node.js process', () =>
      caughtIn(
        'prod',
        schedulingRules,
        (o) => (container(o, 'sfu').resources = { requests: { cpu: '8', memory: '8Gi' }, limits: { cpu: '8', memory: '8Gi' } }),
        /asks for 8 cores \(limit 8\) for 8 workers/,
      ));
  });

  describe("the media nodes' kernel settings", () => {
    const tuning = (o: K8sObject[]) => find(o, 'DaemonSet', 'media-node-tuning').spec.template.spec;
    const setEnv = (o: K8sObject[], name: string, value: string) => (tuning(o).initContainers[0].env.find((e: { name: string }) => e.name === name).value = value);
    it('SFUs without it, or it off the media pool or the host network', () => {
      caught(nodeTuningRules, (o) => o.splice(o.indexOf(find(o, 'DaemonSet', 'media-node-tuning')), 1), /nothing sets the media nodes' socket buffers/);
      caught(nodeTuningRules, (o) => delete tuning(o).hostNetwork, /not on the host network/);
      caught(nodeTuningRules, (o) => (tuning(o).tolerations = []), /does not tolerate the media pool's taint/);
    });
    it('ports left in the ephemeral range, or small buffers', () => {
      caughtIn('prod', nodeTuningRules, (o) => setEnv(o, 'RESERVED_PORTS', '40000-40003,42000-42999,49152-65535'), /media ports 40000-40007 are not all reserved/);
      caught(nodeTuningRules, (o) => setEnv(o, 'RESERVED_PORTS', '40000-40063,42000-42999'), /coturn's relay ports 49152-65535 are not all reserved/);
      caught(nodeTuningRules, (o) => setEnv(o, 'RESERVED_PORTS', '40000-40063,49152-65535'), /pipe ports 42000-42999 are not all reserved/);
      caught(nodeTuningRules, (o) => setEnv(o, 'SOCKET_BUFFER_BYTES', '212992'), /socket buffers of 212992 bytes/);
    });
    it('a privileged container that is not the sysctls script, or a script that writes elsewhere', () => {
      caught(containerRules, (o) => (tuning(o).containers[0].securityContext = { privileged: true, runAsUser: 0 }), /container check: runAsNonRoot is not true[\s\S]*is privileged/);
      caught(
        containerRules,
        (o) => (tuning(o).initContainers[0].command[2] += 'echo 1 > /proc/sys/kernel/panic\n'),
        /container sysctls: runAsNonRoot is not true[\s\S]*container sysctls: is privileged/,
      );
    });
  });

  describe('images and their admission policy', () => {
    const policy = (o: K8sObject[]) => find(o, 'ClusterPolicy', 'verify-gateway-images');
    const verify = (o: K8sObject[]) => policy(o).spec.rules[0].verifyImages[0];
    const inProd = (breakIt: (objects: K8sObject[]) => void, message: RegExp) => caughtIn('prod', imageSupplyRules, breakIt, message);

    it('an image by a moving tag, or one not ours without a digest', () => {
      caught(imageSupplyRules, (o) => (container(o, 'recorder').image = 'registry.example.com/gateway/recorder:latest'), /recorder:latest names neither a version tag nor a digest/);
      caught(imageSupplyRules, (o) => (container(o, 'routing').image = 'registry.example.com/gateway/routing'), /gateway\/routing names neither/);
      caught(
        imageSupplyRules,
        (o) =>
          find(o, 'Deployment', 'signaling').spec.template.spec.initContainers?.push({ name: 'wait', image: 'busybox:1.36' }) ??
          (find(o, 'Deployment', 'signaling').spec.template.spec.initContainers = [{ name: 'wait', image: 'busybox:1.36' }]),
        /busybox:1.36 is not released by Gateway and names no digest/,
      );
    });

    it('a policy that only audits, fails open, or does not pin the digest', () => {
      inProd((o) => (verify(o).failureAction = 'Audit'), /failureAction is Audit, not Enforce/);
      inProd((o) => (policy(o).spec.failurePolicy = 'Ignore'), /fails open/);
      inProd((o) => (verify(o).mutateDigest = false), /mutateDigest is false/);
    });

    it('a policy without a signer or without the SBOM', () => {
      inProd((o) => (verify(o).attestors = []), /no signer/);
      inProd((o) => (verify(o).attestations = []), /no https:\/\/cyclonedx.org\/bom attestation/);
      inProd((o) => delete verify(o).attestations[0].attestors[0].entries[0].keyless.issuer, /attestation \(the SBOM\) with its signer/);
    });

    it('an image of ours the policy does not verify: another registry, or a namespace it does not match', () => {
      inProd((o) => (container(o, 'crm-sync').image = 'registry.other.example/gateway/crm-sync:0.1.0'), /registry.other.example\/gateway\/crm-sync:0.1.0 in namespace gateway is not verified/);
      inProd((o) => (policy(o).spec.rules[0].match.any[0].resources.namespaces = ['gateway']), /gateway\/sfu:0.1.0 in namespace gateway-media is not verified/);
    });
  });

  it('an object its schema refuses', () => caught(checkSchemas, (o) => (container(o, 'signaling').ports[0].containerPort = 'http'), /containerPort must be integer/));
});
