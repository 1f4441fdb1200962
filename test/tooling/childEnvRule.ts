import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * Every child process our code starts gets an explicit environment: a call of `spawn`,
 * `execFile`, `fork` (or their sync forms, or `exec`) from `node:child_process` must pass an
 * options object literal with an `env` property that is not `process.env` itself or a spread of
 * it. Any other use of those functions (passed around, `promisify(execFile)`) is reported too,
 * since what it is called with later cannot be seen here. Packages/testing and tests start
 * servers for tests and are left out.
 */
const LAUNCHERS = new Set(['spawn', 'spawnSync', 'execFile', 'execFileSync', 'fork', 'exec', 'execSync']);

export interface ChildEnvViolation {
  file: string;
  line: number;
  message: string;
}

const isProcessEnv = (node: ts.Node): boolean => ts.isPropertyAccessExpression(node) && node.name.text === 'env' && ts.isIdentifier(node.expression) && node.expression.text === 'process';

/** Whether an options argument sets `env` to something other than this process's environment. */
function passesOwnEnv(options: ts.Expression | undefined): boolean {
  if (!options || !ts.isObjectLiteralExpression(options)) return false;
  for (const property of options.properties) {
    if (ts.isSpreadAssignment(property)) continue;
    const name = property.name && (ts.isIdentifier(property.name) || ts.isStringLiteral(property.name)) ? property.name.text : undefined;
    if (name !== 'env') continue;
    if (ts.isShorthandPropertyAssignment(property)) return true;
    if (!ts.isPropertyAssignment(property)) return false;
    const value = property.initializer;
    if (isProcessEnv(value)) return false;
    if (ts.isObjectLiteralExpression(value) && value.properties.some((p) => ts.isSpreadAssignment(p) && isProcessEnv(p.expression))) return false;
    return true;
  }
  return false;
}

/** The violations in one file's source text. */
export function childEnvViolations(file: string, text: string): ChildEnvViolation[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  // Local names bound to the launchers: `import { spawn as s }`, or `import * as cp` (then cp.spawn).
  const named = new Map<string, string>();
  const namespaces = new Set<string>();
  for (const statement of source.statements) {
    if (!ts.isImportDeclaration(statement) || !ts.isStringLiteral(statement.moduleSpecifier)) continue;
    if (!['node:child_process', 'child_process'].includes(statement.moduleSpecifier.text)) continue;
    const clause = statement.importClause;
    if (!clause || clause.isTypeOnly) continue;
    if (clause.name) namespaces.add(clause.name.text);
    const bindings = clause.namedBindings;
    if (bindings && ts.isNamespaceImport(bindings)) namespaces.add(bindings.name.text);
    if (bindings && ts.isNamedImports(bindings)) {
      for (const element of bindings.elements) {
        const imported = (element.propertyName ?? element.name).text;
        if (!element.isTypeOnly && LAUNCHERS.has(imported)) named.set(element.name.text, imported);
      }
    }
  }
  const found: ChildEnvViolation[] = [];
  const report = (node: ts.Node, message: string) => found.push({ file, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, message });
  const launcherOf = (node: ts.Node): string | undefined => {
    if (ts.isIdentifier(node) && named.has(node.text)) return named.get(node.text);
    if (ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.expression) && namespaces.has(node.expression.text) && LAUNCHERS.has(node.name.text)) return node.name.text;
    return undefined;
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) return;
    const launcher = launcherOf(node);
    if (launcher) {
      const parent = node.parent;
      if (ts.isCallExpression(parent) && parent.expression === node) {
        // spawn(file, args, options) / fork(module, args, options); exec(command, options).
        const options =
          launcher.startsWith('exec') && !launcher.startsWith('execFile') ? parent.arguments[1] : (parent.arguments.find((a, i) => i > 0 && ts.isObjectLiteralExpression(a)) ?? undefined);
        if (!passesOwnEnv(options)) report(parent, `${launcher}() without an explicit env: the child would inherit this process's environment`);
      } else if (!(ts.isPropertyAccessExpression(parent) && parent.name === node)) {
        report(node, `${launcher} used other than in a call: give the child an explicit env where it is called`);
      }
      return;
    }
    ts.forEachChild(node, visit);
  };
  ts.forEachChild(source, visit);
  return found;
}

/** The TypeScript sources the rule covers under `roots`. */
export function coveredSources(repo: string, roots: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      if (entry === 'node_modules' || entry === 'dist') continue;
      const full = path.join(dir, entry);
      if (statSync(full).isDirectory()) walk(full);
      else if (entry.endsWith('.ts') && !entry.endsWith('.test.ts') && !entry.endsWith('.d.ts')) out.push(full);
    }
  };
  for (const root of roots) walk(path.join(repo, root));
  return out.filter((file) => !path.relative(repo, file).startsWith(path.join('packages', 'testing')));
}

export function checkChildEnv(repo: string): ChildEnvViolation[] {
  return coveredSources(repo, ['services', 'packages']).flatMap((file) => childEnvViolations(path.relative(repo, file), readFileSync(file, 'utf8')));
}
