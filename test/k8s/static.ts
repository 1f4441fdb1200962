import { natsChartAuthorization, natsChartEnv } from '@gateway/common';
import { knownVariable, serviceNames, serviceSpecs, type Env, type ServiceName } from './services.js';
import type { Violation } from './objects.js';
import { prometheusRelease } from './monitoringRules.js';

/**
 * Static checks of what cannot be run here: the Dockerfile (no Docker engine on this machine),
 * the compose file and the NATS Helm values. Each returns the violations it finds.
 */

// Parsed YAML of any shape.
type Json = any;

// ---------------------------------------------------------------------------------------------
// Dockerfile

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

export interface Stage {
  name: string;
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  globalArgs: Map<string, string>;
  stages: Stage[];
}

/** Instructions with their continuation lines joined; comments and blank lines dropped. */
export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    if (!pending && (line.trim() === '' || line.trimStart().startsWith('#'))) return;
    if (pending && line.trimStart().startsWith('#')) return;
    if (!pending) start = index + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = (pending + line).trim();
    pending = '';
    const [keyword, ...rest] = full.split(/\s+/);
    instructions.push({ keyword: keyword.toUpperCase(), args: rest.join(' '), line: start });
  });
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const i of instructions) {
    if (i.keyword === 'FROM') {
      const match = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      stages.push({ name: match?.[2] ?? '', from: match?.[1] ?? i.args, instructions: [] });
    } else if (stages.length === 0) {
      if (i.keyword === 'ARG') {
        const [name, value = ''] = i.args.split('=');
        globalArgs.set(name, value);
      }
    } else {
      stages[stages.length - 1].instructions.push(i);
    }
  }
  return { globalArgs, stages };
}

/**
 * coturn's image (deploy/coturn/Dockerfile): Debian bookworm's own package at the version the
 * manifests' image tag names, turnserver allowed to bind 443 as a non-root user, a health check.
 */
export function checkCoturnDockerfile(text: string, imageTag: string): Violation[] {
  const found: Violation[] = [];
  const add = (message: string) => found.push({ rule: 'coturn-image', object: 'deploy/coturn/Dockerfile', message });
  const file = parseDockerfile(text);
  const stage = file.stages.at(-1);
  if (!stage) return [{ rule: 'coturn-image', object: 'deploy/coturn/Dockerfile', message: 'no FROM' }];
  const args = new Map(stage.instructions.filter((i) => i.keyword === 'ARG').map((i) => i.args.split('=') as [string, string]));
  const expand = (value: string) => value.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => args.get(name) ?? file.globalArgs.get(name) ?? whole);
  const base = expand(stage.from);
  if (!/^debian:bookworm[\w.-]*@sha256:[0-9a-f]{64}$/.test(base)) add(`base image ${base} is not Debian bookworm pinned by digest`);
  const runs = stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => expand(i.args));
  const version = runs.map((r) => /\bcoturn=(\S+)/.exec(r)?.[1]).find(Boolean);
  if (!version) add('coturn is not installed at a pinned version (coturn=<version>)');
  else if (version !== imageTag) add(`coturn ${version} installed, the manifests run gateway/coturn:${imageTag}`);
  if (!runs.some((r) => /setcap cap_net_bind_service=\+ep \/usr\/bin\/turnserver/.test(r))) add('turnserver has no cap_net_bind_service: a non-root user cannot bind 443');
  const user = stage.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args;
  if (!user || /^(root|0)(:|$)/.test(user)) add(`runs as ${user ?? 'root (no USER)'}`);
  if (!stage.instructions.some((i) => i.keyword === 'HEALTHCHECK')) add('no HEALTHCHECK');
  return found;
}

/** The stage and the stages it is built FROM, nearest first. */
function lineage(file: Dockerfile, stage: Stage): Stage[] {
  const chain = [stage];
  let current = stage;
  for (;;) {
    const parent = file.stages.find((s) => s.name === current.from);
    if (!parent || chain.includes(parent)) return chain;
    chain.push(parent);
    current = parent;
  }
}

const find = (chain: Stage[], keyword: string) => chain.flatMap((s) => s.instructions.filter((i) => i.keyword === keyword));
const last = (chain: Stage[], keyword: string) => chain.map((s) => s.instructions.filter((i) => i.keyword === keyword).at(-1)).find(Boolean);

/** ENV names and values of an instruction (`ENV A=1 B=2` or `ENV A 1`). */
function envOf(i: Instruction): Env {
  if (!i.args.includes('=')) {
    const [name, ...value] = i.args.split(/\s+/);
    return { [name]: value.join(' ') };
  }
  return Object.fromEntries([...i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)].map((m) => [m[1], m[2].replace(/^"|"$/g, '')]));
}

export interface DockerfileExpectations {
  /** Workspace folders (packages/x, services/y): each package.json must reach npm ci. */
  workspaces: string[];
  /** Debian packages the SFU worker links against (from ldd), when the worker is at hand. */
  sfuRuntimePackages?: string[];
}

export function checkDockerfile(text: string, expect: DockerfileExpectations): Violation[] {
  const found: Violation[] = [];
  const add = (object: string, message: string) => found.push({ rule: 'dockerfile', object, message });
  const file = parseDockerfile(text);
  if (file.stages.length === 0) add('Dockerfile', 'no FROM');
  for (const stage of file.stages) {
    if (!stage.name) add(`FROM ${stage.from}`, 'a stage without a name (FROM ... AS <name>)');
    if (file.stages.some((s) => s.name === stage.from)) continue;
    const image = stage.from.replace(/\$\{?(\w+)\}?/g, (_, name: string) => file.globalArgs.get(name) ?? '');
    // By digest: a tag can be moved under the same name (docs/supply-chain.md).
    if (!/@sha256:[0-9a-f]{64}$/.test(image)) add(`stage ${stage.name}`, `base image ${image || stage.from} is not pinned by digest`);
    if (!/bookworm/.test(image)) add(`stage ${stage.name}`, `base image ${image} is not Debian bookworm (the mediasoup worker is built for it)`);
  }
  const all = file.stages.flatMap((s) => s.instructions);
  const runs = all.filter((i) => i.keyword === 'RUN').map((i) => i.args);
  if (!runs.some((r) => /\bnpm ci\b/.test(r))) add('Dockerfile', 'dependencies are not installed with npm ci (the lockfile)');
  if (runs.some((r) => /\bnpm (install|i)\b/.test(r))) add('Dockerfile', 'npm install ignores the lockfile: use npm ci');
  // What each npm ci sees: the files copied into its stage (and the stages below it) before it runs.
  for (const stage of file.stages) {
    const at = stage.instructions.findIndex((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args));
    if (at < 0) continue;
    const before = [
      ...lineage(file, stage)
        .slice(1)
        .flatMap((s) => s.instructions),
      ...stage.instructions.slice(0, at),
    ];
    const copied = before.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from')).flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    const wholeContext = copied.includes('.');
    const object = `stage ${stage.name}`;
    if (!wholeContext && !copied.includes('package-lock.json')) add(object, 'package-lock.json is not copied before npm ci');
    for (const workspace of expect.workspaces) {
      if (!wholeContext && !copied.includes(`${workspace}/package.json`)) add(object, `${workspace}/package.json is not copied before npm ci, which needs every workspace`);
    }
  }
  for (const service of serviceNames) {
    const stage = file.stages.find((s) => s.name === service);
    if (!stage) {
      add(`target ${service}`, 'missing');
      continue;
    }
    const chain = lineage(file, stage);
    const object = `target ${service}`;
    const user = last(chain, 'USER')?.args;
    if (!user || /^(root|0)(:|$)/.test(user)) add(object, `runs as ${user ?? 'root (no USER)'}`);
    if (!last(chain, 'HEALTHCHECK')) add(object, 'no HEALTHCHECK');
    const cmd = last(chain, 'CMD') ?? last(chain, 'ENTRYPOINT');
    if (!cmd?.args.startsWith('[')) add(object, 'no CMD in exec form (the process must get SIGTERM itself to drain)');
    const env: Env = Object.assign({}, ...find(chain, 'ENV').reverse().map(envOf));
    for (const name of Object.keys(env)) if (!knownVariable(service, name)) add(object, `ENV ${name} is not a variable ${service} reads`);
    const installs = find(chain, 'RUN')
      .map((i) => i.args)
      .join('\n');
    if (service === 'sfu') {
      if (!env.MEDIASOUP_WORKER_BIN) add(object, 'MEDIASOUP_WORKER_BIN is not set');
      const workerCopy = find(chain, 'COPY').find((i) => i.args.includes('mediasoup-worker'));
      const builder = file.stages.find((s) => workerCopy?.args.includes(`--from=${s.name}`));
      const built = builder && lineage(file, builder).some((s) => s.instructions.some((i) => i.keyword === 'RUN' && i.args.includes('scripts/mediasoup-worker.sh')));
      const inputs = builder && lineage(file, builder).some((s) => s.instructions.some((i) => i.keyword === 'COPY' && i.args.includes('scripts/mediasoup-worker/')));
      if (!built || !inputs) add(object, 'the worker is not built by scripts/mediasoup-worker.sh with scripts/mediasoup-worker/ in a build stage');
      for (const pkg of expect.sfuRuntimePackages ?? []) if (!new RegExp(`\\b${pkg}\\b`).test(installs)) add(object, `the worker needs ${pkg} (ldd), which is not installed`);
    }
    if (service === 'recorder' && !/\bffmpeg\b/.test(installs)) add(object, 'ffmpeg is not installed');
    if (service !== 'recorder' && /\bffmpeg\b/.test(installs)) add(object, 'installs ffmpeg, which only the recorder uses');
  }
  return found;
}

export function checkDockerignore(text: string): Violation[] {
  const entries = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  return ['node_modules', '.git', '.data']
    .filter((needed) => !entries.some((e) => e === needed || e === `**/${needed}` || e === `${needed}/`))
    .map((needed) => ({ rule: 'dockerfile', object: '.dockerignore', message: `${needed} is not excluded from the build context` }));
}

// ---------------------------------------------------------------------------------------------
// Compose

/** `${NAME:-default}` as compose would fill it with nothing set. */
const interpolate = (value: unknown) => String(value).replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, __, fallback: string | undefined) => fallback ?? '');

function composeEnv(service: Json): Env {
  const raw = service.environment ?? {};
  const pairs: Array<[string, string]> = Array.isArray(raw)
    ? raw.map((entry: string) => {
        const at = entry.indexOf('=');
        return [entry.slice(0, at), entry.slice(at + 1)];
      })
    : Object.entries(raw).map(([k, v]) => [k, v === null ? '' : String(v)]);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v)]).filter(([, v]) => v !== ''));
}

/** Published port ranges of a compose service, `host:container/protocol`, by protocol. */
function publishedPorts(service: Json): Array<{ container: number; protocol: string }> {
  const ports: Array<{ container: number; protocol: string }> = [];
  for (const entry of service.ports ?? []) {
    const text = typeof entry === 'string' ? entry : `${entry.published}:${entry.target}/${entry.protocol ?? 'tcp'}`;
    const [spec, protocol = 'tcp'] = text.split('/');
    const container = spec.split(':').at(-1) ?? '';
    const [from, to = from] = container.split('-').map(Number);
    for (let port = from; port <= to; port++) ports.push({ container: port, protocol });
  }
  return ports;
}

export function checkCompose(doc: Json): Violation[] {
  const found: Violation[] = [];
  const add = (object: string, message: string) => found.push({ rule: 'compose', object: `compose ${object}`, message });
  const services: Record<string, Json> = doc?.services ?? {};
  const nats = services.nats;
  if (!nats) add('nats', 'missing');
  else if (!/(--jetstream|-js)\b/.test([nats.command].flat().join(' '))) add('nats', 'JetStream is not enabled (--jetstream)');
  const addressOf = (name: string): string | undefined => Object.values<Json>(services[name]?.networks ?? {})[0]?.ipv4_address;
  for (const [name, service] of Object.entries(services)) {
    const image: string | undefined = service.image;
    if (image && (!/:[^/:]+$/.test(image) || image.endsWith(':latest'))) add(name, `image ${image} is not pinned to a tag`);
  }
  for (const name of serviceNames) {
    const service = services[name];
    if (!service) {
      add(name, 'missing');
      continue;
    }
    if (service.build?.dockerfile !== 'deploy/Dockerfile' || service.build?.target !== name) add(name, `is not built from deploy/Dockerfile, target ${name}`);
    const env = composeEnv(service);
    for (const variable of Object.keys(env)) if (!knownVariable(name, variable)) add(name, `${variable} is not a variable ${name} reads`);
    let settings;
    try {
      settings = serviceSpecs[name as ServiceName].settings(env);
    } catch (error) {
      add(name, `${name} would refuse its configuration: ${error instanceof Error ? error.message : String(error)}`);
      continue;
    }
    const natsHost = /^tls:\/\/([^:/]+)/.exec(env.NATS_URL ?? '')?.[1];
    const natsAliases: string[] = Object.values<Json>(services.nats?.networks ?? {}).flatMap((n) => n?.aliases ?? []);
    if (natsHost !== 'nats' && natsHost !== addressOf('nats') && !natsAliases.includes(natsHost ?? '')) add(name, `NATS_URL does not point at the nats service over TLS (${env.NATS_URL ?? 'unset'})`);
    if (env.OTEL_SERVICE_NAME !== name) add(name, `OTEL_SERVICE_NAME is not "${name}"`);
    if (settings.sfu) {
      if (!env.SFU_ANNOUNCED_ADDRESS) add(name, 'SFU_ANNOUNCED_ADDRESS is not set');
      if (!env.SFU_WORKERS) add(name, "SFU_WORKERS is not set: the default (the machine's cores) would not match the published ports");
      if (service.network_mode !== 'host') {
        const published = publishedPorts(service);
        for (let i = 0; i < settings.sfu.workers; i++) {
          for (const protocol of ['udp', 'tcp']) {
            if (!published.some((p) => p.container === settings.sfu!.rtcPortMin + i && p.protocol === protocol))
              add(name, `media port ${settings.sfu.rtcPortMin + i}/${protocol} of worker ${i} is not published`);
          }
        }
      }
      if (env.SFU_TAP_LISTEN_IP !== addressOf('sfu')) add(name, "SFU_TAP_LISTEN_IP is not the SFU container's address (taps would come from loopback)");
      const grace = Number(/^(\d+)s$/.exec(service.stop_grace_period ?? '')?.[1] ?? 10);
      if (grace < settings.sfu.drainGraceSeconds + 10) add(name, `stop_grace_period ${service.stop_grace_period ?? '10s'} is shorter than the drain (${settings.sfu.drainGraceSeconds} s)`);
    }
    if (settings.recorder) {
      if (env.RECORDER_RTP_IP !== addressOf('recorder')) add(name, "RECORDER_RTP_IP is not the recorder container's address");
      const tmpfs: string[] = [service.tmpfs ?? []].flat();
      const workDir = settings.recorder.workDir;
      if (!tmpfs.some((t) => workDir === t.split(':')[0] || workDir.startsWith(`${t.split(':')[0]}/`))) add(name, `RECORDER_WORK_DIR=${workDir} is not on a tmpfs`);
    }
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// NATS Helm values

export function checkNatsValues(values: Json): Violation[] {
  const found: Violation[] = [];
  const add = (message: string) => found.push({ rule: 'nats-values', object: 'deploy/nats/values.yaml', message });
  const config = values?.config ?? {};
  if (config.cluster?.enabled !== true || !(config.cluster?.replicas >= 3)) add('not a cluster of at least 3 servers (config.cluster.enabled, replicas)');
  if (config.jetstream?.enabled !== true) add('JetStream is not enabled');
  const fileStore = config.jetstream?.fileStore;
  if (fileStore?.enabled !== true || fileStore?.pvc?.enabled !== true || !fileStore?.pvc?.size) add('JetStream does not store on a PersistentVolumeClaim with a size');
  const resources = values?.container?.merge?.resources;
  for (const kind of ['requests', 'limits']) for (const r of ['cpu', 'memory']) if (!resources?.[kind]?.[r]) add(`no ${r} ${kind.slice(0, -1)} for the nats container`);
  if (values?.podDisruptionBudget?.enabled !== true) add('no PodDisruptionBudget');
  const podMonitor = values?.promExporter?.podMonitor;
  if (podMonitor?.enabled !== true || podMonitor?.merge?.metadata?.labels?.[prometheusRelease.label] !== prometheusRelease.value)
    add(`no PodMonitor with the label ${prometheusRelease.label}: ${prometheusRelease.value} the k8s/ objects carry (promExporter.podMonitor.merge.metadata.labels)`);
  if (values?.podTemplate?.merge?.spec?.securityContext?.runAsNonRoot !== true) add('the pods do not run as non-root');
  // The admission policy admits images we do not release only by digest (docs/supply-chain.md).
  const images: Array<[string, Json]> = [
    ['container.image', values?.container?.image],
    ['reloader.image', values?.reloader?.enabled === false ? undefined : (values?.reloader?.image ?? {})],
    ['promExporter.image', values?.promExporter?.enabled ? (values?.promExporter?.image ?? {}) : undefined],
    ['natsBox.container.image', values?.natsBox?.enabled === false ? undefined : (values?.natsBox?.container?.image ?? {})],
  ];
  for (const [where, image] of images) {
    if (image === undefined) continue;
    const reference = image?.fullImageName ?? `${image?.repository ?? '(the chart default)'}:${image?.tag ?? ''}`;
    if (!/@sha256:[0-9a-f]{64}$/.test(reference)) add(`${where} ${reference} names no digest (<tag>@sha256:... or fullImageName): the admission policy refuses it`);
  }
  // NATS carries the state of every call in progress: it ranks with the SFU, never below.
  const priorityClass = values?.podTemplate?.merge?.spec?.priorityClassName;
  if (priorityClass !== 'gateway-call')
    add(`the servers' priorityClassName is ${priorityClass ?? 'unset'}, not gateway-call (podTemplate.merge.spec.priorityClassName): a server evicted for lesser work costs calls their state`);
  // Three servers in three zones, strictly: two in one zone would lose the quorum with that zone.
  const spread = values?.podTemplate?.topologySpreadConstraints ?? {};
  for (const key of ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']) {
    const constraint = spread[key];
    if (constraint?.whenUnsatisfiable !== 'DoNotSchedule' || constraint?.maxSkew !== 1)
      add(`the servers are not spread strictly over ${key} (podTemplate.topologySpreadConstraints: maxSkew 1, whenUnsatisfiable DoNotSchedule)`);
  }
  // A closed inside: TLS for clients, client certificates verified, the users and permissions
  // of packages/common/src/jetstream/access.ts with the public keys from the environment.
  const tls = config.nats?.tls;
  if (tls?.enabled !== true || !tls?.secretName) add('clients do not connect over TLS (config.nats.tls with a secretName)');
  if (!tls?.ca) add('the servers do not verify client certificates (config.nats.tls.ca)');
  if (JSON.stringify(config.merge?.authorization) !== JSON.stringify(natsChartAuthorization()))
    add('config.merge.authorization is not what packages/common/src/jetstream/access.ts gives: run make nats-values');
  for (const [name, entry] of Object.entries(natsChartEnv())) {
    if (JSON.stringify(values?.container?.env?.[name]) !== JSON.stringify(entry)) add(`container.env.${name} does not read the public nkey from Secret ${entry.valueFrom.secretKeyRef.name}`);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Images and bundles

/**
 * The packages each service's bundle loads from node_modules at run time (deploy/bundle.mjs)
 * must be in its image: a stage that installs that workspace's production dependencies, copied
 * into the target.
 */
export function checkRuntimeModules(text: string, needs: Partial<Record<ServiceName, string[]>>): Violation[] {
  const file = parseDockerfile(text);
  const found: Violation[] = [];
  for (const [service, packages] of Object.entries(needs) as Array<[ServiceName, string[]]>) {
    if (packages.length === 0) continue;
    const stage = file.stages.find((s) => s.name === service);
    if (!stage) continue;
    const sources = find(lineage(file, stage), 'COPY')
      .map((i) => /--from=(\S+)\s+(\S+)/.exec(i.args))
      .filter((m): m is RegExpExecArray => m?.[2].endsWith('node_modules') === true)
      .map((m) => file.stages.find((s) => s.name === m[1]));
    const installs = sources.some(
      (s) => s && lineage(file, s).some((x) => x.instructions.some((i) => i.keyword === 'RUN' && /npm ci\b/.test(i.args) && i.args.includes(`--workspace=@gateway/${service}`))),
    );
    if (!installs) found.push({ rule: 'dockerfile', object: `target ${service}`, message: `its bundle loads ${packages.join(', ')} from node_modules, which the image does not install` });
  }
  return found;
}
