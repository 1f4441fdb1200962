/**
 * Points a kustomize overlay at released images by digest: each `images:` entry of the overlay
 * whose name is one of ours gets the released repository and digest (no tag: a tag can be moved,
 * a digest cannot), from the file scripts/release-images.sh writes.
 *
 *   node --import tsx scripts/pin-images.ts <released-images.json> <overlay dir>
 *
 * released-images.json: {"sfu": "registry.example.com/gateway/sfu@sha256:<64 hex>", ...}, one
 * entry per image (the five services and coturn). Comments and order in the kustomization stay.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isSeq, parseDocument } from 'yaml';
import { z } from 'zod';

export const releasedImageNames = ['sfu', 'signaling', 'recorder', 'crm-sync', 'routing', 'coturn'] as const;

const reference = z.string().regex(/^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[0-9a-f]{64}$/, 'a repository and a sha256 digest');
export const releasedImagesSchema = z.strictObject(Object.fromEntries(releasedImageNames.map((name) => [name, reference])) as Record<(typeof releasedImageNames)[number], typeof reference>);
export type ReleasedImages = z.infer<typeof releasedImagesSchema>;

/** The kustomization text with every one of our images pinned; throws when one of them is not listed in it. */
export function pinImages(kustomization: string, released: ReleasedImages): string {
  const doc = parseDocument(kustomization);
  const images = doc.get('images');
  if (!isSeq(images)) throw new Error('the kustomization has no images: list');
  const pinned = new Set<string>();
  for (const item of images.items) {
    if (!isMap(item)) continue;
    const name = String(item.get('name') ?? '');
    const ours = releasedImageNames.find((image) => name === `gateway/${image}`);
    if (!ours) continue;
    const [repository, digest] = released[ours].split('@') as [string, string];
    item.set('newName', repository);
    item.delete('newTag');
    item.set('digest', digest);
    pinned.add(ours);
  }
  const missing = releasedImageNames.filter((image) => !pinned.has(image));
  if (missing.length > 0) throw new Error(`the kustomization names no image gateway/${missing.join(', gateway/')}`);
  return doc.toString();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [file, overlay] = process.argv.slice(2);
  if (!file || !overlay) {
    process.stderr.write('usage: pin-images.ts <released-images.json> <overlay dir>\n');
    process.exit(2);
  }
  const released = releasedImagesSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!released.success) {
    process.stderr.write(`${file}: ${released.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ')}\n`);
    process.exit(2);
  }
  const target = path.join(overlay, 'kustomization.yaml');
  writeFileSync(target, pinImages(readFileSync(target, 'utf8'), released.data));
}
