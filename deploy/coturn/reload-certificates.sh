#!/bin/sh
# Keeps coturn's TLS certificate current without a restart: coturn reads its certificate and key
# at start-up and again on SIGUSR2 (new TLS connections get the new pair, relays and connections
# under way keep going). Runs beside turnserver (on Kubernetes a sidecar sharing the pod's process
# namespace and the run directory, k8s/base/turn.yaml): every TURN_TLS_CHECK_SECONDS it hashes the
# certificate and key files the configuration names (cert= and pkey=), and when they changed
# (cert-manager renewed the Secret, which the kubelet swaps in whole) signals the process whose id
# turnserver wrote to its pidfile (pidfile=).
# Logs one line per reload, never the files' contents.
set -eu
: "${TURN_RUN_DIR:=/run/turn}"
: "${TURN_TLS_CHECK_SECONDS:=30}"
conf="$TURN_RUN_DIR/turnserver.conf"

# The last value of an option in turnserver.conf (written by turn-entrypoint before turnserver starts).
option() { sed -n "s/^$1=//p" "$conf" 2>/dev/null | tail -n 1; }
until [ -s "$conf" ]; do sleep 1; done
cert=$(option cert)
key=$(option pkey)
pidfile=$(option pidfile)
[ -n "$cert" ] && [ -n "$key" ] && [ -n "$pidfile" ] || { echo "reload-certificates: $conf names no cert, pkey or pidfile" >&2; exit 1; }

digest() { cat "$cert" "$key" 2>/dev/null | sha256sum | cut -d' ' -f1; }

last=$(digest)
while :; do
  sleep "$TURN_TLS_CHECK_SECONDS"
  now=$(digest)
  [ "$now" = "$last" ] && continue
  pid=$(cat "$pidfile" 2>/dev/null || true)
  case "$pid" in
    '' | *[!0-9]*) echo "reload-certificates: no turnserver pid in $pidfile yet; will try again" >&2; continue ;;
  esac
  if kill -USR2 "$pid" 2>/dev/null; then
    echo "reload-certificates: certificate changed, turnserver $pid told to reload it" >&2
    last=$now
  else
    echo "reload-certificates: turnserver $pid did not take the signal; will try again" >&2
  fi
done
