// Builds the server SDK into dist/ (docs/server-sdk.md): index.js, the npm package's ES module
// for Node (its `dependencies` stay imports), and index.d.ts, its types in one file.
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { rollup } from 'rollup';
import { dts } from 'rollup-plugin-dts';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
const pkg = JSON.parse(await readFile(path.join(here, 'package.json'), 'utf8'));
const entry = path.join(here, 'src/index.ts');
const external = Object.keys(pkg.dependencies).flatMap((name) => [name, `${name}/*`]);
const banner = `/*! ${pkg.name} ${pkg.version} */`;

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
const result = await build({
  entryPoints: [entry],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  external: [...external, 'node:*'],
  sourcemap: true,
  metafile: true,
  banner: { js: banner },
  outfile: path.join(dist, 'index.js'),
  logLevel: 'warning',
});
const bundled = Object.keys(result.metafile.inputs).filter((input) => input.includes('node_modules/'));
if (bundled.length > 0) throw new Error(`the server SDK bundles ${bundled.join(', ')}: add the package to dependencies in packages/server-sdk/package.json`);

const types = await rollup({
  input: entry,
  external: (id) => external.some((name) => id === name || id.startsWith(`${name.replace('/*', '')}/`)) || id.startsWith('node:'),
  plugins: [dts({ tsconfig: path.join(here, 'tsconfig.build.json') })],
});
await types.write({ file: path.join(dist, 'index.d.ts'), format: 'es', banner });
await types.close();
console.log(`${pkg.name} ${pkg.version}: dist/ built`);
