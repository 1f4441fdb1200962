#!/usr/bin/env bash
# Runs every benchmark and prints one JSON line of figures per benchmark. Figures are for this
# machine; compare runs as ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_CONTACTS=${BENCH_CONTACTS:-10000} node --import tsx bench/routing-service.ts
for bench in join-time routing-engine sfu-cost sfu-vs-janus sfu-pipe-cost signaling-memory recorder-cost redaction chat-throughput crm-sync-isolation residue-scan residue-per-call; do
  node --import tsx "bench/$bench.ts"
done
