/**
 * The software bill of materials of a service's image, in CycloneDX 1.5 JSON: every npm package
 * its bundle was built from or loads at run time, that is the service's production dependency
 * tree as package-lock.json locks it (versions, SHA-512 integrity, licences), with the image as
 * the subject.
 *
 *   node --import tsx scripts/sbom.ts <sfu|signaling|recorder|crm-sync|routing> [version] > sbom.cdx.json
 *
 * Read from the lockfile, not from `npm sbom --workspace`, which (npm 10 and 11) leaves out the
 * workspace's own hoisted dependencies (signaling's ws, jose and sharp). The release
 * (scripts/release-images.sh) attests it to the image's digest with cosign, and the cluster's
 * admission policy (k8s/components/image-verification) admits only images that carry it. The
 * operating system's packages are in the SBOM BuildKit attaches to the image itself
 * (`--sbom=true`); docs/supply-chain.md.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const imageServices = ['sfu', 'signaling', 'recorder', 'crm-sync', 'routing'] as const;
export type ImageService = (typeof imageServices)[number];

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const lockEntrySchema = z.object({
  name: z.string().optional(),
  version: z.string().optional(),
  resolved: z.string().optional(),
  link: z.boolean().optional(),
  integrity: z.string().optional(),
  license: z.string().optional(),
  os: z.array(z.string()).optional(),
  dependencies: z.record(z.string(), z.string()).optional(),
  optionalDependencies: z.record(z.string(), z.string()).optional(),
  peerDependencies: z.record(z.string(), z.string()).optional(),
  peerDependenciesMeta: z.record(z.string(), z.object({ optional: z.boolean().optional() })).optional(),
});
type LockEntry = z.infer<typeof lockEntrySchema>;
const lockSchema = z.object({ lockfileVersion: z.literal(3), packages: z.record(z.string(), lockEntrySchema) });

export interface Component {
  type: 'library';
  'bom-ref': string;
  group?: string;
  name: string;
  version: string;
  purl: string;
  scope: 'required' | 'optional';
  hashes?: Array<{ alg: 'SHA-512'; content: string }>;
  licenses?: Array<{ license: { id: string } } | { expression: string }>;
}
export interface Bom {
  bomFormat: 'CycloneDX';
  specVersion: '1.5';
  serialNumber: string;
  version: 1;
  metadata: { timestamp: string; component: { type: 'container'; 'bom-ref': string; name: string; version: string } };
  components: Component[];
  dependencies: Array<{ ref: string; dependsOn: string[] }>;
}

function readLock(): Record<string, LockEntry> {
  return lockSchema.parse(JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8'))).packages;
}

/** Where node would find `name` from the package at `from` (its own node_modules, then each parent's, then the root's). */
function resolve(packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  let dir = from;
  for (;;) {
    const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
    if (packages[candidate]) return candidate;
    if (dir === '') return undefined;
    const nested = dir.lastIndexOf('/node_modules/');
    dir = nested >= 0 ? dir.slice(0, nested) : '';
  }
}

const packageName = (location: string) => location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length);
const purlOf = (name: string, version: string) => `pkg:npm/${name.replace(/^@/, '%40')}@${version}`;

/** The SBOM of `service`'s image at `version` (the version the release tags it with). */
export function sbomOf(service: ImageService, version: string): Bom {
  const packages = readLock();
  const start = `services/${service}`;
  if (!packages[start]) throw new Error(`package-lock.json has no workspace ${start}`);
  const components = new Map<string, Component>();
  const edges = new Map<string, Set<string>>();
  const refOf = new Map<string, string>();
  const queue: Array<{ location: string; optional: boolean }> = [{ location: start, optional: false }];
  const seen = new Set<string>();

  const visit = (location: string): string => {
    const entry = packages[location]!;
    const real = entry.link && entry.resolved ? entry.resolved : location;
    const target = packages[real] ?? entry;
    const name = target.name ?? packageName(location);
    const ref = purlOf(name, target.version ?? '0.0.0');
    refOf.set(real, ref);
    return real;
  };

  while (queue.length > 0) {
    const { location, optional } = queue.shift()!;
    if (seen.has(location)) continue;
    seen.add(location);
    const entry = packages[location]!;
    const ref = refOf.get(location) ?? purlOf(entry.name ?? packageName(location), entry.version ?? '0.0.0');
    refOf.set(location, ref);
    if (location !== start) {
      const name = entry.name ?? packageName(location);
      const [group, bare] = name.startsWith('@') ? [name.slice(0, name.indexOf('/')), name.slice(name.indexOf('/') + 1)] : [undefined, name];
      const component: Component = {
        type: 'library',
        'bom-ref': ref,
        ...(group ? { group } : {}),
        name: bare!,
        version: entry.version ?? '0.0.0',
        purl: ref,
        scope: optional ? 'optional' : 'required',
      };
      if (entry.integrity?.startsWith('sha512-')) component.hashes = [{ alg: 'SHA-512', content: Buffer.from(entry.integrity.slice(7), 'base64').toString('hex') }];
      if (entry.license) component.licenses = /^[A-Za-z0-9.+-]+$/.test(entry.license) ? [{ license: { id: entry.license } }] : [{ expression: entry.license }];
      const known = components.get(ref);
      if (!known || (known.scope === 'optional' && !optional)) components.set(ref, component);
    }
    const wants: Array<[string, boolean]> = [
      ...Object.keys(entry.dependencies ?? {}).map((d) => [d, optional] as [string, boolean]),
      ...Object.keys(entry.optionalDependencies ?? {}).map((d) => [d, true] as [string, boolean]),
      ...Object.keys(entry.peerDependencies ?? {}).map((d) => [d, optional || !!entry.peerDependenciesMeta?.[d]?.optional] as [string, boolean]),
    ];
    const dependsOn = edges.get(ref) ?? new Set<string>();
    for (const [name, isOptional] of wants) {
      const found = resolve(packages, location, name);
      // An optional dependency the lockfile does not hold is one npm leaves out (another platform, an unused peer).
      if (!found) {
        if (isOptional) continue;
        throw new Error(`${location} depends on ${name}, which package-lock.json does not hold`);
      }
      // Platform packages for other operating systems never reach a Linux image.
      const os = packages[found]?.os;
      if (os && !os.includes('linux') && !os.some((o) => o.startsWith('!') && o !== '!linux')) continue;
      const real = visit(found);
      dependsOn.add(refOf.get(real)!);
      queue.push({ location: real, optional: isOptional });
    }
    edges.set(ref, dependsOn);
  }

  const subject = { type: 'container' as const, 'bom-ref': `gateway/${service}@${version}`, name: `gateway/${service}`, version };
  const rootRef = refOf.get(start)!;
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    serialNumber: `urn:uuid:${randomUUID()}`,
    version: 1,
    metadata: { timestamp: new Date().toISOString(), component: subject },
    components: [...components.values()].sort((a, b) => a.purl.localeCompare(b.purl)),
    dependencies: [...edges].map(([ref, on]) => ({ ref: ref === rootRef ? subject['bom-ref'] : ref, dependsOn: [...on].sort() })),
  };
}

/** The versions package-lock.json locks, by package name (every copy, nested ones and workspaces included). */
export function lockedVersions(): Map<string, Set<string>> {
  const versions = new Map<string, Set<string>>();
  for (const [location, entry] of Object.entries(readLock())) {
    if (!entry.version) continue;
    const name = entry.name ?? packageName(location);
    versions.set(name, (versions.get(name) ?? new Set()).add(entry.version));
  }
  return versions;
}

export const fullName = (c: Pick<Component, 'group' | 'name'>) => (c.group ? `${c.group}/${c.name}` : c.name);

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const service = z.enum(imageServices).safeParse(process.argv[2]);
  const version = z
    .string()
    .regex(/^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$/)
    .safeParse(process.argv[3] ?? JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version);
  if (!service.success || !version.success) {
    process.stderr.write(`usage: sbom.ts <${imageServices.join('|')}> [version]\n`);
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(sbomOf(service.data, version.data), null, 2)}\n`);
}
