import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkChildEnv, childEnvViolations } from './childEnvRule.js';

const repo = path.resolve(import.meta.dirname, '../..');

describe('child processes get an explicit environment', () => {
  it('holds for every spawn, execFile and fork in services/ and packages/', () => {
    expect(checkChildEnv(repo)).toEqual([]);
  });

  it('covers the recorder’s ffmpeg calls', () => {
    // If the rule stopped seeing them (a renamed folder), this would pass for nothing.
    const broken = childEnvViolations('x.ts', "import { spawn } from 'node:child_process';\nspawn('ffmpeg', [], { cwd: '/tmp' });\n");
    expect(broken).toHaveLength(1);
  });

  it('catches each way of giving a child this process’s environment', () => {
    const header = "import { execFile, fork, spawn as start } from 'node:child_process';\nimport * as cp from 'node:child_process';\nimport { promisify } from 'node:util';\n";
    const cases: Record<string, number> = {
      "start('ffmpeg', ['-i', 'x']);": 1,
      "start('ffmpeg', [], { cwd: '.' });": 1,
      "start('ffmpeg', [], { env: process.env });": 1,
      "start('ffmpeg', [], { env: { ...process.env, A: '1' } });": 1,
      "cp.spawnSync('ffmpeg', []);": 1,
      "fork('./worker.js');": 1,
      'const run = promisify(execFile);': 1,
      "execFile('ffprobe', [], { env: { PATH: '/usr/bin' } }, () => {});": 0,
      "start('ffmpeg', [], { cwd: '.', env: childProcessEnv() });": 0,
    };
    for (const [line, expected] of Object.entries(cases)) expect(childEnvViolations('case.ts', header + line).length, line).toBe(expected);
    // A type-only import is no launcher.
    expect(childEnvViolations('t.ts', "import type { ChildProcess } from 'node:child_process';\nexport type X = ChildProcess;\n")).toEqual([]);
  });
});
