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

say "mediasoup worker"
worker=$(bash scripts/mediasoup-worker.sh)
say "  $worker"

say "SDK bundle"
npm run --silent build -w @gateway/sdk >&2
