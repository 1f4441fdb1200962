#!/bin/sh
# Keeps coturn's TLS certificate and its shared secrets current without a restart (a restart would
# drop every relayed call). Runs beside turnserver (on Kubernetes a sidecar sharing the pod's
# process namespace and the run directory, k8s/base/turn.yaml); every TURN_CHECK_SECONDS it hashes
# - the certificate and key files the configuration names (cert= and pkey=): when they changed
#   (cert-manager renewed the Secret, which the kubelet swaps in whole) it signals the process
#   whose id turnserver wrote to its pidfile (pidfile=) with SIGUSR2, on which coturn reads them
#   again (new TLS connections get the new pair, relays and connections under way keep going);
# - the shared secret files (TURN_SECRET_DIR), when the configuration names a user database
#   (userdb=, written by turn-entrypoint): when they changed (a rotation adds or removes
#   "previous", docs/turn.md) it rewrites the database's turn_secret rows (secrets.sh), which
#   coturn reads at each authentication. A file that is not a valid secret leaves the rows as they
#   were, and is looked at again when it changes.
# Logs one line per reload, never the files' contents.
set -eu
: "${TURN_RUN_DIR:=/run/turn}"
: "${TURN_SECRET_DIR:=/etc/turn/secret}"
: "${TURN_CHECK_SECONDS:=30}"
conf="$TURN_RUN_DIR/turnserver.conf"
here=$(dirname "$(readlink -f "$0")")

# The last value of an option in turnserver.conf (written by turn-entrypoint before turnserver starts).
option() { sed -n "s/^$1=//p" "$conf" 2>/dev/null | tail -n 1; }
until [ -s "$conf" ]; do sleep 1; done
cert=$(option cert)
key=$(option pkey)
pidfile=$(option pidfile)
db=$(option userdb)
realm=$(option realm)
[ -n "$cert" ] && [ -n "$key" ] && [ -n "$pidfile" ] || cert=
[ -n "$db" ] && [ -n "$realm" ] || db=
[ -n "$cert" ] || [ -n "$db" ] || { echo "reload: $conf names neither cert, pkey and pidfile nor userdb and realm: nothing to keep current" >&2; exit 1; }

certificates() { cat "$cert" "$key" 2>/dev/null | sha256sum | cut -d' ' -f1; }
lastCertificates=
[ -z "$cert" ] || lastCertificates=$(certificates)
while :; do
  sleep "$TURN_CHECK_SECONDS"
  # Nothing written unless the files changed since they were last judged (at start: since
  # turn-entrypoint, or before this container restarted); secrets.sh logs what it did.
  if [ -n "$db" ]; then sh "$here/secrets.sh" "$db" "$realm" "$TURN_SECRET_DIR" || true; fi
  [ -n "$cert" ] || continue
  now=$(certificates)
  [ "$now" = "$lastCertificates" ] && continue
  pid=$(cat "$pidfile" 2>/dev/null || true)
  case "$pid" in
    '' | *[!0-9]*) echo "reload: no turnserver pid in $pidfile yet; will try again" >&2; continue ;;
  esac
  if kill -USR2 "$pid" 2>/dev/null; then
    echo "reload: certificate changed, turnserver $pid told to reload it" >&2
    lastCertificates=$now
  else
    echo "reload: turnserver $pid did not take the signal; will try again" >&2
  fi
done
