// Production's parts for the kustomize overlays (k8s/components/<part>), generated from the Helm
// chart so that each is written once, in the chart: every part is the difference its values make
// to the chart's rendering with deploy/helm/gateway/ci/production-values.yaml. The parts are
// turned on one after the other, each component holding what its step adds:
//
//   external-secrets    the ExternalSecrets, and the placeholder Secrets deleted
//   grpc-tls            the gRPC Certificates, GRPC_TLS_* and their mounts
//   image-verification  the Kyverno ClusterPolicy
//   kms                 GATEWAY_KEYRING=kms, the aliases' file and ExternalSecret entry, the ServiceAccounts
//
// so an overlay lists them in that order (kms needs external-secrets: it adds to its
// ExternalSecret). New objects become the component's resources, ConfigMap entries
// configMapGenerator merges (k8s/base generates the ConfigMaps), and other changes JSON patches
// that only add (a list grown at its end, a new field), so they apply to k8s/base whatever else an
// overlay changes. test/k8s fails while k8s/components differs from what this writes.
//
//   make k8s-base
import { isDeepStrictEqual } from 'node:util';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { chartDir, renderChartDocuments } from './k8s-base.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const componentsDir = path.join(repoRoot, 'k8s/components');
export const productionValues = path.join(chartDir, 'ci/production-values.yaml');

interface Part {
  name: string;
  /** The value that turns the part on. */
  value: string;
  /** What the component's kustomization.yaml says of it. */
  about: string;
}

export const parts: Part[] = [
  {
    name: 'external-secrets',
    value: 'secrets.externalSecrets.enabled',
    about: `The Secrets from External Secrets (an ExternalSecret each: the tenants and their keys, the NATS
# identities' nkeys and public keys, TURN's shared secret) instead of the base's development
# placeholders. Needs External Secrets and the store of secrets.externalSecrets in the cluster.`,
  },
  {
    name: 'grpc-tls',
    value: 'grpcTls.enabled',
    about: `Mutual TLS between the services over gRPC: a cert-manager Certificate per service of the
# internal CA (grpcTls.issuerRef), mounted at /etc/gateway/grpc-tls, where GRPC_TLS_* point.`,
  },
  {
    name: 'image-verification',
    value: 'imageVerification.enabled',
    about: `Admission of signed images only (docs/supply-chain.md): a Kyverno (1.13 or newer) ClusterPolicy
# for the registry and signer of imageVerification.`,
  },
  {
    name: 'kms',
    value: 'kms.enabled',
    about: `Tenant key-encryption keys in AWS KMS instead of GATEWAY_TENANT_KEYS: the region, the aliases
# (GATEWAY_KMS_KEYS from the secret store, beside the tenants: add after external-secrets) and a
# ServiceAccount per service for its IAM role (kms.serviceAccountAnnotations).`,
  },
];

interface K8sDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
}
interface Doc {
  template: string;
  text: string;
  object: K8sDoc;
}
interface AddOperation {
  op: 'add';
  path: string;
  value: unknown;
}

const idOf = (o: K8sDoc) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** The chart rendered with the production values and the first `on` parts turned on, the others off. */
function renderStep(on: number): Map<string, Doc> {
  const sets = parts.map((part, i) => `${part.value}=${i < on}`);
  const documents = renderChartDocuments([productionValues], sets);
  // YAML 1.1, as Kubernetes reads it: a volume's defaultMode 0440 is octal.
  const read = (text: string) => parse(text, { version: '1.1' }) as K8sDoc;
  return new Map(documents.map((d) => [idOf(read(d.text)), { ...d, object: read(d.text) }]));
}

const pointer = (segments: (string | number)[]) => segments.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

// Pod templates carry a checksum of the chart's ConfigMaps: kustomize's hashed generator names do
// that job for k8s/base.
const ignored = (segments: (string | number)[]) => segments.at(-1) === 'checksum/config';

/** JSON patch operations that turn `before` into `after`: only additions, else an error naming the change (`where` names the object). */
export function additions(before: unknown, after: unknown, segments: (string | number)[], where: string): AddOperation[] {
  if (isDeepStrictEqual(before, after) || ignored(segments)) return [];
  if (isObject(before) && isObject(after)) {
    return Object.keys(after)
      .flatMap((key) =>
        key in before
          ? additions(before[key], after[key], [...segments, key], where)
          : ignored([...segments, key])
            ? []
            : [{ op: 'add' as const, path: pointer([...segments, key]), value: after[key] }],
      )
      .concat(
        Object.keys(before)
          .filter((key) => !(key in after))
          .flatMap((key) => fail(where, segments, `${key} removed`)),
      );
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    if (before.length === after.length) return before.flatMap((item, i) => additions(item, after[i], [...segments, i], where));
    if (after.length > before.length && isDeepStrictEqual(before, after.slice(0, before.length)))
      return after.slice(before.length).map((value) => ({ op: 'add' as const, path: pointer([...segments, '-']), value }));
  }
  return fail(where, segments, 'changed');
}

function fail(where: string, segments: (string | number)[], what: string): never {
  throw new Error(`${where} ${pointer(segments)} ${what}: a production part may only add to the chart's objects (a list's end, a new field), so that it applies to k8s/base`);
}

/** File modes written as the chart writes them (0440), not as the number they are (288). */
const octalModes = (text: string) => text.replace(/^(\s*defaultMode: )(\d+)$/gm, (_, key: string, mode: string) => `${key}0${Number(mode).toString(8)}`);

const header = (part: Part) => `# Generated by \`make k8s-base\` from deploy/helm/gateway (${part.value} and its values in
# ci/production-values.yaml): edit the chart, not this file.
#
# ${part.about}
`;

/** The files of k8s/components/<part>, by part and file name, as the chart renders them. */
export function componentFiles(): Map<string, Map<string, string>> {
  const steps = parts.map((_, i) => renderStep(i));
  steps.push(renderStep(parts.length));
  const components = new Map<string, Map<string, string>>();
  parts.forEach((part, i) => {
    const [before, after] = [steps[i]!, steps[i + 1]!];
    const files = new Map<string, string>();
    const added = [...after.values()].filter((d) => !before.has(idOf(d.object)));
    const byTemplate = new Map<string, string[]>();
    for (const d of added) byTemplate.set(d.template, [...(byTemplate.get(d.template) ?? []), d.text]);
    for (const [template, texts] of byTemplate)
      files.set(template, `# Generated by \`make k8s-base\` from deploy/helm/gateway/templates/${template}: edit the chart, not this file.\n${texts.join('\n---\n')}\n`);

    const patches: Array<Record<string, unknown>> = [];
    const generators: Array<Record<string, unknown>> = [];
    for (const d of before.values()) {
      const o = d.object;
      if (!after.has(idOf(o))) {
        patches.push({ patch: stringify({ $patch: 'delete', apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata.name, namespace: o.metadata.namespace } }).trimEnd() });
        continue;
      }
      const changed = after.get(idOf(o))!.object;
      if (isDeepStrictEqual(o, changed)) continue;
      if (o.kind === 'ConfigMap') {
        const removed = Object.keys(o.data ?? {}).filter((key) => !(key in (changed.data ?? {})));
        if (removed.length > 0) fail(idOf(o), ['data'], `${removed.join(', ')} removed`);
        const literals = Object.entries(changed.data ?? {})
          .filter(([key, value]) => o.data?.[key] !== value)
          .map(([key, value]) => `${key}=${value}`);
        generators.push({ name: o.metadata.name, namespace: o.metadata.namespace, behavior: 'merge', literals });
        continue;
      }
      const ops = additions(o, changed, [], idOf(o));
      if (ops.length > 0)
        patches.push({ target: { kind: o.kind, name: o.metadata.name, ...(o.metadata.namespace ? { namespace: o.metadata.namespace } : {}) }, patch: octalModes(stringify(ops).trimEnd()) });
    }
    const kustomization = {
      apiVersion: 'kustomize.config.k8s.io/v1alpha1',
      kind: 'Component',
      ...(byTemplate.size > 0 ? { resources: [...byTemplate.keys()].sort() } : {}),
      ...(generators.length > 0 ? { configMapGenerator: generators } : {}),
      ...(patches.length > 0 ? { patches } : {}),
    };
    files.set('kustomization.yaml', `${header(part)}${stringify(kustomization, { lineWidth: 0 })}`);
    components.set(part.name, files);
  });
  return components;
}

/** The paths under k8s/components whose content differs from the chart's rendering (or that only one side has). */
export function staleComponentFiles(): string[] {
  const stale: string[] = [];
  for (const [part, files] of componentFiles()) {
    const dir = path.join(componentsDir, part);
    const present = existsSync(dir) ? readdirSync(dir) : [];
    for (const name of [...new Set([...files.keys(), ...present])].sort()) if (!present.includes(name) || files.get(name) !== readFileSync(path.join(dir, name), 'utf8')) stale.push(`${part}/${name}`);
  }
  return stale;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const components = componentFiles();
  for (const [part, files] of components) {
    const dir = path.join(componentsDir, part);
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) if (!files.has(name)) rmSync(path.join(dir, name));
    for (const [name, text] of files) writeFileSync(path.join(dir, name), text);
  }
  console.log(`k8s/components: ${[...components.keys()].join(', ')} rendered from deploy/helm/gateway`);
}
