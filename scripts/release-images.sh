#!/usr/bin/env bash
# Builds, pushes, signs and attests the release images, then pins an overlay to their digests
# (docs/supply-chain.md). Run by the release workflow from a version tag, where cosign signs
# keylessly with the workflow's OIDC identity (the one k8s/components/image-verification
# trusts); elsewhere set COSIGN_KEY to sign with a key, and trust its public key in the policy.
#
#   scripts/release-images.sh <registry> <version> [overlay dir]
#   e.g. scripts/release-images.sh registry.example.com/gateway 0.2.0 k8s/overlays/prod
#
# Needs docker with buildx (BuildKit attaches SLSA provenance and an SPDX SBOM of the whole
# image, operating-system packages included), cosign 2.x, node and this repository's
# node_modules. Writes dist/release/<version>/images.json ({"sfu": "<registry>/sfu@sha256:..."})
# and one CycloneDX SBOM per image (scripts/sbom.ts) beside it.
set -euo pipefail

registry=${1:?registry, e.g. registry.example.com/gateway}
version=${2:?version, e.g. 0.2.0}
overlay=${3:-}
[[ "$version" =~ ^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$ ]] || { echo "bad version: $version" >&2; exit 2; }
[[ "$registry" =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$ ]] || { echo "bad registry: $registry" >&2; exit 2; }

cd "$(dirname "$0")/.."
out="dist/release/$version"
mkdir -p "$out"
platforms=${PLATFORMS:-linux/amd64,linux/arm64}
sign_args=(--yes)
[ -n "${COSIGN_KEY:-}" ] && sign_args+=(--key "$COSIGN_KEY")

# One image: built for every platform, pushed, its digest read back from BuildKit's metadata.
build() { # name dockerfile [target]
  local name=$1 dockerfile=$2 target=${3:-} metadata="$out/$1.metadata.json"
  docker buildx build --platform "$platforms" -f "$dockerfile" ${target:+--target "$target"} \
    --provenance=mode=max --sbom=true \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD)" \
    --tag "$registry/$name:$version" --metadata-file "$metadata" --push .
  node -e 'const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const d = m["containerimage.digest"]; if (!/^sha256:[0-9a-f]{64}$/.test(d ?? "")) process.exit(1); process.stdout.write(d)' "$metadata"
}

declare -A refs
for service in sfu signaling recorder crm-sync routing; do
  refs[$service]="$registry/$service@$(build "$service" deploy/Dockerfile "$service")"
  node --import tsx scripts/sbom.ts "$service" "$version" > "$out/$service.cdx.json"
done
refs[coturn]="$registry/coturn@$(build coturn deploy/coturn/Dockerfile)"

for name in "${!refs[@]}"; do
  # The signature and the SBOM attestation are made for the digest, never for a tag.
  cosign sign "${sign_args[@]}" "${refs[$name]}"
  if [ -f "$out/$name.cdx.json" ]; then
    cosign attest "${sign_args[@]}" --type cyclonedx --predicate "$out/$name.cdx.json" "${refs[$name]}"
  fi
done
# coturn is Debian's package, not npm's: its SBOM names that package (BuildKit's SPDX SBOM,
# attached at the build, lists every package of the image); the policy asks every image of ours
# for a CycloneDX SBOM.
coturn_version=$(sed -n 's/^ARG COTURN_VERSION=//p' deploy/coturn/Dockerfile)
node -e '
  const [version, coturn] = process.argv.slice(1);
  process.stdout.write(JSON.stringify({ bomFormat: "CycloneDX", specVersion: "1.5", version: 1,
    metadata: { component: { type: "container", name: "gateway/coturn", version, "bom-ref": `gateway/coturn@${version}` } },
    components: [{ type: "application", "bom-ref": "coturn", name: "coturn", version: coturn, purl: `pkg:deb/debian/coturn@${coturn}?distro=debian-12` }] }, null, 2));
' "$version" "$coturn_version" > "$out/coturn.cdx.json"
cosign attest "${sign_args[@]}" --type cyclonedx --predicate "$out/coturn.cdx.json" "${refs[coturn]}"

{
  printf '{'
  sep=''
  for name in sfu signaling recorder crm-sync routing coturn; do printf '%s"%s": "%s"' "$sep" "$name" "${refs[$name]}"; sep=', '; done
  printf '}\n'
} > "$out/images.json"
echo "released: $out/images.json" >&2

if [ -n "$overlay" ]; then
  node --import tsx scripts/pin-images.ts "$out/images.json" "$overlay"
  echo "pinned $overlay/kustomization.yaml to the released digests" >&2
fi
