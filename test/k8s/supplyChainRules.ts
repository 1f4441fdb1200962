import { containersOf, objectId, workloads, type Json, type K8sObject, type Rule, type Violation } from './objects.js';

/**
 * What runs, and who vouches for it (docs/supply-chain.md): every image names a tag or a digest
 * (never an implicit or explicit `latest`), images we do not release name a digest, and where the
 * rendering carries the admission policy (k8s/components/image-verification), that policy
 * enforces a signature by the release identity and an attested CycloneDX SBOM for every image
 * of ours the rendering runs, in every namespace it runs them in, and pins them to the digest
 * that was verified.
 */

/** The images the release builds and signs (deploy/Dockerfile targets and deploy/coturn). */
const ourImage = /(^|\/)gateway\/(sfu|signaling|recorder|crm-sync|routing|coturn)([:@]|$)/;
const sbomType = 'https://cyclonedx.org/bom';

/** Kyverno's wildcard match of an image reference pattern (`*` any run of characters, `?` one). */
function wildcardMatch(pattern: string, value: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return regex.test(value);
}

/** The image without its tag or digest, as Kyverno matches imageReferences against it. */
const repositoryOf = (image: string) => image.split('@')[0]!.replace(/:[^/:]+$/, '');

function attestorsValid(attestors: Json): boolean {
  return (
    Array.isArray(attestors) &&
    attestors.length > 0 &&
    attestors.every(
      (set: Json) =>
        Array.isArray(set.entries) && set.entries.length > 0 && set.entries.every((entry: Json) => (entry.keyless?.subject && entry.keyless?.issuer) || entry.keys?.publicKeys || entry.keys?.kms),
    )
  );
}

export const imageSupplyRules: Rule = (objects: K8sObject[]) => {
  const found: Violation[] = [];
  const images: Array<{ image: string; namespace: string; where: string }> = [];
  for (const w of workloads(objects)) {
    for (const c of containersOf(w.pod)) images.push({ image: String(c.image ?? ''), namespace: w.namespace, where: `${objectId(w.object)} container ${c.name}` });
  }
  for (const { image, where } of images) {
    const digest = /@sha256:[0-9a-f]{64}$/.test(image);
    const tag = /:[^/:@]+$/.exec(image.split('@')[0]!)?.[0]?.slice(1);
    if (!digest && (!tag || tag === 'latest')) found.push({ rule: 'images', object: where, message: `${image || '(none)'} names neither a version tag nor a digest` });
    if (!ourImage.test(image) && !digest) found.push({ rule: 'images', object: where, message: `${image} is not released by Gateway and names no digest` });
  }

  const policies = objects.filter((o) => o.apiVersion === 'kyverno.io/v1' && o.kind === 'ClusterPolicy');
  const verifying = policies.flatMap((p) => (p.spec?.rules ?? []).flatMap((rule: Json) => (rule.verifyImages ?? []).map((v: Json) => ({ policy: p, rule, v }))));
  if (verifying.length === 0) return found;
  for (const { policy, rule, v } of verifying) {
    const id = `${objectId(policy)} rule ${rule.name}`;
    if (v.failureAction !== 'Enforce') found.push({ rule: 'images', object: id, message: `failureAction is ${v.failureAction ?? '(unset: Audit)'}, not Enforce` });
    if ((policy.spec.failurePolicy ?? 'Fail') !== 'Fail')
      found.push({ rule: 'images', object: id, message: 'the webhook fails open (failurePolicy Ignore): unverified images are admitted while Kyverno is down' });
    for (const flag of ['mutateDigest', 'verifyDigest', 'required'] as const) {
      if (v[flag] === false) found.push({ rule: 'images', object: id, message: `${flag} is false` });
    }
    if (!attestorsValid(v.attestors)) found.push({ rule: 'images', object: id, message: 'no signer (attestors with a keyless subject and issuer, or a public key)' });
    const sbom = (v.attestations ?? []).find((a: Json) => (a.type ?? a.predicateType) === sbomType);
    if (!sbom || !attestorsValid(sbom.attestors)) found.push({ rule: 'images', object: id, message: `no ${sbomType} attestation (the SBOM) with its signer` });
  }
  const ours = images.filter(({ image }) => ourImage.test(image));
  for (const { image, namespace, where } of ours) {
    const covered = verifying.some(({ rule, v }) => {
      const resources = [...(rule.match?.any ?? []), ...(rule.match?.all ?? [])].map((m: Json) => m.resources ?? {});
      const matchesPod = resources.some((r: Json) => (r.kinds ?? []).includes('Pod') && (!r.namespaces || r.namespaces.includes(namespace)));
      return matchesPod && (v.imageReferences ?? []).some((pattern: string) => wildcardMatch(pattern, repositoryOf(image)) || wildcardMatch(pattern, image));
    });
    if (!covered) found.push({ rule: 'images', object: where, message: `${image} in namespace ${namespace} is not verified by the admission policy` });
  }
  return found;
};
