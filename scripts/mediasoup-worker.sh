#!/usr/bin/env bash
# Prints the path of a mediasoup worker binary matching the installed mediasoup package,
# building it first when it is not cached yet. Progress goes to stderr, the path to stdout.
#
# The worker is compiled from the sources shipped in node_modules/mediasoup/worker against
# Debian's libraries (its own build would download prebuilt binaries and subprojects). The
# result is cached outside the clone, keyed by the mediasoup version and a hash of this script
# and its helper files, so a fresh clone reuses it and a change of inputs rebuilds it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/scripts/mediasoup-worker"
sources="$root/node_modules/mediasoup/worker"
say() { printf '[mediasoup-worker] %s\n' "$*" >&2; }

[ -d "$sources" ] || { echo "node_modules/mediasoup is missing: run 'npm ci' first" >&2; exit 1; }
version=$(node -p "require('$root/node_modules/mediasoup/package.json').version")
inputs_hash=$(cat "$0" "$here"/* | sha256sum | cut -c1-12)
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/gateway/mediasoup-worker/$version-$inputs_hash"
binary="$cache_dir/mediasoup-worker"

if [ -x "$binary" ]; then echo "$binary"; exit 0; fi

mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9
# Another invocation may have finished the build while this one waited for the lock.
if [ -x "$binary" ]; then echo "$binary"; exit 0; fi

build_packages=(g++ pkg-config meson ninja-build libssl-dev libuv1-dev libsrtp2-dev libusrsctp-dev libabsl-dev libflatbuffers-dev flatbuffers-compiler)
missing=()
for pkg in "${build_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing build packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mediasoup-worker-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "building mediasoup $version worker (a few minutes, once)"
cp -a "$sources" "$work/worker"
rm -rf "$work/worker/out" "$work/worker/subprojects"/*/ 2>/dev/null || true
cp "$here/srtp-compat.h" "$work/worker/srtp-compat.h"
python3 "$here/patch-sources.py" "$work/worker"

cd "$work/worker"
meson setup build --buildtype=release -Db_ndebug=true -Dms_disable_liburing=true --wrap-mode=nodownload >&2
# The C++ includes headers generated from the flatbuffers schemas: generate them first.
ninja -C build -j"$(nproc)" fbs/FBS >&2
ninja -C build -j"$(nproc)" mediasoup-worker >&2

cp build/mediasoup-worker "$cache_dir/mediasoup-worker.tmp"
mv "$cache_dir/mediasoup-worker.tmp" "$binary"
say "built $binary"
echo "$binary"
