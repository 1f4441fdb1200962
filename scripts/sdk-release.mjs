// Records the SDK's current version as released (make sdk-release): its bundle's integrity goes
// into packages/sdk/released.json, and from then on test/tooling/sdk-package.test.ts fails when
// a build of that version has other bytes (docs/sdk.md: a versioned URL keeps its bytes).
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const sdk = path.join(path.dirname(fileURLToPath(import.meta.url)), '../packages/sdk');
const { version } = JSON.parse(await readFile(path.join(sdk, 'package.json'), 'utf8'));
const integrity = (await readFile(path.join(sdk, `dist/cdn/${version}/gateway.min.js.sri`), 'utf8')).trim();
const file = path.join(sdk, 'released.json');
const released = JSON.parse(await readFile(file, 'utf8').catch(() => '{"versions":{}}'));
const known = released.versions[version];
if (known && known !== integrity) {
  console.error(`@gateway/sdk ${version} was released as ${known}; this build is ${integrity}: bump the version in packages/sdk/package.json`);
  process.exit(1);
}
released.versions[version] = integrity;
await writeFile(file, `${JSON.stringify(released, null, 2)}\n`);
console.log(`@gateway/sdk ${version} released as ${integrity}`);
