#!/bin/sh
# Writes coturn's configuration, then runs the command given (the image's CMD: turnserver), if
# any. On Kubernetes an init container runs it without a command and the coturn container execs
# turnserver itself: with no privilege escalation (no_new_privs) a process keeps no capability
# across an exec from a shell, so turnserver's file capability to bind 443 holds only when the
# runtime starts it directly. The configuration: the ConfigMap's file
# (TURN_CONFIG_FILE, no secret in it), the node's addresses, the peers it may relay to, and the
# user database coturn takes the shared secrets from: one turn_secret row per file of the mounted
# Secret (TURN_SECRET_DIR: "secret", and during a rotation "previous"; coturn accepts a credential
# signed with any of them), written by secrets.sh, which the reload sidecar runs again when the
# Secret changes (reload.sh): a rotation needs no restart. No static-auth-secret, which coturn
# reads at start-up only. Both are written to a memory volume (TURN_RUN_DIR), never to the image.
set -eu
: "${TURN_CONFIG_FILE:=/etc/turnserver/turnserver.conf}"
: "${TURN_SECRET_DIR:=/etc/turn/secret}"
: "${TURN_RUN_DIR:=/run/turn}"
private=${TURN_PRIVATE_IP:?the node address coturn listens and relays on (status.hostIP)}
peers=${TURN_ALLOWED_PEER_RANGE:?the media nodes address range coturn may relay to, or none}

# The public address clients reach this node at, where the cloud maps it onto the private one
# (1:1 NAT: EKS, GKE and AKS nodes with public addresses): from the instance metadata, or given.
# "none": the node's address is public itself (or the cluster is reached on its private network).
metadata() { curl -fsS --max-time 5 "$@"; }
case "${TURN_EXTERNAL_IP:-none}" in
  aws)
    token=$(metadata -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)
    public=$(metadata -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/public-ipv4) ;;
  gcp)
    public=$(metadata -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/external-ip) ;;
  azure)
    public=$(metadata -H 'Metadata: true' 'http://169.254.169.254/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress?api-version=2021-02-01&format=text') ;;
  none) public= ;;
  *) public=$TURN_EXTERNAL_IP ;;
esac

umask 077
conf="$TURN_RUN_DIR/turnserver.conf"
db="$TURN_RUN_DIR/turndb"
realm=$(sed -n 's/^realm=//p' "$TURN_CONFIG_FILE" | tail -n 1)
[ -n "$realm" ] || { echo "$TURN_CONFIG_FILE sets no realm, which the secrets are kept under" >&2; exit 1; }
# Beside this script: in the image both are in /usr/local/lib/turn (deploy/coturn/Dockerfile).
# Judged afresh (no record of files judged before this start): a bad secret stops the pod here.
rm -f "$db.judged"
sh "$(dirname "$(readlink -f "$0")")/secrets.sh" "$db" "$realm" "$TURN_SECRET_DIR"
{
  cat "$TURN_CONFIG_FILE"
  echo "listening-ip=$private"
  echo "relay-ip=$private"
  if [ -n "$public" ]; then echo "external-ip=$public/$private"; fi
  # "none": the SFUs are reached at their public addresses only (which no private range denies).
  if [ "$peers" != none ]; then echo "allowed-peer-ip=$peers"; fi
  echo "pidfile=$TURN_RUN_DIR/turnserver.pid"
  echo "userdb=$db"
  # The database holds the secrets only: peers and realms stay as this file sets them.
  echo "no-dynamic-ip-list"
  echo "no-dynamic-realms"
} >"$conf"
if [ "$#" -gt 0 ]; then exec "$@"; fi
