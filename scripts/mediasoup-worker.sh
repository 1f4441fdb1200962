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

build_packages=(g++ pkg-config meson ninja-build curl libssl-dev libuv1-dev libusrsctp-dev libabsl-dev libflatbuffers-dev flatbuffers-compiler)
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

# libsrtp2 from Debian's source archive, built against OpenSSL. Debian's binary package uses
# libsrtp's portable C ciphers, which cost several times more CPU per packet than OpenSSL's
# AES-NI and SHA code; SRTP is the largest part of the worker's per-packet work.
srtp_url=http://deb.debian.org/debian/pool/main/libs/libsrtp2/libsrtp2_2.5.0.orig.tar.gz
srtp_sha256=8a43ef8e9ae2b665292591af62aa1a4ae41e468b6d98d8258f91478735da4e09
say "building libsrtp2 2.5.0 with OpenSSL"
curl -fsSL "$srtp_url" -o "$work/libsrtp2.tar.gz"
echo "$srtp_sha256  $work/libsrtp2.tar.gz" | sha256sum -c --quiet -
mkdir "$work/libsrtp2"
tar xzf "$work/libsrtp2.tar.gz" --strip-components=1 -C "$work/libsrtp2"
(
  cd "$work/libsrtp2"
  meson setup build --buildtype=release --prefix="$work/srtp" --libdir=lib -Ddefault_library=static \
    -Dcrypto-library=openssl -Dtests=disabled -Dpcap-tests=disabled -Ddoc=disabled >&2
  ninja -C build install >&2
)

# liburing from Debian's source archive (bookworm's 2.3 lacks io_uring_prep_sendto): with it the
# worker hands each event-loop iteration's UDP sends to the kernel in one io_uring submission
# instead of one sendmsg() system call per packet. Built static; used when the kernel is 6 or newer.
uring_url=http://deb.debian.org/debian/pool/main/libu/liburing/liburing_2.9.orig.tar.gz
uring_sha256=57e9b36e4ac1e46b8e0351dfb1694dc59638fc25e384b4ba36d87b800b16db1a
say "building liburing 2.9"
curl -fsSL "$uring_url" -o "$work/liburing.tar.gz"
echo "$uring_sha256  $work/liburing.tar.gz" | sha256sum -c --quiet -
mkdir "$work/liburing"
tar xzf "$work/liburing.tar.gz" --strip-components=1 -C "$work/liburing"
(
  cd "$work/liburing"
  ./configure --prefix="$work/uring" --libdir="$work/uring/lib" --includedir="$work/uring/include" >&2
  make -C src -j"$(nproc)" >&2
  make install >&2
  # Static only, so the worker does not depend on a liburing the machine may lack.
  rm -f "$work/uring/lib"/liburing*.so*
)
export PKG_CONFIG_PATH="$work/srtp/lib/pkgconfig:$work/uring/lib/pkgconfig"

cd "$work/worker"
# The worker includes <srtp.h> from libsrtp's srtp2/ folder, which its pkg-config file does not
# add; srtp-compat.h includes <srtp2/srtp.h>, so the folder above it is on the path too.
meson setup build --buildtype=release -Db_ndebug=true --wrap-mode=nodownload \
  -Dcpp_args="-I$work/srtp/include/srtp2 -I$work/srtp/include" >&2
# The C++ includes headers generated from the flatbuffers schemas: generate them first.
ninja -C build -j"$(nproc)" fbs/FBS >&2
ninja -C build -j"$(nproc)" mediasoup-worker >&2

cp build/mediasoup-worker "$cache_dir/mediasoup-worker.tmp"
mv "$cache_dir/mediasoup-worker.tmp" "$binary"
say "built $binary"
echo "$binary"
