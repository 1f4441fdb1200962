import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pinImages, releasedImageNames, releasedImagesSchema, type ReleasedImages } from '../../scripts/pin-images.js';
import { containersOf, workloads } from './objects.js';
import { render } from './overlays.js';
import { repoRoot } from './services.js';
import { imageSupplyRules } from './supplyChainRules.js';

/** scripts/pin-images.ts: a released set of images, by digest, put into a copy of the prod overlay. */

const work = mkdtempSync(path.join(tmpdir(), 'gateway-pin-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const digestOf = (name: string) => `sha256:${Buffer.from(name.padEnd(32, '.')).toString('hex').slice(0, 64)}`;
const released = Object.fromEntries(releasedImageNames.map((name) => [name, `registry.example.com/gateway/${name}@${digestOf(name)}`])) as ReleasedImages;

describe('pinning released images into an overlay', () => {
  it('runs every image of ours by the released digest, and the admission policy still covers them', () => {
    cpSync(path.join(repoRoot, 'k8s'), path.join(work, 'k8s'), { recursive: true });
    const file = path.join(work, 'k8s/overlays/prod/kustomization.yaml');
    const before = readFileSync(file, 'utf8');
    writeFileSync(file, pinImages(before, released));
    const after = readFileSync(file, 'utf8');
    // Comments stay: the file is edited, not rewritten.
    expect(after).toContain('# In this order: each adds to what the one before it left');
    const objects = render(path.join(work, 'k8s/overlays/prod'));
    const images = workloads(objects).flatMap((w) => containersOf(w.pod).map((c) => String(c.image)));
    expect(images.length).toBeGreaterThan(5);
    for (const image of images) expect(Object.values(released)).toContain(image);
    for (const name of releasedImageNames) expect(images).toContain(released[name]);
    expect(imageSupplyRules(objects)).toEqual([]);
  });

  it('refuses a release that misses an image, names a tag instead of a digest, or adds one', () => {
    const { sfu: _sfu, ...withoutSfu } = released;
    expect(releasedImagesSchema.safeParse(withoutSfu).success).toBe(false);
    expect(releasedImagesSchema.safeParse({ ...released, sfu: 'registry.example.com/gateway/sfu:0.2.0' }).success).toBe(false);
    expect(releasedImagesSchema.safeParse({ ...released, sfu: 'registry.example.com/gateway/sfu@sha256:abc' }).success).toBe(false);
    expect(releasedImagesSchema.safeParse({ ...released, extra: released.sfu }).success).toBe(false);
    expect(releasedImagesSchema.safeParse(released).success).toBe(true);
  });

  it('refuses an overlay that does not name one of the images', () => {
    const kustomization = 'images:\n  - name: gateway/sfu\n    newTag: 0.1.0\n';
    expect(() => pinImages(kustomization, released)).toThrow(/names no image gateway\/signaling, gateway\/recorder/);
    expect(() => pinImages('resources: []\n', released)).toThrow(/no images: list/);
  });
});
