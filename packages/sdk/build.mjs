// Builds the SDK into dist/ (docs/sdk.md):
//   index.js, index.d.ts        the npm package's ES module and its types. The runtime
//                               `dependencies` (mediasoup-client, @simplewebauthn/browser) stay
//                               imports; everything else it uses is bundled in: the browser-safe
//                               modules of @gateway/common (error codes, protocol version,
//                               backoff), the generated protocol of @gateway/proto and its
//                               @bufbuild/protobuf wire helpers.
//   gateway.min.js              the same, self-contained and minified, defining the global
//                               `Gateway` (also in the package, for CDNs that serve npm files).
//   sdk.js                      that bundle as signaling serves it at /sdk.js, the moving latest.
//   cdn/<version>/gateway.min.js  that bundle as signaling serves it at /sdk/<version>/gateway.min.js
//                               (immutable), with its subresource integrity hash beside it
//                               (gateway.min.js.sri), which the build also prints.
// A package bundled in that is neither one of ours nor listed here fails the build: a new runtime
// import belongs in `dependencies` (or here, with a reason).
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { rollup } from 'rollup';
import { dts } from 'rollup-plugin-dts';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, 'dist');
const pkg = JSON.parse(await readFile(path.join(here, 'package.json'), 'utf8'));
const entry = path.join(here, 'src/index.ts');
const runtime = Object.keys(pkg.dependencies);
const external = runtime.flatMap((name) => [name, `${name}/*`]);
/** Bundled rather than a dependency: only the generated protocol code uses it, a few kB. */
const bundledPackages = ['@bufbuild/protobuf'];
const banner = `/*! ${pkg.name} ${pkg.version} */`;

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const common = { entryPoints: [entry], bundle: true, target: 'es2020', platform: 'browser', metafile: true, banner: { js: banner }, logLevel: 'warning' };
const [esm, iife] = await Promise.all([
  build({ ...common, format: 'esm', external, sourcemap: true, outfile: path.join(dist, 'index.js') }),
  build({ ...common, format: 'iife', globalName: 'Gateway', minify: true, sourcemap: 'external', write: false, outfile: path.join(dist, 'gateway.min.js') }),
]);
checkInputs(esm.metafile);

// One minified bundle, written where each URL finds its source map beside it.
const code = iife.outputFiles.find((file) => file.path.endsWith('.js')).text;
const map = iife.outputFiles.find((file) => file.path.endsWith('.map')).text;
const withMap = (name) => `${code}//# sourceMappingURL=${name}.map\n`;
const versionDir = path.join(dist, 'cdn', pkg.version);
await mkdir(versionDir, { recursive: true });
const bundle = withMap('gateway.min.js');
const integrity = `sha384-${createHash('sha384').update(bundle).digest('base64')}`;
await Promise.all([
  writeFile(path.join(dist, 'gateway.min.js'), bundle),
  writeFile(path.join(dist, 'gateway.min.js.map'), map),
  writeFile(path.join(dist, 'sdk.js'), withMap('sdk.js')),
  writeFile(path.join(dist, 'sdk.js.map'), map),
  writeFile(path.join(versionDir, 'gateway.min.js'), bundle),
  writeFile(path.join(versionDir, 'gateway.min.js.map'), map),
  writeFile(path.join(versionDir, 'gateway.min.js.sri'), `${integrity}\n`),
]);

// One declaration file: our own packages' types inlined, the runtime dependencies' imported.
const types = await rollup({
  input: entry,
  external: (id) => runtime.some((name) => id === name || id.startsWith(`${name}/`)),
  plugins: [dts({ tsconfig: path.join(here, 'tsconfig.build.json'), includeExternal: ['@gateway/common', '@gateway/proto'] })],
});
await types.write({ file: path.join(dist, 'index.d.ts'), format: 'es', banner });
await types.close();
const declarations = await readFile(path.join(dist, 'index.d.ts'), 'utf8');
for (const [, specifier] of declarations.matchAll(/from '([^']+)'/g)) {
  if (!external.some((name) => specifier === name || specifier.startsWith(`${name.replace('/*', '')}/`))) {
    throw new Error(`dist/index.d.ts imports ${specifier}, which an installed SDK does not have (only its dependencies)`);
  }
}

console.log(`${pkg.name} ${pkg.version}: dist/ built; /sdk/${pkg.version}/gateway.min.js integrity ${integrity}`);

/** Fails when the ES module bundles a package that is neither ours nor allowed above. */
function checkInputs(metafile) {
  const unexpected = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
    if (match && !bundledPackages.includes(match[1])) unexpected.add(match[1]);
  }
  if (unexpected.size > 0) {
    throw new Error(`the SDK bundles ${[...unexpected].join(', ')}: add it to dependencies in packages/sdk/package.json (kept external) or to bundledPackages in build.mjs`);
  }
}
