import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json, K8sObject } from './objects.js';
import { objectsOf, overlays, renderOverlays } from './overlays.js';
import { repoRoot } from './services.js';

/**
 * The alerts as Prometheus reads them: every overlay's PrometheusRules pass `promtool check rules`,
 * and the unit tests in promtool/alerts.test.yaml (input series, the alerts expected, and cases
 * that must not fire) pass `promtool test rules` against them. promtool comes with Debian's
 * prometheus package (scripts/setup.sh).
 */

const promtool = process.env.PROMTOOL ?? 'promtool';
const unitTests = path.join(repoRoot, 'test/k8s/promtool/alerts.test.yaml');

/** Runs promtool; its report is the failure's message. */
function runPromtool(args: string[]): string {
  try {
    return execFileSync(promtool, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const { stdout, stderr, code } = error as { stdout?: string; stderr?: string; code?: string };
    if (code === 'ENOENT') throw new Error(`${promtool} is not installed: run scripts/setup.sh (Debian's prometheus package)`);
    throw new Error(`${promtool} ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? ''}`);
  }
}

/** Writes each PrometheusRule's spec to <dir>/<name>.yaml, as a rule file; `withAnnotations` false leaves annotations out. */
function writeRuleFiles(objects: K8sObject[], dir: string, withAnnotations: boolean): string[] {
  return objects
    .filter((o) => o.kind === 'PrometheusRule')
    .map((o) => {
      const spec = structuredClone(o.spec) as Json;
      if (!withAnnotations) for (const group of spec.groups) for (const rule of group.rules) delete rule.annotations;
      const file = path.join(dir, `${o.metadata.name}.yaml`);
      writeFileSync(file, stringify(spec));
      return file;
    });
}

beforeAll(renderOverlays);

describe('alerts (promtool)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gateway-alerts-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  for (const overlay of overlays) {
    it(`overlay ${overlay}: every PrometheusRule is a valid rule file`, () => {
      const files = writeRuleFiles(objectsOf(overlay), tempDir(), true);
      expect(files.length).toBeGreaterThan(0);
      expect(runPromtool(['check', 'rules', ...files])).toMatch(/SUCCESS/);
    });

    // Annotations are left out: promtool compares them too, and the alert rule of rules.ts
    // checks them; what is tested here is when each alert fires and with which labels.
    it(`overlay ${overlay}: the alerts fire when they should and not otherwise (promtool/alerts.test.yaml)`, () => {
      const dir = tempDir();
      writeRuleFiles(objectsOf(overlay), dir, false);
      copyFileSync(unitTests, path.join(dir, 'alerts.test.yaml'));
      expect(runPromtool(['test', 'rules', path.join(dir, 'alerts.test.yaml')])).toMatch(/SUCCESS/);
    });
  }

  it('a unit test that expects what the rules do not do fails', () => {
    const dir = tempDir();
    const objects = objectsOf('dev');
    // The worker-death alert made to wait an hour: the test expecting it 5 minutes after the death fails.
    const media = objects.find((o) => o.kind === 'PrometheusRule' && o.metadata.name === 'gateway-media')!;
    const rule = media.spec.groups.flatMap((g: Json) => g.rules).find((r: Json) => r.alert === 'GatewaySfuWorkerDied');
    rule.for = '1h';
    writeRuleFiles(objects, dir, false);
    copyFileSync(unitTests, path.join(dir, 'alerts.test.yaml'));
    expect(() => runPromtool(['test', 'rules', path.join(dir, 'alerts.test.yaml')])).toThrow(/alertname: GatewaySfuWorkerDied, time: 5m/);
  });
});
