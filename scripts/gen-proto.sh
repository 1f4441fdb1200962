#!/usr/bin/env bash
# Generates the TypeScript for every .proto under proto/ into packages/proto/src (committed).
# `--check` regenerates into a temporary folder and fails when the committed code is stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/packages/proto/src"
if [ "${1:-}" = "--check" ]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
command -v protoc >/dev/null || { echo "protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
mkdir -p "$out"
cd "$root/proto"
protoc \
  --plugin="$root/node_modules/.bin/protoc-gen-ts_proto" \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,env=node,useOptionals=none,oneof=unions-value,snakeToCamel=true,forceLong=number,importSuffix=.js \
  $(find . -name '*.proto' | sort)
if [ "${1:-}" = "--check" ]; then
  if ! diff -r -q "$out" "$root/packages/proto/src" >/dev/null; then
    diff -r "$out" "$root/packages/proto/src" | head -40 >&2
    echo "packages/proto/src is stale: run 'npm run proto' and commit the result" >&2
    exit 1
  fi
  echo "generated protocol code is up to date"
fi
