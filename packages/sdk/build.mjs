// Bundles the SDK for browsers: an IIFE defining the global `Gateway` (served at /sdk.js)
// and an ES module.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const common = { entryPoints: [`${here}src/index.ts`], bundle: true, minify: true, sourcemap: true, target: 'es2020', platform: 'browser', logLevel: 'warning' };
await Promise.all([
  build({ ...common, format: 'iife', globalName: 'Gateway', outfile: `${here}dist/gateway.js` }),
  build({ ...common, format: 'esm', outfile: `${here}dist/gateway.mjs` }),
]);
