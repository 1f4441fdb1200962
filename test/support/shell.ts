import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs a command; its outcome and everything it printed, never a throw. */
export async function sh(command: string, args: string[], cwd: string): Promise<{ ok: boolean; stdout: string; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd, maxBuffer: 32 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
    return { ok: true, stdout, output: stdout + stderr };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; message: string };
    return { ok: false, stdout: failed.stdout ?? '', output: `${failed.message}\n${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

/** Its standard output; throws with everything it printed when it fails. */
export async function must(command: string, args: string[], cwd: string): Promise<string> {
  const { ok, stdout, output } = await sh(command, args, cwd);
  if (!ok) throw new Error(`${command} ${args.join(' ')} failed:\n${output}`);
  return stdout;
}

/**
 * Packs a workspace package (`npm pack`, which builds it) into `work`, and installs the tarball
 * into a new empty project there (its dependencies from npm's cache when they are there), as a
 * customer's developer would. Returns the project's folder and what the tarball holds.
 */
export async function installPacked(repo: string, workspace: string, work: string, name: string): Promise<{ app: string; files: string[] }> {
  const json = await must('npm', ['pack', '--json', '--pack-destination', work, '-w', workspace], repo);
  // The build (prepack) prints to the same output before npm's JSON.
  const [packed] = JSON.parse(json.slice(json.indexOf('[\n'))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const app = path.join(work, name);
  mkdirSync(path.join(app, 'src'), { recursive: true });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module', dependencies: { [workspace]: `file:../${packed!.filename}` } }));
  await must('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], app);
  return { app, files: packed!.files.map((file) => file.path).sort() };
}
