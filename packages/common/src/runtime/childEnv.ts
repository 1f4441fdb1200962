/**
 * The environment a child process (ffmpeg, ffprobe) is given: what it needs to find programs and
 * read text, never this process's environment. A child that parses untrusted media must not be
 * able to read our configuration, whatever a crafted input makes it do. Every spawn, execFile
 * and fork in services/ and packages/ passes `env` (test/tooling/child-env.test.ts checks).
 */
const PASSED_THROUGH = ['PATH', 'LANG', 'LC_ALL', 'TZ'] as const;

export function childProcessEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of PASSED_THROUGH) {
    const value = process.env[name];
    if (value) env[name] = value;
  }
  return env;
}
