import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fullName, imageServices, lockedVersions, sbomOf, type Bom } from '../../scripts/sbom.js';

/**
 * Each image's SBOM (scripts/sbom.ts, attested by the release and required by the cluster's
 * admission policy) names the image and lists what its bundle was built from, as locked.
 */
const locked = lockedVersions();
const names = (bom: Bom) => new Set(bom.components.map(fullName));
const productionDependencies = (service: string) => Object.keys(JSON.parse(readFileSync(`services/${service}/package.json`, 'utf8')).dependencies ?? {});

describe('image SBOMs', () => {
  const boms = new Map<string, Bom>();
  const bomOf = (service: (typeof imageServices)[number]) => {
    if (!boms.has(service)) boms.set(service, sbomOf(service, '1.2.3'));
    return boms.get(service)!;
  };

  it.each(imageServices)('%s: the image is the subject, and every package is one package-lock.json locks, at that version', (service) => {
    const bom = bomOf(service);
    expect(bom.metadata.component).toMatchObject({ type: 'container', name: `gateway/${service}`, version: '1.2.3' });
    const unlocked = bom.components.filter((c) => !locked.get(fullName(c))?.has(c.version)).map((c) => `${fullName(c)}@${c.version}`);
    expect(unlocked).toEqual([]);
    expect(bom.components.filter((c) => c.purl !== `pkg:npm/${fullName(c).replace('@', '%40')}@${c.version}`)).toEqual([]);
    // Every package from the registry carries the integrity hash the lockfile checks it by.
    expect(bom.components.filter((c) => !c.group?.startsWith('@gateway') && c.hashes?.[0]?.content.length !== 128).map(fullName)).toEqual([]);
    // Each component is one the dependency graph reaches from the image.
    const reached = new Set(bom.dependencies.flatMap((d) => d.dependsOn));
    expect(bom.components.filter((c) => !reached.has(c['bom-ref'])).map(fullName)).toEqual([]);
  });

  it.each(imageServices)('%s: lists its production dependencies, with what they depend on, and no development tool', (service) => {
    const listed = names(bomOf(service));
    const missing = productionDependencies(service).filter((name) => !listed.has(name));
    expect(missing).toEqual([]);
    // @gateway/common's own dependencies come in with it (the bundle holds them too).
    expect(listed.has('zod')).toBe(true);
    expect(listed.has('@nats-io/jetstream')).toBe(true);
    for (const tool of ['vitest', 'typescript', 'esbuild', '@biomejs/biome', 'tsx', '@gateway/testing']) expect(listed.has(tool)).toBe(false);
  });

  it('lists the packages the images install beside the bundles: mediasoup for the SFU, sharp for signaling', async () => {
    // Imported by URL: the bundler script is plain JavaScript without types.
    const bundler = new URL('../../deploy/bundle.mjs', import.meta.url).href;
    const { externalPackages } = (await import(bundler)) as { externalPackages: string[] };
    expect(externalPackages).toEqual(['mediasoup', 'sharp']);
    expect(names(bomOf('sfu')).has('mediasoup')).toBe(true);
    expect(names(bomOf('signaling')).has('sharp')).toBe(true);
    expect(names(bomOf('recorder')).has('mediasoup')).toBe(false);
  });
});
