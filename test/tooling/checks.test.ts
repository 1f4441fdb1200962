import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

/**
 * The checks `make test` runs over the code (Biome, dependency-cruiser, knip), each shown to fail
 * on a deliberate violation: the repository's own configuration, run over a small tree made for
 * the purpose, so a rule that stopped matching (a renamed folder, a config typo) fails here.
 */
const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../..');
const bin = (name: string) => path.join(repo, 'node_modules/.bin', name);

let trees: string[] = [];
afterEach(() => {
  for (const tree of trees) rmSync(tree, { recursive: true, force: true });
  trees = [];
});

/** A tree with the given files (path -> content), the repository's config files and node_modules. */
function tree(files: Record<string, string>, configs: string[]): string {
  const root = mkdtempSync(path.join(tmpdir(), 'gateway-checks-'));
  trees.push(root);
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), content);
  }
  for (const config of configs) cpSync(path.join(repo, config), path.join(root, config));
  symlinkSync(path.join(repo, 'node_modules'), path.join(root, 'node_modules'));
  return root;
}

async function outcome(command: string, args: string[], cwd: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

const tsconfig = JSON.stringify({ compilerOptions: { module: 'ESNext', moduleResolution: 'Bundler', target: 'ES2022', strict: true }, include: ['**/*.ts'] });

describe('dependency rules (dependency-cruiser)', () => {
  const cruise = (files: Record<string, string>) => {
    const root = tree({ ...files, 'tsconfig.json': tsconfig }, ['.dependency-cruiser.cjs']);
    return outcome(bin('depcruise'), ['--config', '.dependency-cruiser.cjs', ...new Set(Object.keys(files).map((f) => f.split('/')[0]!))], root);
  };

  it('passes a tree that keeps the layering', async () => {
    const result = await cruise({
      'packages/common/src/errors.ts': 'export const code = 1;\n',
      'services/sfu/src/main.ts': "import { code } from '../../../packages/common/src/errors.js';\nexport const x = code;\n",
      'packages/sdk/src/index.ts': "import { code } from '../../common/src/errors.js';\nexport const y = code;\n",
    });
    expect(result.output).toContain('no dependency violations');
    expect(result.ok).toBe(true);
  });

  it.each([
    ['no-cycles', { 'services/sfu/src/a.ts': "import { b } from './b.js';\nexport const a = b;\n", 'services/sfu/src/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n" }],
    ['no-service-to-service', { 'services/sfu/src/a.ts': "import { b } from '../../signaling/src/b.js';\nexport const a = b;\n", 'services/signaling/src/b.ts': 'export const b = 1;\n' }],
    ['no-package-to-service', { 'packages/cluster/src/a.ts': "import { b } from '../../../services/sfu/src/b.js';\nexport const a = b;\n", 'services/sfu/src/b.ts': 'export const b = 1;\n' }],
    [
      'sdk-browser-only',
      { 'packages/sdk/src/a.ts': "import { b } from '../../common/src/nats/connection.js';\nexport const a = b;\n", 'packages/common/src/nats/connection.ts': 'export const b = 1;\n' },
    ],
    ['sdk-no-node-builtins', { 'packages/sdk/src/a.ts': "import { readFileSync } from 'node:fs';\nexport const a = readFileSync;\n" }],
    ['no-test-code-in-production', { 'services/sfu/src/a.ts': "import { b } from '../../../test/support/b.js';\nexport const a = b;\n", 'test/support/b.ts': 'export const b = 1;\n' }],
  ] as const)('fails on a violation of %s', async (rule, files) => {
    const result = await cruise(files);
    expect(result.ok).toBe(false);
    expect(result.output).toContain(rule);
  });
});

describe('lint and format (Biome)', () => {
  // The tree has no .gitignore for Biome's VCS integration to read; the config is otherwise ours.
  const check = (source: string) =>
    outcome(bin('biome'), ['check', '--error-on-warnings', '--vcs-use-ignore-file=false', '--config-path=biome.json', 'src'], tree({ 'src/a.ts': source }, ['biome.json']));

  it('passes code in the house style', async () => {
    const result = await check('export function sum(values: number[]): number {\n  return values.reduce((total, value) => total + value, 0);\n}\n');
    expect(result.output).not.toMatch(/error/i);
    expect(result.ok).toBe(true);
  });

  it('fails on a lint rule (an unused import)', async () => {
    const result = await check("import { readFileSync } from 'node:fs';\n\nexport const a = 1;\n");
    expect(result.ok).toBe(false);
    expect(result.output).toContain('noUnusedImports');
  });

  it('fails on formatting', async () => {
    const result = await check('export const a = {b:1,\n    c:"two"}\n');
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/format/i);
  });
});

describe('unused files and exports (knip)', () => {
  const project = (files: Record<string, string>) =>
    tree(
      {
        'package.json': JSON.stringify({ name: 'probe', private: true, type: 'module', workspaces: ['packages/*', 'services/*'] }),
        'services/sfu/package.json': JSON.stringify({ name: '@probe/sfu', private: true, type: 'module' }),
        'tsconfig.json': tsconfig,
        ...files,
      },
      ['knip.json'],
    );

  it('passes a service whose every file and export is used', async () => {
    const root = project({ 'services/sfu/src/main.ts': "import { used } from './used.js';\nconsole.log(used);\n", 'services/sfu/src/used.ts': 'export const used = 1;\n' });
    const result = await outcome(bin('knip'), ['--no-progress', '--no-config-hints', '--workspace', 'services/sfu'], root);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  it('fails on an unused file and an unused export', async () => {
    const root = project({
      'services/sfu/src/main.ts': "import { used } from './used.js';\nconsole.log(used);\n",
      'services/sfu/src/used.ts': 'export const used = 1;\nexport const forgotten = 2;\n',
      'services/sfu/src/orphan.ts': 'export const orphan = 3;\n',
    });
    const result = await outcome(bin('knip'), ['--no-progress', '--no-config-hints', '--workspace', 'services/sfu'], root);
    expect(result.ok).toBe(false);
    expect(result.output).toContain('orphan.ts');
    expect(result.output).toContain('forgotten');
  });
});
