import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { find, messages, objectsOf, renderOverlays } from './overlays.js';
import { checkCompose, checkCoturnDockerfile, checkDockerfile, checkDockerignore, checkNatsValues, checkRuntimeModules } from './static.js';
import { repoRoot, serviceNames, type ServiceName } from './services.js';
import { skipForMissing } from '../support/prerequisites.js';

/**
 * What cannot be run here, checked statically (static.ts): the Dockerfile (no Docker engine on
 * this machine) and the bundles it installs, the compose file, and the NATS Helm values, each
 * also shown to reject a broken copy.
 */

const read = (file: string) => readFileSync(path.join(repoRoot, file), 'utf8');

describe("coturn's image (deploy/coturn/Dockerfile)", () => {
  const dockerfile = read('deploy/coturn/Dockerfile');
  const tag = /image: gateway\/coturn:(\S+)/.exec(read('k8s/base/turn.yaml'))?.[1] ?? '';

  it("installs bookworm's coturn at the manifests' tag, binds 443 as a non-root user, has a health check", () => {
    expect(tag).not.toBe('');
    expect(messages(checkCoturnDockerfile(dockerfile, tag))).toEqual([]);
  });

  it('rejects a broken one', () => {
    const broken = dockerfile
      .replace(/ARG DEBIAN_IMAGE=\S+/, 'ARG DEBIAN_IMAGE=debian:bookworm-slim')
      .replace('ARG COTURN_VERSION=4.6.1-1', 'ARG COTURN_VERSION=4.6.2-1')
      .replace(/ *&& setcap[^\n]*\n/, '')
      .replace('USER 1000:1000', 'USER root')
      .replace(/HEALTHCHECK[^\n]*\n/, '');
    const found = messages(checkCoturnDockerfile(broken, tag)).join('\n');
    expect(found).toMatch(/base image debian:bookworm-slim is not Debian bookworm pinned by digest/);
    expect(found).toMatch(/coturn 4.6.2-1 installed, the manifests run gateway\/coturn:4.6.1-1/);
    expect(found).toMatch(/turnserver has no cap_net_bind_service/);
    expect(found).toMatch(/runs as root/);
    expect(found).toMatch(/no HEALTHCHECK/);
  });
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
      .replace(/ARG NODE_IMAGE=\S+/, 'ARG NODE_IMAGE=node:22-bookworm-slim')
      .replace(/(FROM runtime AS signaling[\s\S]*?)USER 1000:1000/, '$1USER root')
      .replace(/(FROM runtime AS recorder[\s\S]*?)HEALTHCHECK[^\n]*\\\n[^\n]*\n/, '$1')
      .replace('npm ci --ignore-scripts --no-audit --no-fund\n', 'npm install\n')
      .replace('COPY services/sfu/package.json services/sfu/\n', '');
    const found = messages(checkDockerfile(broken, { workspaces })).join('\n');
    expect(found).toMatch(/base image node:22-bookworm-slim is not pinned by digest/);
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
  // The provisioning's settings come from the rendered overlays.
  beforeAll(renderOverlays);

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

  it('reject servers spread over zones only where it is convenient, or not over nodes', () => {
    const loose = values();
    loose.podTemplate.topologySpreadConstraints['topology.kubernetes.io/zone'].whenUnsatisfiable = 'ScheduleAnyway';
    expect(messages(checkNatsValues(loose)).join('\n')).toMatch(/not spread strictly over topology\.kubernetes\.io\/zone/);
    const unspread = values();
    delete unspread.podTemplate.topologySpreadConstraints['kubernetes.io/hostname'];
    expect(messages(checkNatsValues(unspread)).join('\n')).toMatch(/not spread strictly over kubernetes\.io\/hostname/);
    // Development's one server drops only the zone constraint, and nothing of production's.
    const dev = parse(read('deploy/nats/values-dev.yaml'));
    expect(dev.podTemplate.topologySpreadConstraints).toEqual({ 'topology.kubernetes.io/zone': null });
  });

  it('reject an image by tag only and servers that lesser work may evict', () => {
    const broken = values();
    broken.container.image.tag = '2.14.2-alpine';
    delete broken.promExporter.image;
    broken.podTemplate.merge.spec.priorityClassName = 'gateway-deferrable';
    const found = messages(checkNatsValues(broken)).join('\n');
    expect(found).toMatch(/container\.image nats:2\.14\.2-alpine names no digest/);
    expect(found).toMatch(/promExporter\.image \(the chart default\): names no digest/);
    expect(found).toMatch(/priorityClassName is gateway-deferrable, not gateway-call/);
    // nats-box, off here, would need its digest too once turned on.
    const withBox = values();
    withBox.natsBox.enabled = true;
    expect(messages(checkNatsValues(withBox)).join('\n')).toMatch(/natsBox\.container\.image \(the chart default\): names no digest/);
  });

  it('rejects a single server without a disruption budget, and a PodMonitor Prometheus does not select', () => {
    const broken = values();
    broken.config.cluster.replicas = 1;
    broken.podDisruptionBudget.enabled = false;
    delete broken.promExporter.podMonitor.merge;
    const found = messages(checkNatsValues(broken)).join('\n');
    expect(found).toMatch(/not a cluster of at least 3 servers/);
    expect(found).toMatch(/no PodDisruptionBudget/);
    expect(found).toMatch(/no PodMonitor with the label release: kube-prometheus-stack/);
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
