#!/usr/bin/env bash
# `make fuzz`: starts the whole system as `make up` does, with two signaling replicas and a second
# tenant, runs the long seeded fuzzer against it (test/fuzz/run.ts), prints its figures and stops
# everything; then the long pass of crm-sync's admin API fuzzer. FUZZ_SEED replays a run;
# FUZZ_FRAMES, FUZZ_HTTP_REQUESTS and FUZZ_CRM_REQUESTS (100,000) set its length.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The fuzzer forges tokens of a second tenant: configure both, with their keys.
demo_kek=$(node --import tsx -e "import('@gateway/common').then((m) => process.stdout.write(m.DEMO_TENANT_KEK))")
export GATEWAY_TENANTS='[{"name":"demo","apiKey":"demo","apiSecret":"demo-secret-for-local-development-only"},{"name":"globex","apiKey":"globex","apiSecret":"globex-secret-for-tests-only-0123456789"}]'
export GATEWAY_TENANT_KEYS="{\"demo\":\"$demo_kek\",\"globex\":\"$(printf '\x07%.0s' $(seq 1 32) | base64)\"}"
export SIGNALING_REPLICAS=2
export LOG_LEVEL=${LOG_LEVEL:-warn}

log=$(mktemp)
bash scripts/up.sh >"$log" 2>&1 &
up=$!
# TERM: a background job ignores INT.
stop() { kill -TERM "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; rm -f "$log"; }
trap stop EXIT
for _ in $(seq 1 600); do
  grep -q 'Press Ctrl-C to stop' "$log" && break
  kill -0 "$up" 2>/dev/null || { cat "$log" >&2; echo "make up did not start" >&2; exit 1; }
  sleep 0.5
done
grep -q 'Press Ctrl-C to stop' "$log" || { cat "$log" >&2; echo "make up did not become ready" >&2; exit 1; }

node --import tsx test/fuzz/run.ts
stop
trap - EXIT

# crm-sync's admin API: every route, with its own crm-sync, PostgreSQL-free and seeded like the above.
FUZZ_ITERATIONS=${FUZZ_CRM_REQUESTS:-100000} npx vitest run --reporter=verbose test/integration/crm-sync/admin-fuzz.test.ts
