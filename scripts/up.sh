#!/usr/bin/env bash
# Runs the whole system on this machine: a local nats-server with JetStream (data in .data/),
# one SFU and one signaling process, and coturn for TURN. Prints the demo URLs; Ctrl-C stops
# everything cleanly.
# NATS is closed as in production: TLS, an nkey per service with its own permissions
# (development certificates in .data/pki, credentials in .data/nats-auth, made on first run),
# every stream and bucket provisioned by the admin identity before the services start.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export NATS_PORT=${NATS_PORT:-4222}
export NATS_URL=${NATS_URL:-tls://127.0.0.1:$NATS_PORT}
export SIGNALING_PORT=${SIGNALING_PORT:-8080}
# The admin page is served by signaling and calls routing's and crm-sync's admin APIs from the
# browser: those let signaling's origins in (CORS; docs/using.md, "The admin page").
export ADMIN_ALLOWED_ORIGINS=${ADMIN_ALLOWED_ORIGINS:-http://localhost:$SIGNALING_PORT,http://127.0.0.1:$SIGNALING_PORT}
export MEDIASOUP_WORKER_BIN=${MEDIASOUP_WORKER_BIN:-$(bash scripts/mediasoup-worker.sh)}
data="$root/.data"
mkdir -p "$data/nats" "$data/logs"

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  # Services first (they deregister from NATS), nats-server last.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -INT "${pids[i]}" 2>/dev/null || true; wait "${pids[i]}" 2>/dev/null || true; done
  echo "stopped"
}
trap stop INT TERM EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
export TURN_PORT=${TURN_PORT:-3478}
for port in "$NATS_PORT" "$SIGNALING_PORT" "$TURN_PORT" 50051 9100 9101; do
  if port_busy "$port"; then echo "port $port is already in use; stop what holds it or set the matching *_PORT variable" >&2; exit 1; fi
done

wait_ready() { # url name pid
  for _ in $(seq 1 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 exited during start-up; see .data/logs/$2.log" >&2; tail -20 "$data/logs/$2.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "$2 did not become ready; see .data/logs/$2.log" >&2; exit 1
}

# Every service starts the same way: TypeScript through tsx, the OpenTelemetry SDK before the
# service's code (traces are exported when OTEL_EXPORTER_OTLP_ENDPOINT is set).
node_args=(--import tsx --import @gateway/common/telemetry/register)

# Development certificates, made once in .data/pki (again when they are about to expire): a CA,
# a certificate per service named <service>.gateway.internal as in production, and NATS's.
pki="$data/pki"
if [ -f "$pki/ca.crt" ] && ! openssl x509 -checkend 86400 -noout -in "$pki/ca.crt" >/dev/null 2>&1; then rm -rf "$pki" "$data/nats-auth"; fi
node --import tsx --input-type=module -e "import { createTestPki } from '@gateway/testing'; createTestPki({ dir: process.argv[1], days: 825 });" "$pki"
# gRPC between the services is mutual TLS with each service's own certificate.
grpc_tls() { tls=("GRPC_TLS_CA_FILE=$pki/ca.crt" "GRPC_TLS_CERT_FILE=$pki/$1.crt" "GRPC_TLS_KEY_FILE=$pki/$1.key"); }

# An nkey per identity and the server's configuration with every permission.
nats_config=$(node --import tsx scripts/nats-dev.ts "$data" "$NATS_PORT")
nats-server -c "$nats_config" >"$data/logs/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do port_busy "$NATS_PORT" && break; sleep 0.1; done

# How an identity reaches NATS: the CA, its nkey seed, its client certificate (into nats_vars).
nats_env() {
  nats_vars=("NATS_CA_FILE=$data/pki/ca.crt" "NATS_NKEY_SEED_FILE=$data/nats-auth/$1.nk"
    "NATS_TLS_CERT_FILE=$data/pki/$1.crt" "NATS_TLS_KEY_FILE=$data/pki/$1.key")
}
# Every stream, bucket and object store, with its limits, made or updated as the admin identity.
nats_env admin
env "${nats_vars[@]}" NATS_STORAGE_BUDGET="${NATS_STORAGE_BUDGET:-8GiB}" \
  node "${node_args[@]}" packages/common/src/jetstream/main.ts >"$data/logs/nats-provision.log" 2>&1 \
  || { echo "provisioning JetStream failed; see .data/logs/nats-provision.log" >&2; tail -20 "$data/logs/nats-provision.log" >&2; exit 1; }

# The demo tenant's routing directory (queues billing and support, three agents), unless it has one.
nats_env routing
env "${nats_vars[@]}" node --import tsx services/routing/src/cli/seedDirectory.ts demo services/routing/demo-directory.json >"$data/logs/routing-seed.log" 2>&1 \
  || { echo "seeding the demo routing directory failed; see .data/logs/routing-seed.log" >&2; tail -20 "$data/logs/routing-seed.log" >&2; exit 1; }

nats_env sfu; grpc_tls sfu
env "${nats_vars[@]}" "${tls[@]}" node "${node_args[@]}" services/sfu/src/main.ts >"$data/logs/sfu.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:${SFU_OPS_PORT:-9101}/readyz" sfu "${pids[-1]}"

nats_env recorder; grpc_tls recorder
env "${nats_vars[@]}" "${tls[@]}" node "${node_args[@]}" services/recorder/src/main.ts >"$data/logs/recorder.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:${RECORDER_OPS_PORT:-9102}/readyz" recorder "${pids[-1]}"

# One machine: a destination on this machine (a local PostgreSQL) is allowed.
# It scans for residue as the residue identity (docs/data-lifecycle.md).
nats_env crm-sync
env "${nats_vars[@]}" CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS="${CRM_SYNC_ALLOW_PRIVATE_DESTINATIONS:-true}" \
  CRM_SYNC_RESIDUE_NKEY_SEED_FILE="$data/nats-auth/residue.nk" \
  node "${node_args[@]}" services/crm-sync/src/main.ts >"$data/logs/crm-sync.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:${CRM_SYNC_OPS_PORT:-9103}/readyz" crm-sync "${pids[-1]}"

# Routing (queues, agents, offers; docs/routing.md): ROUTING_REPLICAS=2 starts a second replica, which takes the tenants over when the first stops.
nats_env routing
for ((replica=1; replica<=${ROUTING_REPLICAS:-1}; replica++)); do
  name=$([ "$replica" -eq 1 ] && echo routing || echo "routing-$replica")
  env "${nats_vars[@]}" ROUTING_PORT=$((${ROUTING_PORT:-8091} + (replica - 1) * 10)) ROUTING_OPS_PORT=$((${ROUTING_OPS_PORT:-9105} + (replica - 1) * 10)) \
    ROUTING_REPLICA_ID="routing-$(hostname)-$replica" node "${node_args[@]}" services/routing/src/main.ts >"$data/logs/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$((${ROUTING_OPS_PORT:-9105} + (replica - 1) * 10))/readyz" "$name" "${pids[-1]}"
done

# SIGNALING_REPLICAS=2 starts a second replica on the next port (ops port 9104), as `make fuzz` does:
# sessions resume on either, rooms span both.
# TURN (coturn) for clients whose network lets no UDP out to the SFU (docs/turn.md): signaling
# hands out credentials signed with a secret it shares with coturn (the REST-API scheme). The
# secret is made once, kept with the other development secrets. TURN_HOST is the address browsers
# reach it at (127.0.0.1: this machine only). Peers: the SFU on the loopback and this machine's
# own addresses; other private ranges are denied, as production denies all but its media nodes.
# TLS (turns:) only with a certificate browsers trust: TURN_TLS_CERT_FILE and TURN_TLS_KEY_FILE
# (the development CA in .data/pki is trusted by no browser, so it is not used here).
turn_dir="$data/turn"; mkdir -p "$turn_dir"; chmod 700 "$turn_dir"
[ -s "$turn_dir/secret" ] || (umask 077; openssl rand -hex 32 >"$turn_dir/secret")
turn_host=${TURN_HOST:-127.0.0.1}
turn_urls="turn:$turn_host:$TURN_PORT?transport=udp,turn:$turn_host:$TURN_PORT?transport=tcp"
{
  echo "listening-ip=127.0.0.1"
  [ "$turn_host" = 127.0.0.1 ] || echo "listening-ip=$turn_host"
  echo "relay-ip=$turn_host"
  echo "listening-port=$TURN_PORT"
  echo "use-auth-secret"
  echo "static-auth-secret=$(cat "$turn_dir/secret")"
  echo "realm=gateway.local"
  echo "fingerprint"
  echo "no-cli"
  echo "no-dtls"
  if [ -n "${TURN_TLS_CERT_FILE:-}" ] && [ -n "${TURN_TLS_KEY_FILE:-}" ]; then
    echo "tls-listening-port=${TURN_TLS_PORT:-5349}"; echo "cert=$TURN_TLS_CERT_FILE"; echo "pkey=$TURN_TLS_KEY_FILE"
  else
    echo "no-tls"
  fi
  echo "no-multicast-peers"
  echo "allow-loopback-peers"
  for range in 0.0.0.0-0.255.255.255 10.0.0.0-10.255.255.255 100.64.0.0-100.127.255.255 169.254.0.0-169.254.255.255 \
    172.16.0.0-172.31.255.255 192.0.0.0-192.0.0.255 192.168.0.0-192.168.255.255 198.18.0.0-198.19.255.255 \
    fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff; do
    echo "denied-peer-ip=$range"
  done
  for address in $(hostname -I 2>/dev/null); do echo "allowed-peer-ip=$address"; done
  echo "log-file=$data/logs/turn.log"
  echo "simple-log"
  echo "no-stdout-log"
  echo "pidfile=$turn_dir/turnserver.pid"
} >"$turn_dir/turnserver.conf"
chmod 600 "$turn_dir/turnserver.conf"
if [ -n "${TURN_TLS_CERT_FILE:-}" ] && [ -n "${TURN_TLS_KEY_FILE:-}" ]; then
  turn_urls="$turn_urls,turns:${TURN_TLS_NAME:-$turn_host}:${TURN_TLS_PORT:-5349}?transport=tcp"
fi
turnserver -c "$turn_dir/turnserver.conf" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do port_busy "$TURN_PORT" && break; sleep 0.1; done
port_busy "$TURN_PORT" || { echo "turnserver did not start; see .data/logs/turn.log" >&2; tail -20 "$data/logs/turn.log" >&2; exit 1; }

nats_env signaling; grpc_tls signaling
for ((replica=1; replica<=${SIGNALING_REPLICAS:-1}; replica++)); do
  port=$((SIGNALING_PORT + replica - 1)); ops=$([ "$replica" -eq 1 ] && echo "${SIGNALING_OPS_PORT:-9100}" || echo $((9102 + replica)))
  name=$([ "$replica" -eq 1 ] && echo signaling || echo "signaling-$replica")
  env "${nats_vars[@]}" "${tls[@]}" SIGNALING_PORT="$port" SIGNALING_OPS_PORT="$ops" SIGNALING_REPLICA_ID="sig-$(hostname)-$replica" \
    SIGNALING_TURN_SECRET_FILE="$turn_dir/secret" SIGNALING_TURN_URLS="$turn_urls" \
    node "${node_args[@]}" services/signaling/src/main.ts >"$data/logs/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$ops/readyz" "$name" "${pids[-1]}"
done

mint() { node --import tsx services/signaling/src/cli/mintToken.ts --tenant demo --room demo-room "$@"; }
desk() { node --import tsx services/signaling/src/cli/mintToken.ts --desk --tenant demo --ttl 12h "$@"; }
base="http://localhost:$SIGNALING_PORT"
cat <<MSG

Gateway is running (logs in .data/logs/).

  End user : $base/end-user#token=$(mint --identity end-user-1 --role end_user)&autojoin=1
  Agent    : $base/agent#token=$(mint --identity agent-1 --role agent --can-record)&autojoin=1
  (add &relay=1 to either to send its media through TURN only: coturn on port $TURN_PORT, docs/turn.md)

The contact center (tenant demo: queues billing and support, services/routing/demo-directory.json):
  End user (asks billing for a video call) : $base/end-user#desk=$(desk --identity customer-1 --role end_user --name "Casey Customer")&queue=billing&channel=video
  Agent Ana (billing, support)             : $base/agent#desk=$(desk --identity ana --role agent --name "Ana Agent")
  Agent Ben (billing, support)             : $base/agent#desk=$(desk --identity ben --role agent --name "Ben Agent")
  Agent Cleo (support)                     : $base/agent#desk=$(desk --identity cleo --role agent --name "Cleo Agent")
  Supervisor Sam                           : $base/supervisor#desk=$(desk --identity sam --role supervisor --name "Sam Supervisor")
  Admin page (people, teams, queues, routing profiles, API keys; sign in with the demo tenant's key,
    by default demo / demo-secret-for-local-development-only):
    $base/admin#directoryApi=http://localhost:${ROUTING_PORT:-8091}&keysApi=http://localhost:${CRM_SYNC_PORT:-8090}
  Directory admin API (HTTP Basic demo:<apiSecret>): http://127.0.0.1:${ROUTING_PORT:-8091}/v1/directory (docs/routing.md)
  SDK      : $base/sdk.js (the latest), $base/sdk/$(node -p "require('./packages/sdk/package.json').version")/gateway.min.js (pinned, docs/sdk.md)
  Metrics  : http://127.0.0.1:9100/metrics (signaling), http://127.0.0.1:9101/metrics (sfu), http://127.0.0.1:9102/metrics (recorder), http://127.0.0.1:9103/metrics (crm-sync), http://127.0.0.1:9105/metrics (routing)
  Admin API (crm-sync, HTTP Basic demo:<apiSecret>): http://127.0.0.1:${CRM_SYNC_PORT:-8090}/v1/connectors, /v1/webhooks (docs/webhooks.md)

Mint more tokens (tenant "demo" is configured by default):
  npm run --silent token -- --tenant demo --room demo-room --identity alice --role end_user

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see .data/logs/" >&2
