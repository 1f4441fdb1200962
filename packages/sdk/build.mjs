// Bundles the SDK for browsers: dist/gateway.js, an IIFE defining the global `Gateway` (served
// by signaling at /sdk.js), and dist/gateway.mjs, an ES module. Both minified, with source maps.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));

const common = {
  entryPoints: [path.join(here, 'src/index.ts')],
  bundle: true,
  minify: true,
  sourcemap: true,
  target: 'es2020',
  platform: 'browser',
  logLevel: 'warning',
};

await Promise.all([
  build({ ...common, format: 'iife', globalName: 'Gateway', outfile: path.join(here, 'dist/gateway.js') }),
  build({ ...common, format: 'esm', outfile: path.join(here, 'dist/gateway.mjs') }),
]);
