import { readdirSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { chartDir, runHelm } from '../../scripts/k8s-base.js';
import type { K8sObject } from './objects.js';

/**
 * The Helm chart (deploy/helm/gateway) rendered with each supported set of values (its ci/
 * folder: one per cloud and CNI, the Ingress, images by digest), once per test file, for the
 * deployment rules (rules.ts) to check like the kustomize overlays.
 */

const valueSetsDir = path.join(chartDir, 'ci');
export const valueSets = readdirSync(valueSetsDir)
  .filter((file) => file.endsWith('-values.yaml'))
  .map((file) => file.replace(/-values\.yaml$/, ''));
export const valueSetFile = (name: string) => path.join(valueSetsDir, `${name}-values.yaml`);

/** The chart's objects with these values files (`helm template`). */
export function renderChart(valuesFiles: string[]): K8sObject[] {
  const output = runHelm(['template', 'gateway', chartDir, ...valuesFiles.flatMap((file) => ['-f', file])]);
  // YAML 1.1, as the API server reads what helm sends it: a file mode 0440 is octal (288).
  return parseAllDocuments(output, { version: '1.1' })
    .map((doc) => doc.toJS() as K8sObject)
    .filter(Boolean);
}

const rendered = new Map<string, K8sObject[]>();

/** Renders every value set once: call from a test file's beforeAll. */
export function renderValueSets(): void {
  for (const name of valueSets) rendered.set(name, renderChart([valueSetFile(name)]));
}

export const chartObjectsOf = (valueSet: string) => structuredClone(rendered.get(valueSet)!);
