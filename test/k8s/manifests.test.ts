import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  availabilityRules,
  checkManifests,
  checkSchemas,
  configRules,
  cpuCores,
  containerRules,
  envValues,
  resolveEnv,
  drainRules,
  grpcIdentityRules,
  exposureRules,
  ingressRules,
  natsRules,
  networkPolicyRules,
  probeRules,
  scalingRules,
  sfuRules,
  type K8sObject,
  type Rule,
  type Violation,
} from './rules.js';
import { checkCompose, checkDockerfile, checkDockerignore, checkNatsValues, checkRuntimeModules } from './static.js';
import { repoRoot, serviceNames, serviceSpecs, type ServiceName } from './services.js';
import { skipForMissing } from '../support/prerequisites.js';

/**
 * The deployment, checked without a cluster or a Docker engine: every kustomize overlay renders,
 * every object validates against its schema and follows the rules in rules.ts; the Dockerfile,
 * the compose file and the NATS values are checked statically. Each rule is also shown to
 * reject a deliberately broken object.
 */

const kubectl = process.env.KUBECTL ?? 'kubectl';
const overlaysDir = path.join(repoRoot, 'k8s/overlays');
const overlays = readdirSync(overlaysDir).filter((name) => existsSync(path.join(overlaysDir, name, 'kustomization.yaml')));
const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');

function render(dir: string): K8sObject[] {
  let output: string;
  try {
    output = execFileSync(kubectl, ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr || (error as Error).message;
    throw new Error(`${kubectl} kustomize ${path.relative(repoRoot, dir)} failed (scripts/setup.sh installs kubectl):\n${detail}`);
  }
  return parseAllDocuments(output)
    .map((doc) => doc.toJS() as K8sObject)
    .filter(Boolean);
}

const rendered = new Map<string, K8sObject[]>();
const objectsOf = (overlay: string) => structuredClone(rendered.get(overlay)!);
const find = (objects: K8sObject[], kind: string, name: string) => {
  const found = objects.find((o) => o.kind === kind && (o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)));
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
};
const container = (objects: K8sObject[], name: ServiceName) => find(objects, 'Deployment', name).spec.template.spec.containers[0];
const messages = (violations: Violation[]) => violations.map((v) => `[${v.rule}] ${v.object}: ${v.message}`);

beforeAll(() => {
  const version = execFileSync(kubectl, ['version', '--client'], { encoding: 'utf8' });
  const kustomize = /Kustomize Version: v(\d+)/.exec(version)?.[1];
  if (!kustomize || Number(kustomize) < 5) throw new Error(`${kubectl} has kustomize ${kustomize ?? '(none)'}; the overlays need v5 (kubectl 1.27 or newer): run scripts/setup.sh`);
  for (const overlay of overlays) rendered.set(overlay, render(path.join(overlaysDir, overlay)));
});

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
    expect(find(objects, 'Ingress', 'signaling').spec.tls).toBeUndefined();
    for (const service of serviceNames) expect(cpuCores(container(objects, service).resources.limits.cpu)).toBeLessThanOrEqual(1);
  });

  it('prod with the KMS component: each service that wraps keys runs under its own IAM role and reads the aliases from the secret store', () => {
    const dir = mkdtempSync(path.join(repoRoot, 'k8s', '.kms-check-'));
    let objects: K8sObject[];
    try {
      writeFileSync(path.join(dir, 'kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../overlays/prod\ncomponents:\n  - ../components/kms\n');
      objects = render(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(messages(checkSchemas(objects))).toEqual([]);
    // The rules hold but for what they cannot see: the aliases' value is in the secret store.
    expect(messages(checkManifests(objects)).filter((m) => !m.includes('GATEWAY_KEYRING=kms needs GATEWAY_KMS_KEYS'))).toEqual([]);
    expect(find(objects, 'ConfigMap', 'gateway-common').data.GATEWAY_KEYRING).toBe('kms');
    expect(find(objects, 'ExternalSecret', 'gateway-tenants').spec.data.map((d: { secretKey: string }) => d.secretKey)).toContain('GATEWAY_KMS_KEYS');
    for (const service of ['signaling', 'recorder', 'crm-sync'] as const) {
      const pod = find(objects, 'Deployment', service).spec.template.spec;
      expect(pod.serviceAccountName).toBe(service);
      expect(find(objects, 'ServiceAccount', service).metadata.annotations?.['eks.amazonaws.com/role-arn']).toMatch(/^arn:aws:iam::\d{12}:role\/./);
      const env = resolveEnv(pod.containers[0], 'gateway', objects);
      expect(env.entries.get('GATEWAY_KMS_KEYS')?.source).toBe('external');
      // With the aliases the secret store holds, each service takes its configuration.
      expect(() => serviceSpecs[service].settings({ ...envValues(env), GATEWAY_KMS_KEYS: JSON.stringify({ demo: 'alias/gateway/demo' }) })).not.toThrow();
    }
  });

  it('prod: more replicas and workers, TLS on the Ingress, mutual TLS on gRPC, tenants from the secret store', () => {
    const objects = objectsOf('prod');
    expect(find(objects, 'HorizontalPodAutoscaler', 'signaling').spec.minReplicas).toBeGreaterThanOrEqual(3);
    for (const name of ['sfu', 'recorder', 'crm-sync']) expect(find(objects, 'ScaledObject', name).spec.minReplicaCount).toBeGreaterThanOrEqual(2);
    expect(find(objects, 'Ingress', 'signaling').spec.tls?.[0]?.secretName).toBeTruthy();
    expect(find(objects, 'ConfigMap', 'sfu-config').data.SFU_WORKERS).toBe('8');
    for (const name of ['sfu-config', 'signaling-config', 'recorder-config']) expect(find(objects, 'ConfigMap', name).data.GRPC_TLS_CA_FILE).toBeTruthy();
    for (const service of ['sfu', 'signaling', 'recorder']) expect(find(objects, 'Certificate', `${service}-grpc`).spec.dnsNames).toEqual([`${service}.gateway.internal`]);
    expect(objects.some((o) => o.kind === 'Secret' && o.metadata.name === 'gateway-tenants')).toBe(false);
    expect(find(objects, 'ExternalSecret', 'gateway-tenants').spec.target.name).toBe('gateway-tenants');
    // No placeholder NATS nkey: every identity's comes from the secret store.
    expect(objects.filter((o) => o.kind === 'Secret' && o.metadata.name.startsWith('nats-')).map((o) => o.metadata.name)).toEqual([]);
    for (const name of ['nats-signaling', 'nats-sfu', 'nats-recorder', 'nats-crm-sync', 'nats-residue', 'nats-admin', 'nats-user-keys'])
      expect(find(objects, 'ExternalSecret', name).spec.target.name).toBe(name);
  });
});

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
    caught(exposureRules, (o) => (find(o, 'Ingress', 'signaling').spec.rules[0].http.paths[0].backend.service = { name: 'recorder', port: { name: 'grpc' } }), /routes to recorder port grpc/));

  it('another workload on the host network', () =>
    caught(exposureRules, (o) => (find(o, 'Deployment', 'signaling').spec.template.spec.hostNetwork = true), /on the host network: only the SFU may be/));

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

  it('crm-sync scaled on a consumer it does not hold', () =>
    caught(scalingRules, (o) => (find(o, 'ScaledObject', 'crm-sync').spec.triggers[0].metadata.consumer = 'crm-sync'), /no nats-jetstream trigger on GATEWAY_RECORDINGS \/ crm-sync-recordings/));

  it('a service that may scale to zero', () => caught(scalingRules, (o) => (find(o, 'ScaledObject', 'recorder').spec.minReplicaCount = 0), /may scale to zero/));

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

  it('an object its schema refuses', () => caught(checkSchemas, (o) => (container(o, 'signaling').ports[0].containerPort = 'http'), /containerPort must be integer/));
});

describe('container images (deploy/Dockerfile)', () => {
  const dockerfile = read('deploy/Dockerfile');
  const workspaces = (JSON.parse(read('package.json')).workspaces as string[]).flatMap((pattern) => {
    const dir = pattern.replace(/\/\*$/, '');
    return readdirSync(path.join(repoRoot, dir))
      .filter((name) => existsSync(path.join(repoRoot, dir, name, 'package.json')))
      .map((name) => `${dir}/${name}`);
  });

  it('builds each service in stages, on bookworm, from the lockfile, as a non-root user with a health check', () => {
    expect(messages(checkDockerfile(dockerfile, { workspaces }))).toEqual([]);
    expect(messages(checkDockerignore(read('.dockerignore')))).toEqual([]);
  });

  it('rejects a broken Dockerfile', () => {
    const broken = dockerfile
      .replace('ARG NODE_IMAGE=node:22-bookworm-slim', 'ARG NODE_IMAGE=node:latest')
      .replace(/(FROM runtime AS signaling[\s\S]*?)USER 1000:1000/, '$1USER root')
      .replace(/(FROM runtime AS recorder[\s\S]*?)HEALTHCHECK[^\n]*\\\n[^\n]*\n/, '$1')
      .replace('npm ci --ignore-scripts --no-audit --no-fund\n', 'npm install\n')
      .replace('COPY services/sfu/package.json services/sfu/\n', '');
    const found = messages(checkDockerfile(broken, { workspaces })).join('\n');
    expect(found).toMatch(/base image node:latest is not pinned/);
    expect(found).toMatch(/target signaling: runs as root/);
    expect(found).toMatch(/target recorder: no HEALTHCHECK/);
    expect(found).toMatch(/npm install ignores the lockfile/);
    expect(found).toMatch(/stage \S+: services\/sfu\/package.json is not copied before npm ci/);
  });

  it('gives the SFU image the libraries its mediasoup worker links against', (context) => {
    const cache = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'gateway/mediasoup-worker');
    const worker =
      process.env.MEDIASOUP_WORKER_BIN ??
      (existsSync(cache)
        ? readdirSync(cache)
            .map((dir) => path.join(cache, dir, 'mediasoup-worker'))
            .find((file) => existsSync(file))
        : undefined);
    if (!worker) return skipForMissing(context, 'a mediasoup worker, built by scripts/mediasoup-worker.sh');
    const libraries = [...execFileSync('ldd', [worker], { encoding: 'utf8' }).matchAll(/=> (\/\S+)/g)].map((m) => m[1]);
    // dpkg knows each file by the path its package installed it at: /lib or /usr/lib (merged /usr).
    const owner = (library: string) => {
      const real = realpathSync(library);
      for (const candidate of new Set([library, real, real.replace(/^\/usr\/lib\//, '/lib/'), real.replace(/^\/lib\//, '/usr/lib/')])) {
        try {
          return execFileSync('dpkg', ['-S', candidate], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(':')[0];
        } catch {
          // not under this path
        }
      }
      throw new Error(`no Debian package holds ${library}`);
    };
    const owners = new Set(libraries.map(owner));
    // Already in the node image: the C and C++ runtimes Node itself needs.
    for (const base of ['libc6', 'libgcc-s1', 'libstdc++6']) owners.delete(base);
    expect([...owners].length).toBeGreaterThan(0);
    expect(messages(checkDockerfile(dockerfile, { workspaces, sfuRuntimePackages: [...owners] }))).toEqual([]);
    // A dpkg run per library and candidate path: over half a minute on a loaded machine.
  }, 120_000);

  it('bundles every service, and installs what a bundle loads at run time', () => {
    const outdir = mkdtempSync(path.join(os.tmpdir(), 'gateway-bundles-'));
    try {
      const output = execFileSync(process.execPath, [path.join(repoRoot, 'deploy/bundle.mjs'), '--outdir', outdir], { encoding: 'utf8' });
      const needs: Partial<Record<ServiceName, string[]>> = {};
      for (const service of serviceNames) {
        expect(existsSync(path.join(outdir, service, 'main.mjs'))).toBe(true);
        const line = output.split('\n').find((l) => l.startsWith(`${service}:`)) ?? '';
        needs[service] = /needs (.+) in node_modules/.exec(line)?.[1].split(', ') ?? [];
      }
      expect(needs.sfu).toContain('mediasoup');
      // The provisioning step travels in the crm-sync image (the nats-provision Job).
      expect(existsSync(path.join(outdir, 'crm-sync', 'nats-provision.mjs'))).toBe(true);
      // So does the operators' tenants CLI (key rotation, offboarding).
      expect(existsSync(path.join(outdir, 'crm-sync', 'tenants.mjs'))).toBe(true);
      expect(existsSync(path.join(outdir, 'crm-sync', 'residue.mjs'))).toBe(true);
      expect(messages(checkRuntimeModules(dockerfile, needs))).toEqual([]);
      expect(messages(checkRuntimeModules(dockerfile.replace('--workspace=@gateway/signaling', ''), needs)).join('\n')).toMatch(/target signaling: its bundle loads sharp/);
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('compose (deploy/compose.yaml)', () => {
  const compose = () => parse(read('deploy/compose.yaml'), { merge: true });

  it('runs NATS with JetStream and every service with variables it reads and values it accepts', () => {
    expect(messages(checkCompose(compose()))).toEqual([]);
  });

  it('rejects a broken compose file', () => {
    const doc = compose();
    doc.services.sfu.environment.SFU_WORKERS = '3';
    doc.services.signaling.environment.SIGNALING_PORTS = '8080';
    doc.services.recorder.tmpfs = ['/tmp'];
    doc.services.nats.command = [];
    const found = messages(checkCompose(doc)).join('\n');
    expect(found).toMatch(/media port 40002\/udp of worker 2 is not published/);
    expect(found).toMatch(/SIGNALING_PORTS is not a variable signaling reads/);
    expect(found).toMatch(/RECORDER_WORK_DIR=.* is not on a tmpfs/);
    expect(found).toMatch(/JetStream is not enabled/);
  });
});

describe('NATS Helm values (deploy/nats)', () => {
  const values = () => parse(read('deploy/nats/values.yaml'));

  it('make a three-server JetStream cluster on volumes, with resources, a disruption budget and non-root pods', () => {
    expect(messages(checkNatsValues(values()))).toEqual([]);
  });

  it('are matched by the provisioning: prod keeps as many copies as the chart has servers, dev one for its one server', () => {
    const provisioning = (overlay: string) => find(objectsOf(overlay), 'ConfigMap', 'nats-provision-config').data!;
    expect(Number(provisioning('prod').NATS_REPLICAS)).toBe(3);
    expect(Number(provisioning('prod').NATS_REPLICAS)).toBeLessThanOrEqual(values().config.cluster.replicas);
    const dev = { ...values(), ...parse(read('deploy/nats/values-dev.yaml')) };
    expect(dev.config.cluster.enabled).toBe(false);
    expect(Number(provisioning('dev').NATS_REPLICAS)).toBe(1);
    // The storage the catalog shares out fits each server's JetStream volume.
    const gib = (size: string) => Number(/^(\d+)Gi/.exec(size)![1]);
    expect(gib(provisioning('prod').NATS_STORAGE_BUDGET!)).toBeLessThan(gib(values().config.jetstream.fileStore.pvc.size));
    expect(gib(provisioning('dev').NATS_STORAGE_BUDGET!)).toBeLessThan(gib(dev.config.jetstream.fileStore.pvc.size));
  });

  it('rejects a single server without a disruption budget', () => {
    const broken = values();
    broken.config.cluster.replicas = 1;
    broken.podDisruptionBudget.enabled = false;
    const found = messages(checkNatsValues(broken)).join('\n');
    expect(found).toMatch(/not a cluster of at least 3 servers/);
    expect(found).toMatch(/no PodDisruptionBudget/);
  });

  it('reject clients without TLS, and permissions that drifted from access.ts', () => {
    const broken = values();
    delete broken.config.nats.tls;
    broken.config.merge.authorization.users[0].permissions.publish.allow.push('>');
    delete broken.container.env.NATS_NKEY_SFU;
    const found = messages(checkNatsValues(broken)).join('\n');
    expect(found).toMatch(/clients do not connect over TLS/);
    expect(found).toMatch(/the servers do not verify client certificates/);
    expect(found).toMatch(/config.merge.authorization is not what packages\/common\/src\/jetstream\/access.ts gives/);
    expect(found).toMatch(/container.env.NATS_NKEY_SFU/);
  });
});
