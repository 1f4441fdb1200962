import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { objectId, type Rule, type Violation } from './objects.js';
import { repoRoot } from './services.js';

/** The rules for what Prometheus is told: which objects it selects, and what each alert carries. */

/**
 * The label a kube-prometheus-stack release selects ServiceMonitors, PodMonitors and
 * PrometheusRules by (its serviceMonitorSelector and ruleSelector default to `release: <the
 * release's name>`); the base carries the name of a default installation.
 */
export const prometheusRelease = { label: 'release', value: 'kube-prometheus-stack' };

const selectedKinds = ['ServiceMonitor', 'PodMonitor', 'PrometheusRule'];

/**
 * Every ServiceMonitor, PodMonitor and PrometheusRule carries the release label, all with the
 * same value: Prometheus selects none without it (and KEDA, reading Prometheus, would then scale
 * on nothing), and an overlay that renames the release must rename it everywhere.
 */
export const monitoringSelectionRules: Rule = (objects) => {
  const found: Violation[] = [];
  const selected = objects.filter((o) => selectedKinds.includes(o.kind));
  const values = new Set<string>();
  for (const o of selected) {
    const value = o.metadata.labels?.[prometheusRelease.label];
    if (!value) found.push({ rule: 'monitoring', object: objectId(o), message: `no label ${prometheusRelease.label}: a kube-prometheus-stack Prometheus does not select it` });
    else values.add(value);
  }
  if (values.size > 1)
    found.push({ rule: 'monitoring', object: 'monitoring objects', message: `${prometheusRelease.label} labels differ (${[...values].join(', ')}): one Prometheus selects only some of them` });
  return found;
};

const runbooksFile = 'docs/runbooks.md';
const severities = ['critical', 'warning'];

/** The anchor GitHub (and most Markdown renderers) give a heading. */
const headingAnchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

/** The anchors of the headings of a Markdown file of the repository, or undefined when it is not there. */
function anchorsOf(file: string): Set<string> | undefined {
  const full = path.join(repoRoot, file);
  if (!existsSync(full)) return undefined;
  const headings = readFileSync(full, 'utf8')
    .replace(/^```[\s\S]*?^```/gm, '')
    .split('\n')
    .map((line) => /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line)?.[1])
    .filter((h): h is string => h !== undefined);
  return new Set(headings.map(headingAnchor));
}

/**
 * Every alert says how bad it is (a severity label Alertmanager routes on), what happened
 * (summary, description) and where its runbook is: a runbook_url ending in docs/runbooks.md#<anchor>
 * (whatever prefix the overlay gives it) whose heading exists. Recording rules are named
 * level:metric:operations, so no alert reads one as a metric a service should expose.
 */
export const alertRules: Rule = (objects) => {
  const found: Violation[] = [];
  const anchors = anchorsOf(runbooksFile);
  for (const o of objects.filter((x) => x.kind === 'PrometheusRule')) {
    for (const group of o.spec?.groups ?? []) {
      for (const rule of group.rules ?? []) {
        if (rule.record && !/^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$/.test(rule.record))
          found.push({ rule: 'alerts', object: objectId(o), message: `recording rule ${rule.record} is not named level:metric:operations` });
        if (!rule.alert) continue;
        const add = (message: string) => found.push({ rule: 'alerts', object: objectId(o), message: `${rule.alert}: ${message}` });
        const severity = rule.labels?.severity;
        if (!severities.includes(severity)) add(`severity is ${severity ?? 'not set'}, not one of ${severities.join(', ')}`);
        for (const annotation of ['summary', 'description']) if (!rule.annotations?.[annotation]?.trim()) add(`no ${annotation} annotation`);
        const url: string | undefined = rule.annotations?.runbook_url;
        const target = url ? /(?:^|\/)(docs\/[\w./-]+\.md)#([\w-]+)$/.exec(url) : null;
        if (!url) add('no runbook_url annotation');
        else if (!target) add(`runbook_url ${url} does not point to a heading of a Markdown file in docs/ (docs/<file>.md#<anchor>)`);
        else {
          const [, file, anchor] = target as unknown as [string, string, string];
          const fileAnchors = file === runbooksFile ? anchors : anchorsOf(file);
          if (!fileAnchors) add(`runbook_url ${url}: ${file} does not exist`);
          else if (!fileAnchors.has(anchor)) add(`runbook_url ${url}: ${file} has no heading #${anchor}`);
        }
      }
    }
  }
  return found;
};
