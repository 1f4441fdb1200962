// Bundles each service into one ES module for the container images (deploy/Dockerfile):
// dist/services/<name>/main.mjs, with a source map. Tracing is loaded before the service, as
// `node --import @gateway/common/telemetry/register` does when the services run from source.
//
// Packages that cannot live inside a bundle stay outside it and are installed into the image
// of the service that imports them: mediasoup (its library talks to the worker binary and reads
// its own package files) and sharp (native libvips). A few optional native add-ons are left out
// too: their packages try to load them and carry on without (pg's pg-native, ws's bufferutil and
// utf-8-validate). Anything else left outside would be missing at run time: it fails the build.
//
//   node deploy/bundle.mjs [--outdir DIR] [service ...]
import path from 'node:path';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const services = ['sfu', 'signaling', 'recorder', 'crm-sync', 'routing'];
export const externalPackages = ['mediasoup', 'sharp'];
/**
 * Tools bundled beside a service, in its image: the JetStream provisioning step (the
 * nats-provision Job runs `node nats-provision.mjs` in the crm-sync image), the operators'
 * tenants CLI (key rotation, offboarding: `node tenants.mjs`, docs/operations.md) and the residue
 * scanner (the residue CronJob runs `node residue.mjs --sweep`).
 */
export const tools = {
  'crm-sync': {
    'nats-provision.mjs': 'packages/common/src/jetstream/main.ts',
    'tenants.mjs': 'services/crm-sync/src/cli/tenants.ts',
    'residue.mjs': 'packages/common/src/residue/main.ts',
  },
};
const optionalPackages = ['pg-native', 'bufferutil', 'utf-8-validate'];

const builtins = new Set([...builtinModules, ...builtinModules.map((name) => `node:${name}`)]);
const packageOf = (specifier) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');

/** Bundles one service; returns the packages its bundle imports from node_modules at run time. */
export async function bundleService(service, outdir) {
  const result = await build({
    stdin: {
      contents: `import '@gateway/common/telemetry/register';\nimport './services/${service}/src/main.ts';\n`,
      resolveDir: root,
      sourcefile: `${service}-entry.ts`,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    outfile: path.join(outdir, service, 'main.mjs'),
    sourcemap: true,
    external: [...externalPackages, ...optionalPackages],
    metafile: true,
    logLevel: 'warning',
    // CommonJS dependencies call require() for Node's own modules; an ES module has none.
    banner: { js: "import { createRequire as __gatewayCreateRequire } from 'node:module'; const require = __gatewayCreateRequire(import.meta.url);" },
  });
  const imported = new Set();
  for (const output of Object.values(result.metafile.outputs)) {
    for (const { path: specifier, external } of output.imports) {
      // Anything under node: is Node's own, including modules newer than the Node that bundles (node:sqlite).
      if (external && !builtins.has(specifier) && !specifier.startsWith('node:')) imported.add(packageOf(specifier));
    }
  }
  for (const [file, entry] of Object.entries(tools[service] ?? {})) {
    const tool = await build({
      entryPoints: [path.join(root, entry)],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      outfile: path.join(outdir, service, file),
      sourcemap: true,
      external: [...externalPackages, ...optionalPackages],
      metafile: true,
      logLevel: 'warning',
      banner: { js: "import { createRequire as __gatewayCreateRequire } from 'node:module'; const require = __gatewayCreateRequire(import.meta.url);" },
    });
    for (const output of Object.values(tool.metafile.outputs)) {
      for (const { path: specifier, external } of output.imports) if (external && !builtins.has(specifier)) imported.add(packageOf(specifier));
    }
  }
  const unexpected = [...imported].filter((name) => !externalPackages.includes(name) && !optionalPackages.includes(name));
  if (unexpected.length > 0) throw new Error(`${service}: the bundle would load ${unexpected.join(', ')} from node_modules at run time`);
  return [...imported].filter((name) => externalPackages.includes(name)).sort();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--outdir');
  const outdir = path.resolve(at >= 0 ? args.splice(at, 2)[1] : path.join(root, 'dist/services'));
  const chosen = args.length > 0 ? args : services;
  for (const service of chosen) {
    if (!services.includes(service)) throw new Error(`unknown service ${service}; one of ${services.join(', ')}`);
    const runtimePackages = await bundleService(service, outdir);
    console.log(`${service}: ${path.join(outdir, service, 'main.mjs')}${runtimePackages.length ? ` (needs ${runtimePackages.join(', ')} in node_modules)` : ''}`);
  }
}
