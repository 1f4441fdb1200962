import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installPacked, must, sh } from '../support/shell.js';

/**
 * The SDK as a customer's developer gets it: `npm pack` (which builds it), the tarball installed
 * into an empty project (its dependencies from npm's cache when they are there), then imported by
 * Node, type-checked against the shipped declarations and bundled by a stock bundler (esbuild).
 * The last case removes the declarations to show the type check failing without them.
 */
const repo = path.resolve(import.meta.dirname, '../..');
const tsc = path.join(repo, 'node_modules/typescript/bin/tsc');
const esbuild = path.join(repo, 'node_modules/.bin/esbuild');
const sdkManifest = JSON.parse(readFileSync(path.join(repo, 'packages/sdk/package.json'), 'utf8')) as { version: string };

let work: string;
let app: string;
let packedFiles: string[];

const consumer = `import { connect, ErrorCode, GatewayError, VERSION, type ConnectOptions, type Room } from '@gateway/sdk';

export async function start(url: string, token: string): Promise<Room> {
  const options: ConnectOptions = { url, token, reconnectGiveUpAfterMs: 30_000 };
  const room = await connect(options);
  room.on('track', ({ participant, source, track }) => console.log(participant.identity, source, track.kind));
  room.on('disconnected', ({ reason, code }) => console.log(reason, code));
  await room.publish({ camera: true, microphone: true });
  return room;
}

export function explain(error: unknown): string {
  if (error instanceof GatewayError && error.code === ErrorCode.RATE_LIMITED) return \`retry in \${error.retryAfterMs} ms\`;
  return \`SDK \${VERSION}\`;
}

// @ts-expect-error: a join needs its token (this line fails the check if the types were lost to any)
void connect({ url: 'https://gateway.example.com' });
`;

const compilerOptions = { target: 'ES2022', strict: true, noEmit: true, lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [], skipLibCheck: false };

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'gateway-sdk-package-'));
  ({ app, files: packedFiles } = await installPacked(repo, '@gateway/sdk', work, 'sdk-consumer'));
  writeFileSync(path.join(app, 'src/main.ts'), consumer);
  writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, module: 'ESNext', moduleResolution: 'Bundler' }, include: ['src'] }));
  writeFileSync(path.join(app, 'tsconfig.node.json'), JSON.stringify({ compilerOptions: { ...compilerOptions, module: 'NodeNext', moduleResolution: 'NodeNext' }, include: ['src'] }));
}, 300_000);

/** Semantic versions compared by their numbers (pre-releases are not used). */
function compareVersions(a: string, b: string): number {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number)) as [number[], number[]];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed SDK', () => {
  it('holds the built ES module, its types and the browser bundle, and depends on browser packages only', () => {
    const files = packedFiles;
    expect(files).toEqual(['README.md', 'dist/gateway.min.js', 'dist/gateway.min.js.map', 'dist/index.d.ts', 'dist/index.js', 'dist/index.js.map', 'package.json']);
    const manifest = JSON.parse(readFileSync(path.join(app, 'node_modules/@gateway/sdk/package.json'), 'utf8'));
    expect(manifest.private).toBeUndefined();
    expect(manifest.version).toMatch(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@simplewebauthn/browser', 'mediasoup-client']);
    const shipped = readFileSync(path.join(app, 'node_modules/@gateway/sdk/dist/index.js'), 'utf8') + readFileSync(path.join(app, 'node_modules/@gateway/sdk/dist/index.d.ts'), 'utf8');
    expect(shipped).not.toMatch(/from ['"]@gateway\//);
  });

  it('keeps the bytes of a released version: a changed SDK ships under a new one (packages/sdk/released.json)', () => {
    const released = JSON.parse(readFileSync(path.join(repo, 'packages/sdk/released.json'), 'utf8')) as { versions: Record<string, string> };
    const built = readFileSync(path.join(repo, `packages/sdk/dist/cdn/${sdkManifest.version}/gateway.min.js.sri`), 'utf8').trim();
    const recorded = released.versions[sdkManifest.version];
    // An unreleased version may still change; a released one may not.
    if (recorded !== undefined) expect(built, `@gateway/sdk ${sdkManifest.version} was released with other bytes: bump its version`).toBe(recorded);
    // Versions only go up: the current one is the highest recorded or a new, higher one.
    const newest = Object.keys(released.versions).sort(compareVersions).at(-1);
    if (newest) expect(compareVersions(sdkManifest.version, newest)).toBeGreaterThanOrEqual(0);
  });

  it('is imported by Node through its exports', async () => {
    const script = "const sdk = await import('@gateway/sdk'); console.log(JSON.stringify({ version: sdk.VERSION, connect: typeof sdk.connect, code: sdk.ErrorCode.RATE_LIMITED }));";
    const output = await must(process.execPath, ['--input-type=module', '-e', script], app);
    expect(JSON.parse(output.trim().split('\n').at(-1)!)).toEqual({ version: sdkManifest.version, connect: 'function', code: 'RATE_LIMITED' });
  });

  it('type-checks a consumer against the shipped declarations (bundler and NodeNext resolution)', async () => {
    for (const project of ['tsconfig.json', 'tsconfig.node.json']) {
      const { ok, output } = await sh(process.execPath, [tsc, '-p', project], app);
      expect(output, project).toBe('');
      expect(ok, project).toBe(true);
    }
  }, 120_000);

  it('bundles with esbuild, taking mediasoup-client from the consumer and nothing from this repository', async () => {
    await must(esbuild, ['src/main.ts', '--bundle', '--format=esm', '--platform=browser', '--outfile=out/main.js', '--metafile=out/meta.json', '--log-level=warning'], app);
    const inputs = Object.keys(JSON.parse(readFileSync(path.join(app, 'out/meta.json'), 'utf8')).inputs as Record<string, unknown>);
    expect(inputs).toContain('node_modules/@gateway/sdk/dist/index.js');
    expect(inputs.some((input) => input.startsWith('node_modules/mediasoup-client/'))).toBe(true);
    expect(inputs.filter((input) => !input.startsWith('node_modules/') && !input.startsWith('src/'))).toEqual([]);
  }, 60_000);

  it('fails the type check when the declarations are missing', async () => {
    rmSync(path.join(app, 'node_modules/@gateway/sdk/dist/index.d.ts'));
    const { ok, output } = await sh(process.execPath, [tsc, '-p', 'tsconfig.json'], app);
    expect(ok).toBe(false);
    expect(output).toMatch(/TS7016|TS2307/);
  }, 120_000);
});
