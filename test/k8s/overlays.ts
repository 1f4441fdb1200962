import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { K8sObject, Violation } from './objects.js';
import { repoRoot, type ServiceName } from './services.js';

/** The kustomize overlays (k8s/overlays/*) rendered with kubectl, and what the deployment tests ask of the objects. */

const kubectl = process.env.KUBECTL ?? 'kubectl';
const overlaysDir = path.join(repoRoot, 'k8s/overlays');
export const overlays = readdirSync(overlaysDir).filter((name) => existsSync(path.join(overlaysDir, name, 'kustomization.yaml')));

export function render(dir: string): K8sObject[] {
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

/** An overlay with components added after its own (k8s/components/<name>), rendered as kubectl would. */
export function renderWithComponents(overlay: string, components: string[]): K8sObject[] {
  const dir = mkdtempSync(path.join(repoRoot, 'k8s', '.with-components-'));
  try {
    const kustomization = [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      `  - ../overlays/${overlay}`,
      'components:',
      ...components.map((c) => `  - ../components/${c}`),
    ];
    writeFileSync(path.join(dir, 'kustomization.yaml'), `${kustomization.join('\n')}\n`);
    return render(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rendered = new Map<string, K8sObject[]>();

/** Renders every overlay, once per test file (in its beforeAll): kubectl must have kustomize v5. */
export function renderOverlays(): void {
  const version = execFileSync(kubectl, ['version', '--client'], { encoding: 'utf8' });
  const kustomize = /Kustomize Version: v(\d+)/.exec(version)?.[1];
  if (!kustomize || Number(kustomize) < 5) throw new Error(`${kubectl} has kustomize ${kustomize ?? '(none)'}; the overlays need v5 (kubectl 1.27 or newer): run scripts/setup.sh`);
  for (const overlay of overlays) rendered.set(overlay, render(path.join(overlaysDir, overlay)));
}

export const objectsOf = (overlay: string) => structuredClone(rendered.get(overlay)!);
export const find = (objects: K8sObject[], kind: string, name: string) => {
  const found = objects.find((o) => o.kind === kind && (o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)));
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
};
export const container = (objects: K8sObject[], name: ServiceName) => find(objects, 'Deployment', name).spec.template.spec.containers[0];
export const messages = (violations: Violation[]) => violations.map((v) => `[${v.rule}] ${v.object}: ${v.message}`);
